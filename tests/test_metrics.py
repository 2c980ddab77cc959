"""The fit's face metrics on real frames: LMD measures the mouth, CSIM the identity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatar.fit.metrics import FaceMetrics, psnr
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
