"""``make demo``'s own path: the synthetic sample, then fit, render and eval on it, with nothing downloaded.

One run of ``python -m avatar.demo`` with a smaller setting than the demo's own (a
shorter sample, fewer fit and motion steps), as ``make demo`` runs it, and a second
run that must reuse everything. Needs no ../shared data.
"""

from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pytest

from avatar.demo.visemes import mouth_track, phoneme_shape
from avatar.talk.tts import speak

SAMPLE_TEXT = "Hello! I am a small synthetic sample. My lips move with the sound of this voice."
NEW_TEXT = "Something new to say."
SETTINGS = ["--set", "fit.iterations=300", "--set", "motion.predictor.steps=100"]


def _streams(path) -> dict:
    """{kind: duration in seconds} of an mp4's streams, decoded for real (a broken file raises)."""
    with av.open(str(path)) as c:
        out = {}
        for s in c.streams:
            last = 0.0
            for frame in c.decode(s):
                last = float(frame.time + (frame.samples / frame.sample_rate if s.type == "audio" else 0.0))
            out[s.type] = last
            c.seek(0)
    return out


def _demo(out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avatar.demo", "--out", str(out), "--sample-text", SAMPLE_TEXT,
                           "--text", NEW_TEXT, *SETTINGS, *extra], capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_out")
    first = _demo(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return out, first


@pytest.mark.slow
def test_demo_writes_a_talking_video_with_its_sound(demo):
    out, _ = demo
    said = speak(NEW_TEXT)
    seconds = len(said.samples) / said.rate
    streams = _streams(out / "talk.mp4")
    assert set(streams) == {"video", "audio"}
    assert abs(streams["audio"] - seconds) < 0.15, (streams, seconds)
    assert abs(streams["video"] - seconds) < 0.15, (streams, seconds)
    sample = _streams(out / "sample.mp4")
    assert sample["audio"] > 5.0 and abs(sample["audio"] - sample["video"]) < 0.1, sample
    assert (out / "eval.mp4").stat().st_size > 10_000
    assert (out / "subject" / "fit" / "avatar.pt").exists()


@pytest.mark.slow
def test_demo_eval_beats_the_untrained_baseline(demo):
    out, first = demo
    result = json.loads((out / "eval.json").read_text())
    # an avatar that learnt nothing shows the plate: the fit must be far above it
    assert result["psnr"] > result["plate_psnr"] + 8.0, result
    assert result["lmd"] is not None and result["lmd"] < 5.0, result
    for line in ("talk.mp4", "eval.mp4", "avatar view", "synthetic"):
        assert line in first.stdout, first.stdout[-2000:]


@pytest.mark.slow
def test_demo_again_reuses_what_is_done(demo):
    out, _ = demo
    before = {p: p.stat().st_mtime_ns for p in (out / "sample.mp4", out / "talk.mp4",
                                                out / "subject" / "fit" / "avatar.pt")}
    again = _demo(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already") >= 3, again.stdout  # sample, render, eval
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_phonemes_drive_the_mouth():
    speech = speak("Bob opened a map.")
    assert speech.phonemes and all(b[0] >= a[0] for a, b in zip(speech.phonemes, speech.phonemes[1:]))
    assert phoneme_shape("ˈɑː")[0] > 0.8 and phoneme_shape("m") == (0.0, 0.0) and phoneme_shape("") == (0.0, 0.0)
    assert phoneme_shape("uː")[1] < 0 < phoneme_shape("iː")[1]  # rounded against spread lips
    seconds = len(speech.samples) / speech.rate
    track = mouth_track(speech.phonemes, seconds, 25.0)
    assert track.shape == (int(seconds * 25), 2)
    opening = track[:, 0]
    assert opening.max() > 0.6  # opens wide on the vowels
    # closes for the b and m: at least two dips below a third of the opening between open vowels
    dips = np.sum((opening[1:-1] < opening[:-2]) & (opening[1:-1] <= opening[2:]) & (opening[1:-1] < 0.35))
    assert dips >= 2, np.round(opening, 2)
