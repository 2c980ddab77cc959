"""Shared test helpers and session fixtures.

Helpers: where the real data lives (``data_file``, skipping when it is absent),
decoded frames (``video_frames``), and the one way tests run the
``avatar`` command (``run_avatar``: in-process by default, the installed console
script with ``console_script=True``).

Session fixtures, each computed once however many tests use it:

- ``may_frames``: the 125 RGB frames of ``videos/may_5s.mp4`` (read-only arrays);
- ``may_landmarks``: MediaPipe landmarks of those frames (``LandmarkConfig()``);
- ``may_tracking``: ``fit_tracking`` on them (``TrackingConfig()``);
- ``may_subject``: may_5s preprocessed with the default preset. Read-only by
  convention: a test that re-runs, forces or damages a folder takes
  ``may_subject_copy`` (a fresh copy per test). The session checks at its end
  that nothing in ``may_subject`` changed.
- ``may_fit``: ``avatar fit may_5s.mp4 --config fast`` with
  ``MAY_FIT_ITERATIONS`` steps (the one real fit of the session); read-only by
  the same convention, ``may_fit_copy`` for a test's own copy.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar.core.data import shared_data, shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = shared_data_dir()
AVATAR = Path(sys.executable).with_name("avatar")
"""The console script ``pip install -e .`` put beside this interpreter."""


def data_file(*parts: str) -> Path:
    """Path of a file in the shared data folder, or skip the test with the reason."""
    path = shared_data(*parts)
    if not path.exists():
        pytest.skip(f"test data {path} is absent (it lives in ../shared/data beside the repo, "
                    "or $AVATAR_DATA)")
    return path


def video_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    """Decode a video to (H, W, 3) uint8 RGB frames with imageio-ffmpeg's bundled ffmpeg
    (read-only arrays: shared frames cannot be changed by accident)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    frames = []
    try:
        for raw in reader:
            frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
            if limit is not None and len(frames) == limit:
                break
    finally:
        reader.close()
    return frames


# ---------------------------------------------------------------- the avatar command
def run_avatar(*args, console_script: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``avatar ARGS...``; the result has ``.returncode``, ``.stdout`` and ``.stderr`` (str).

    By default in this process: ``avatar.cli.main.main`` with stdout and stderr captured
    (everything Python prints and logs; the native filter of file descriptor 2 is not
    installed), and the logging setup and environment it changes restored afterwards.
    With ``console_script=True``, the installed ``avatar`` script in a subprocess, as a
    user runs it: for the few tests that prove the script itself works, or that need a
    process of their own (signals, process-wide measurements); ``timeout`` (seconds)
    applies to those.
    """
    argv = [str(a) for a in args]
    if console_script:
        if not AVATAR.exists():
            pytest.fail(f"the avatar console script is not installed at {AVATAR} (run `pip install -e .`)")
        return subprocess.run([str(AVATAR), *argv], capture_output=True, text=True, timeout=timeout)

    from avatar.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    environ = dict(os.environ)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv, filter_native_log=False)
            except SystemExit as e:  # argparse: --help, usage errors
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        if os.environ != environ:
            os.environ.clear()
            os.environ.update(environ)
    return subprocess.CompletedProcess(["avatar", *argv], code, out.getvalue(), err.getvalue())


# ---------------------------------------------------------------- may_5s, once per session
@pytest.fixture(scope="session")
def may_video() -> Path:
    return data_file("videos", "may_5s.mp4")


@pytest.fixture(scope="session")
def may_frames(may_video) -> list[np.ndarray]:
    """The 125 (512, 512, 3) uint8 RGB frames of may_5s.mp4 (read-only)."""
    return video_frames(may_video)


def _read_only(obj):
    for value in vars(obj).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return obj


@pytest.fixture(scope="session")
def may_landmarks(may_frames):
    """``preprocess.subject_data.Landmarks`` of ``may_frames``, default LandmarkConfig (read-only arrays)."""
    from preprocess.config import LandmarkConfig
    from preprocess.landmarks import detect_landmarks

    return _read_only(detect_landmarks(may_frames, len(may_frames), LandmarkConfig()))


@pytest.fixture(scope="session")
def may_tracking(may_landmarks):
    """``fit_tracking`` of ``may_landmarks`` at 512 x 512, default TrackingConfig (read-only arrays)."""
    from preprocess.config import TrackingConfig
    from preprocess.tracking import fit_tracking

    lm = may_landmarks
    size = 512
    return _read_only(fit_tracking(lm.points, lm.valid, size, size, TrackingConfig()))


def _kept_read_only(root: Path, name: str):
    """Yield ``root`` to the session, then fail if any test changed a file in it (use with ``yield from``)."""
    before = _snapshot(root)
    yield root
    after = _snapshot(root) if root.exists() else {}
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a test modified the shared {name} folder: {changed[:10]}"


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def may_subject(tmp_path_factory, may_video) -> Path:
    """may_5s.mp4 preprocessed once with the default preset (``avatar preprocess VIDEO --out DIR``).

    Shared by every test that reads a finished subject: do not write into it (take
    ``may_subject_copy`` for that). A test that changed it is reported at the end of
    the session.
    """
    out = tmp_path_factory.mktemp("may_subject") / "subject"
    r = run_avatar("preprocess", may_video, "--out", out)
    assert r.returncode == 0, r.stderr
    yield from _kept_read_only(out, "may_subject")


@pytest.fixture
def may_subject_copy(may_subject, tmp_path) -> Path:
    """A fresh copy of ``may_subject`` (a valid subject folder) that the test may change."""
    return Path(shutil.copytree(may_subject, tmp_path / "subject", symlinks=True))


MAY_FIT_ITERATIONS = 1500
"""Steps of the session's fast fit of may_5s (about a minute on 2 cores; the preset's own is 6000)."""


@pytest.fixture(scope="session")
def may_fit(tmp_path_factory, may_video) -> Path:
    """may_5s.mp4 fitted once with the fast preset, ``avatar fit VIDEO --out DIR --config fast``, and
    evaluated, ``avatar eval DIR`` (so ``fit/eval.json`` and ``fit/eval.mp4`` are there). Read-only."""
    out = tmp_path_factory.mktemp("may_fit") / "subject"
    # a generous budget: the steps, not the machine's speed, decide what the tests see
    r = run_avatar("fit", may_video, "--out", out, "--config", "fast", "--set",
                   f"fit.iterations={MAY_FIT_ITERATIONS}", "--minutes", "600", "-q")
    assert r.returncode == 0, r.stderr
    r = run_avatar("eval", out, "--json", "-q")
    assert r.returncode == 0, r.stderr
    yield from _kept_read_only(out, "may_fit")


@pytest.fixture
def may_fit_copy(may_fit, tmp_path) -> Path:
    """A fresh copy of ``may_fit`` for a test that writes into it."""
    return Path(shutil.copytree(may_fit, tmp_path / "subject", symlinks=True))


@pytest.fixture(scope="session")
def may_motion(tmp_path_factory, may_fit) -> Path:
    """``may_fit`` with its motion model trained (``avatar motion`` on hallo_1.wav, default settings, whose
    output is ``motion_hallo.json`` beside the folder). Read-only."""
    out = Path(shutil.copytree(may_fit, tmp_path_factory.mktemp("may_motion") / "subject", symlinks=True))
    r = run_avatar("motion", data_file("audio", "hallo_1.wav"), "--subject", out,
                   "--out", out.parent / "motion_hallo.json", "-q")
    assert r.returncode == 0, r.stderr
    yield from _kept_read_only(out, "may_motion")
