"""Building the compiled kernels: cache keys and the message when no compiler works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import cuda_ext


def test_cache_key_changes_with_sources_and_names_the_cpu():
    sources = sorted(cuda_ext.CSRC.glob("hashgrid*.cpp"))
    key = cuda_ext._source_hash(sources)
    assert key == cuda_ext._source_hash(sources)  # stable
    assert key != cuda_ext._source_hash(sorted(cuda_ext.CSRC.glob("rasterize*.cpp")))
    assert cuda_ext._cpu_identity()  # -march=native builds are keyed by the CPU too


def test_missing_compiler_is_a_clear_error(tmp_path):
    # A fresh cache (so nothing is reused) and a compiler that does not exist.
    env = dict(os.environ, AVATAR_CACHE_DIR=str(tmp_path), CXX=str(tmp_path / "no-such-c++"))
    code = "import cuda_ext; cuda_ext.load('hashgrid')"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0
    assert "compiling the hashgrid kernel failed" in r.stderr
    assert "g++" in r.stderr and "AVATAR_VERBOSE_BUILD" in r.stderr


def test_a_lock_left_by_a_killed_build_does_not_hang_the_next_process(tmp_path):
    # torch's build lock is a plain file: a process killed while holding it (Ctrl-C on a first use) left
    # it behind, and every later `avatar` command waited on it forever. Now it is removed under our lock.
    built = cuda_ext.load("hashgrid")
    folder = tmp_path / "ext" / os.path.basename(os.path.dirname(built.__file__))
    folder.mkdir(parents=True)
    for f in ("build.ninja", os.path.basename(built.__file__)):
        shutil.copy(os.path.join(os.path.dirname(built.__file__), f), folder / f)
    (folder / "lock").touch()
    env = dict(os.environ, AVATAR_CACHE_DIR=str(tmp_path))
    code = "import cuda_ext; m = cuda_ext.load('hashgrid'); print(m.__file__)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert str(folder) in r.stdout and "compiling" not in r.stderr  # the built library, not a rebuild
    assert not (folder / "lock").exists()
