"""The fit's face metrics on real frames: LMD measures the mouth, CSIM the identity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatar.fit.audio_eval import speech_split
from avatar.fit.metrics import FaceMetrics, mouth_corr, mouth_std_ratio, psnr
from preprocess.subject import Subject
from tests.conftest import data_file, video_frames


@pytest.fixture(scope="module")
def metrics() -> FaceMetrics:
    return FaceMetrics()


def test_psnr_and_its_mask():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[:4] = 255  # half the image fully wrong: MSE 0.5
    assert psnr(a, a) == float("inf")
    assert psnr(a, b) == pytest.approx(-10 * np.log10(0.5))
    mask = np.zeros((8, 8), bool)
    mask[4:] = True
    assert psnr(a, b, mask) == float("inf") and psnr(a.astype(np.float32) / 255, b) == psnr(a, b)


def test_mouth_tracks_correlation_and_amplitude():
    real = np.array([0.0, 4.0, 1.0, np.nan, 6.0, 2.0])
    assert mouth_corr(real, 0.5 * real + 3) == pytest.approx(1.0)  # scale- and offset-free
    assert mouth_corr(real, -real) == pytest.approx(-1.0)
    assert mouth_std_ratio(real, 0.5 * real + 3) == pytest.approx(0.5)  # ...while this measures the scale
    frozen = np.full_like(real, 2.0)
    assert mouth_corr(real, frozen) is None and mouth_std_ratio(real, frozen) == 0.0
    assert mouth_std_ratio(frozen, real) is None and mouth_std_ratio(real[:2], real[:2]) is None


def test_speech_split_judges_only_the_frames_the_speech_sets():
    # three speaking frames that follow the real mouth, two paused ones far off: the split sees only the first
    rows = [{"lmd": 2.0, "open_real": 1.0, "open_rendered": 1.5}, {"lmd": 2.0, "open_real": 3.0, "open_rendered": 3.5},
            {"lmd": 2.0, "open_real": 5.0, "open_rendered": 5.5}, {"lmd": 8.0, "open_real": 6.0, "open_rendered": 0.0},
            {"lmd": 8.0, "open_real": 0.0, "open_rendered": 6.0}]
    split = speech_split(rows, np.array([True, True, True, False, False]))
    assert split == {"speech_frames": 3, "lmd_speech": 2.0, "mouth_corr_speech": 1.0}
    assert speech_split(rows, np.zeros(5, bool)) == {"speech_frames": 0, "lmd_speech": None, "mouth_corr_speech": None}


@pytest.mark.slow
def test_lmd_is_zero_for_the_same_frame_and_grows_with_the_mouth(metrics, may_subject):
    s = Subject(may_subject)
    frame = s.frame(0)
    assert metrics.lmd(frame, frame) == 0.0
    shifted = metrics.lmd(frame, np.roll(frame, 3, axis=1))  # the whole face 3 px to the right
    assert 2.0 < shifted < 4.0
    mouth = s.tracking.mouth_open
    closed, wide = s.frame(int(np.argmin(mouth))), s.frame(int(np.argmax(mouth)))
    assert metrics.lmd(closed, wide) > 3 * shifted  # 10.8 px measured
    assert metrics.lmd(np.zeros_like(frame), frame) is None  # no face in the real frame


@pytest.mark.slow
def test_csim_tells_people_apart(metrics, may_subject):
    s = Subject(may_subject)
    may_a, may_b = s.frame(0), s.frame(60)
    other = cv2.resize(video_frames(data_file("videos", "trump_10s.mp4"), limit=11)[10], (512, 512))
    same, different = metrics.csim(may_a, may_b), metrics.csim(may_a, other)
    assert metrics.csim(may_a, may_a) == pytest.approx(1.0)
    assert same > 0.95 and different < 0.92 and same - different > 0.05, (same, different)
