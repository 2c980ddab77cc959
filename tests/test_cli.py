"""The `avatar` console script as a user runs it (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from avatar.cli.main import SUBCOMMANDS

AVATAR = Path(sys.executable).with_name("avatar")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = [str(AVATAR)] if AVATAR.exists() else [sys.executable, "-m", "avatar.cli.main"]
    return subprocess.run(exe + list(args), capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_every_subcommand():
    r = run("--help")
    assert r.returncode == 0
    for name in SUBCOMMANDS:
        assert name in r.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name):
    r = run(name, "--help")
    assert r.returncode == 0, r.stderr
    assert f"avatar {name}" in r.stdout and "--quiet" in r.stdout


def test_config_prints_documented_yaml_and_applies_overrides():
    r = run("config", "--config", "fast", "--set", "preprocess.val_fraction=0.2")
    assert r.returncode == 0, r.stderr
    assert "val_fraction: 0.2  # " in r.stdout


@pytest.mark.parametrize("args, words", [
    (("config", "--set", "preprocess.nope=1"), ["unknown setting", "preprocess.nope"]),
    (("config", "--set", "preprocess.val_fraction=abc"), ["preprocess.val_fraction", "number"]),
    (("config", "--config", "no-such-preset"), ["does not exist"]),
    (("preprocess", "/no/such/video.mp4", "--out", "/tmp/x"), ["does not exist"]),
    (("inspect", "/no/such/folder"), ["not a finished subject folder"]),
])
def test_bad_input_is_one_clear_message(args, words):
    r = run(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ")
    for w in words:
        assert w in r.stderr


def test_debug_shows_traceback():
    r = run("inspect", "/no/such/folder", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_preprocess_rejects_a_text_file_and_leaves_nothing(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    out = tmp_path / "subject"
    r = run("preprocess", str(fake), "--out", str(out))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert not out.exists()


def test_preprocess_refuses_a_non_empty_foreign_folder(tmp_path):
    from tests.conftest import data_file
    video = data_file("videos", "may_5s.mp4")
    out = tmp_path / "stuff"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    r = run("preprocess", str(video), "--out", str(out))
    assert r.returncode != 0 and "not empty" in r.stderr
    assert (out / "thesis.txt").read_text() == "precious" and len(list(out.iterdir())) == 1
