"""The `avatar` command: in-process (tests.conftest.run_avatar), and a few runs of the
installed console script that prove the script itself works."""

from __future__ import annotations

import pytest

from avatar.cli.main import SUBCOMMANDS
from tests.conftest import run_avatar


def test_console_script_help_lists_every_subcommand():
    r = run_avatar("--help", console_script=True)
    assert r.returncode == 0, r.stderr
    for name in SUBCOMMANDS:
        assert name in r.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name):
    r = run_avatar(name, "--help")
    assert r.returncode == 0, r.stderr
    assert f"avatar {name}" in r.stdout and "--quiet" in r.stdout


def test_config_prints_documented_yaml_and_applies_overrides():
    r = run_avatar("config", "--config", "fast", "--set", "preprocess.val_fraction=0.2")
    assert r.returncode == 0, r.stderr
    assert "val_fraction: 0.2  # " in r.stdout


@pytest.mark.parametrize("args, words, console_script", [
    (("config", "--set", "preprocess.nope=1"), ["unknown setting", "preprocess.nope"], False),
    (("config", "--set", "preprocess.val_fraction=abc"), ["preprocess.val_fraction", "number"], False),
    (("config", "--config", "no-such-preset"), ["does not exist"], False),
    (("preprocess", "/no/such/video.mp4", "--out", "/tmp/x"), ["does not exist"], False),
    # once through the installed script: what a user's terminal shows
    (("inspect", "/no/such/folder"), ["not a finished subject folder"], True),
])
def test_bad_input_is_one_clear_message(args, words, console_script):
    r = run_avatar(*args, console_script=console_script)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ")
    for w in words:
        assert w in r.stderr


def test_console_script_debug_shows_traceback():
    r = run_avatar("inspect", "/no/such/folder", "--debug", console_script=True)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_preprocess_rejects_a_text_file_and_leaves_nothing(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    out = tmp_path / "subject"
    r = run_avatar("preprocess", fake, "--out", out)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert not out.exists()


def test_preprocess_refuses_a_non_empty_foreign_folder(tmp_path, may_video):
    out = tmp_path / "stuff"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    r = run_avatar("preprocess", may_video, "--out", out)
    assert r.returncode != 0 and "not empty" in r.stderr
    assert (out / "thesis.txt").read_text() == "precious" and len(list(out.iterdir())) == 1


def test_in_process_runs_leave_no_global_state():
    """run_avatar restores what main() changes: logging and AVATAR_QUIET."""
    import logging
    import os
    import sys

    root = logging.getLogger()
    handlers, level, stderr = root.handlers[:], root.level, sys.stderr
    quiet = os.environ.get("AVATAR_QUIET")
    r = run_avatar("config", "--quiet")
    assert r.returncode == 0, r.stderr
    assert root.handlers == handlers and root.level == level and sys.stderr is stderr
    assert os.environ.get("AVATAR_QUIET") == quiet
