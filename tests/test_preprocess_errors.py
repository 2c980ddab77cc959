"""Bad input to `avatar preprocess`: one clear message, non-zero exit, no folder that looks complete."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from avatar.core.media import ffmpeg_command
from preprocess.subject import Subject
from tests.conftest import data_file, run_avatar



def ffmpeg(*args) -> None:
    subprocess.run(ffmpeg_command(["-y", *args]), check=True, timeout=120)


def assert_clean_failure(r: subprocess.CompletedProcess, out: Path, *words: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert "error:" in r.stderr and "fix:" in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert not (out / "manifest.json").exists()


def test_too_short(tmp_path):
    clip = tmp_path / "short.mp4"
    ffmpeg("-i", data_file("videos", "may_5s.mp4"), "-t", "2", "-c:v", "libx264", "-c:a", "aac", clip)
    out = tmp_path / "s"
    assert_clean_failure(run_avatar("preprocess", clip, "--out", out), out, "too short")
    assert not out.exists()


def test_truncated_file(tmp_path):
    src = data_file("videos", "may_5s.mp4").read_bytes()
    clip = tmp_path / "cut.mp4"
    clip.write_bytes(src[: len(src) // 3])
    out = tmp_path / "s"
    assert_clean_failure(run_avatar("preprocess", clip, "--out", out), out)
    assert not out.exists()


def test_no_face(tmp_path):
    clip = tmp_path / "noface.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "6", "-pix_fmt", "yuv420p", clip)
    out = tmp_path / "s"
    assert_clean_failure(run_avatar("preprocess", clip, "--out", out), out, "face")


def test_extreme_resolution(tmp_path):
    clip = tmp_path / "tiny.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=48x48:rate=25", "-t", "6", "-pix_fmt", "yuv420p", clip)
    out = tmp_path / "s"
    assert_clean_failure(run_avatar("preprocess", clip, "--out", out), out, "48")
    assert not out.exists()


@pytest.mark.slow
def test_several_faces(tmp_path):
    """Two real speakers side by side in every frame: refused, naming the cause."""
    clip = tmp_path / "two.mp4"
    ffmpeg("-i", data_file("videos", "may_5s.mp4"), "-i", data_file("videos", "trump_10s.mp4"),
           "-filter_complex", "[0:v]scale=256:256[a];[1:v]scale=256:256,trim=0:5.2,setpts=PTS-STARTPTS[b];"
           "[a][b]hstack=inputs=2[v]", "-map", "[v]", "-map", "0:a", "-t", "5.2",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", clip)
    out = tmp_path / "s"
    r = run_avatar("preprocess", clip, "--out", out, "--config", "fast")
    assert_clean_failure(r, out, "more than one face")


@pytest.mark.slow
def test_video_without_audio_track_works_with_a_warning(tmp_path):
    """A 256x256 30 fps crop whose mp4 has no sound: fitted anyway, audio stages say so;
    with --audio the wav beside it is used. (The first 3 s of the 20 s clip: the length
    plays no part here.)"""
    video = data_file("multispeaker", "styletalk_Obama_clip1.mp4")
    first_3s = ("--set", "preprocess.decode.max_duration_s=3")
    out = tmp_path / "silent"
    r = run_avatar("preprocess", video, "--out", out, "--config", "fast", *first_3s)
    assert r.returncode == 0, r.stderr
    assert "no audio" in r.stderr
    assert (out / "manifest.json").exists() and not (out / "audio_features.npz").exists()
    r = run_avatar("inspect", out, "--json")
    assert '"has_audio": false' in r.stdout

    out2 = tmp_path / "with_wav"
    r = run_avatar("preprocess", video, "--out", out2, "--config", "fast", *first_3s,
                   "--audio", video.with_suffix(".wav"))
    assert r.returncode == 0, r.stderr
    assert (out2 / "audio_features.npz").exists()
    s = Subject(out2)
    assert s.audio_features.mel.shape[0] == s.n_frames == pytest.approx(3 * 25, abs=1)
