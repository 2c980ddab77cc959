"""A normal (non-editable) install carries the presets and every module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools leaves build/ in the source tree, whose stale files
    # (a module since deleted) would end up in later wheels and hide a packaging mistake.
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "build")
    for name in ("avatar", "preprocess", "cuda_ext", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("talking_avatar-*.whl")
    return whl


def test_the_wheel_holds_the_presets_kernel_sources_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    assert presets and all(f"avatar/presets/{p}" in names for p in presets)
    sources = [p.relative_to(ROOT).as_posix() for pkg in ("avatar", "preprocess", "cuda_ext")
               for p in (ROOT / pkg).rglob("*") if p.suffix in (".py", ".cpp", ".h")
               and "__pycache__" not in p.parts]
    missing = [s for s in sources if s not in names]
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"


def test_the_installed_package_finds_its_presets_away_from_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                        "--disable-pip-version-check", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import avatar.core.config as c; print(c.__file__); "
                            "print(c.preset_dir())"], capture_output=True, text=True, env=env, cwd=tmp_path)
    module, presets = where.stdout.split()
    assert module.startswith(str(site)) and presets == str(site / "avatar" / "presets"), where.stdout
    r = subprocess.run([sys.executable, "-m", "avatar.cli.main", "config", "--config", "fast"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "size: 256" in r.stdout  # fast.yaml's own value, read from the installed presets
