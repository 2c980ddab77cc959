"""The layering rule (docs/architecture.md) and cheap imports, checked on the real tree."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("avatar", "preprocess", "cuda_ext")
HEAVY = ("torch", "cv2", "mediapipe", "librosa", "parselmouth", "scipy", "pocketsphinx", "imageio_ffmpeg", "av",
         "numpy", "soundfile", "preprocess.stages", "dlib")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def layers() -> list[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["type"] == "layers"]
    return [m.strip() for line in contract["layers"] for m in line.split("|")]


def test_the_import_contract_holds():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_every_module_belongs_to_a_layer():
    covered = layers()
    for package in PACKAGES:
        path = ROOT / package
        for mod in pkgutil.walk_packages([str(path)], prefix=f"{package}."):
            assert any(mod.name == m or mod.name.startswith(m + ".") for m in covered), \
                f"{mod.name} is in no layer of the import contract (pyproject.toml)"


@pytest.mark.parametrize("module, line", [
    ("avatar/core/errors.py", "import preprocess.config\n"),  # the base reaching up
    ("preprocess/decode.py", "from avatar.render import rasterize\n"),  # two siblings
    ("cuda_ext/__init__.py", "from preprocess import subject\n"),  # kernels reaching up
])
def test_a_wrong_arrow_breaks_the_contract(tmp_path, module, line):
    for name in (*PACKAGES, "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        else:
            shutil.copy(src, tmp_path / name)
    target = tmp_path / module
    target.write_text(line + target.read_text())
    r = lint_imports(tmp_path)
    assert r.returncode != 0 and "BROKEN" in r.stdout, r.stdout


def test_loading_a_config_and_the_parser_import_no_heavy_library():
    code = ("import sys\n"
            "from avatar.cli.main import build_parser\n"
            "from avatar.settings import load_config\n"
            "from avatar.render.config import HashGridConfig\n"
            "from avatar.fit.config import FitConfig\n"
            "build_parser(); load_config('fast', ['preprocess.decode.size=320'])\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"heavy modules imported while loading a config: {r.stdout}"
