"""Compiled kernels of talking-avatar (C++17 + OpenMP on CPU).

Each kernel lives in ``csrc/<name>.cpp`` and is built with
``torch.utils.cpp_extension.load`` the first time it is used, then cached on
disk (``$AVATAR_CACHE_DIR`` or ``~/.cache/talking-avatar``) so later imports
take milliseconds. The Python-facing autograd functions live in
``avatar/render/``; this package only compiles and hands back the raw module.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

CSRC = Path(__file__).resolve().parent / "csrc"
_LOCK = threading.Lock()
_MODULES: dict[str, ModuleType] = {}

CFLAGS = ["-O3", "-std=c++17", "-fopenmp", "-march=native", "-fno-math-errno",
          "-ffp-contract=fast", "-Wno-unknown-pragmas"]
LDFLAGS = ["-fopenmp"]


def cache_dir() -> Path:
    """Folder for compiled extensions (and other caches)."""
    root = os.environ.get("AVATAR_CACHE_DIR") or os.path.join(Path.home(), ".cache", "talking-avatar")
    return Path(root)


def _cpu_identity() -> bytes:
    """The CPU's model and instruction-set flags: builds use -march=native, so a cache
    shared between machines (a network home, a copied folder) must not hand one CPU's
    binary to another that lacks its instructions."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform
        return f"{platform.machine()} {platform.processor()}".encode()
    wanted = [ln for ln in lines if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(wanted)).encode()  # first core's lines, order kept


def _source_hash(sources: list[Path]) -> str:
    h = hashlib.sha1()
    for s in sources:
        h.update(s.read_bytes())
    h.update(" ".join(CFLAGS).encode())
    h.update(_cpu_identity())
    return h.hexdigest()[:12]


def load(name: str) -> ModuleType:
    """Compile (once) and import the extension built from ``csrc/<name>*.cpp``.

    Sources are every ``csrc/<name>*.cpp`` plus shared headers in ``csrc/``; the
    build folder is keyed by a hash of them, so editing a kernel rebuilds it.
    """
    with _LOCK:
        if name in _MODULES:
            return _MODULES[name]
        sources = sorted(CSRC.glob(f"{name}*.cpp"))
        if not sources:
            raise FileNotFoundError(f"no sources for extension {name!r} in {CSRC}")
        headers = sorted(CSRC.glob("*.h"))
        key = _source_hash(sources + headers)
        build = cache_dir() / "ext" / f"{name}-{key}"
        build.mkdir(parents=True, exist_ok=True)
        modname = f"avatar_{name}_{key}"
        with _build_lock(build):
            module = _import_built(modname, build) or _compile(name, modname, sources, build)
        _MODULES[name] = module
        return module


@contextlib.contextmanager
def _build_lock(build: Path):
    """Hold this build folder for this process (other processes wait; the OS releases it if we die).

    torch's own lock is a plain file, ``build/lock``: a process killed while holding it
    (Ctrl-C during a first use) leaves it behind, and every later process then waits
    on it forever. Under our lock no other process of ours is building, so a ``lock``
    file found there is such a leftover and is removed.
    """
    fd = os.open(build / ".build.flock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        (build / "lock").unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


def _import_built(modname: str, build: Path) -> ModuleType | None:
    """The module already built in ``build`` (None when there is none, or it does not load).

    The folder is keyed by a hash of the sources, flags and CPU, so a built library
    there is the one these sources make: importing it directly skips ninja's
    up-to-date check (about a second) and torch's lock file.
    """
    so = next(iter(sorted(build.glob(f"{modname}*.so"))), None)
    if so is None:
        return None
    import torch  # noqa: F401  (the extension links against torch's libraries, loaded by this import)

    spec = importlib.util.spec_from_file_location(modname, so)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError:  # a library cut short by a killed build: build it again
        so.unlink(missing_ok=True)
        return None
    return module


def _compile(name: str, modname: str, sources: list[Path], build: Path) -> ModuleType:
    """Build and import the extension (torch's ninja build), or a UserError that says what to install."""
    from torch.utils.cpp_extension import load as torch_load

    print(f"[avatar] compiling the {name} kernel (first use only, about a minute)...", file=sys.stderr, flush=True)
    try:
        return torch_load(name=modname, sources=[str(s) for s in sources], extra_cflags=CFLAGS,
                          extra_ldflags=LDFLAGS, extra_include_paths=[str(CSRC)], build_directory=str(build),
                          verbose=os.environ.get("AVATAR_VERBOSE_BUILD") == "1")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
        from avatar.core.errors import UserError
        detail = str(err).strip().splitlines()[-1:] or [type(err).__name__]
        raise UserError(
            f"compiling the {name} kernel failed ({detail[0][:200]})",
            "install a C++ compiler (g++ 12+) and the Python headers (Debian/Ubuntu: "
            "sudo apt-get install g++ python3.11-dev, or run `make setup`); "
            "AVATAR_VERBOSE_BUILD=1 shows the full compiler log") from err
