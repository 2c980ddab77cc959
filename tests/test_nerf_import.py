"""`avatar preprocess` on an ER-NeRF / AD-NeRF style dataset folder.

The folder is built here from a real clip with real ffmpeg, laid out as those
projects write it: ori_imgs/0.jpg ... at 25 fps, aud.wav at 16 kHz and
transforms_train.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from avatar.core.errors import UserError
from avatar.core.media import ffmpeg_command
from preprocess.nerf_import import pack_frames, read_nerf_folder
from preprocess.subject import Subject
from tests.conftest import run_avatar

pytestmark = pytest.mark.slow


def make_dataset(root: Path, video: Path) -> Path:
    """An ER-NeRF-style folder from ``video``: numbered JPEG frames, aud.wav, transforms."""
    (root / "ori_imgs").mkdir(parents=True)
    subprocess.run(ffmpeg_command(["-i", video, "-r", "25", "-start_number", "0", "-q:v", "2",
                                   root / "ori_imgs" / "%d.jpg"]), check=True)
    subprocess.run(ffmpeg_command(["-i", video, "-ar", "16000", "-ac", "1", root / "aud.wav"]), check=True)
    (root / "ori_imgs" / "0.lms").write_text("0 0\n")  # their landmark files sit beside the frames
    (root / "transforms_train.json").write_text(json.dumps({"focal_len": 1200.0, "frames": []}))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, may_video) -> Path:
    """Read-only by convention: tests that change it take a copy."""
    return make_dataset(tmp_path_factory.mktemp("nerf") / "may", may_video)


@pytest.fixture(scope="module")
def imported(dataset, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The dataset preprocessed (fast preset); read-only by convention."""
    out = tmp_path_factory.mktemp("nerf_subject") / "subject"
    r = run_avatar("preprocess", dataset, "--out", out, "--config", "fast")
    assert r.returncode == 0, r.stderr
    return out, r


def test_dataset_folder_preprocesses_like_a_video(dataset, imported):
    out, _ = imported
    manifest = Subject(out).manifest
    n_images = len(list((dataset / "ori_imgs").glob("*.jpg")))
    assert manifest.frames == n_images == 125
    assert manifest.has_audio and manifest.audio_sample_rate == 16000
    assert manifest.tracked_fraction >= 0.99
    assert manifest.reprojection_px < 1.5
    assert manifest.imported_from["folder"] == str(dataset.resolve())
    assert manifest.imported_from["their_focal_px"] == 1200.0
    r = run_avatar("inspect", out)
    assert "imported from" in r.stdout and str(dataset.resolve()) in r.stdout


def test_frames_are_packed_without_re_encoding(dataset, imported):
    out, _ = imported
    packed = imageio.get_reader(out / ".stages" / "imported_frames.mkv", format="ffmpeg")
    assert packed.count_frames() == 125
    first = packed.get_data(0)
    last = packed.get_data(124)
    # Stream copy: the same JPEG data, so only decoder rounding can differ.
    assert np.abs(first.astype(int) - imageio.imread(dataset / "ori_imgs" / "0.jpg")).mean() < 1.0
    assert np.abs(last.astype(int) - imageio.imread(dataset / "ori_imgs" / "124.jpg")).mean() < 1.0


def test_rerun_reuses_every_stage(dataset, imported, tmp_path):
    out = Path(shutil.copytree(imported[0], tmp_path / "subject"))  # a copy: the re-run may write
    r = run_avatar("preprocess", dataset, "--out", out, "--config", "fast")
    assert r.returncode == 0, r.stderr
    assert "running" not in r.stderr and r.stderr.count("cached") >= 6


def test_folder_without_frames_is_refused_and_leaves_nothing(tmp_path):
    (tmp_path / "not_a_dataset").mkdir()
    (tmp_path / "not_a_dataset" / "notes.txt").write_text("hello")
    out = tmp_path / "subject"
    r = run_avatar("preprocess", tmp_path / "not_a_dataset", "--out", out)
    assert r.returncode != 0
    assert "ori_imgs" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_gap_in_frame_numbers_is_named(dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "ori_imgs" / "7.jpg").unlink()
    with pytest.raises(UserError, match="missing frame 7"):
        read_nerf_folder(broken)


def test_dataset_without_audio_packs_frames_and_says_so(dataset, tmp_path, caplog):
    silent = tmp_path / "silent"
    shutil.copytree(dataset, silent)
    (silent / "aud.wav").unlink()
    folder = read_nerf_folder(silent)
    assert folder.audio is None and len(folder.frames) == 125
    with caplog.at_level("WARNING", logger="avatar.preprocess"):
        packed = pack_frames(folder, tmp_path / "packed.mkv")
    assert "no aud.wav" in caplog.text
    assert imageio.get_reader(packed, format="ffmpeg").count_frames() == 125
