"""Background plate from real frames and real selfie segmentation."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from preprocess.background import estimate_background, fill_holes, masked_median, sample_indices
from preprocess.config import BackgroundConfig
from preprocess.segmentation import LABEL_BACKGROUND, Segmenter


def test_masked_median_matches_numpy():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 256, (9, 5, 7, 3), dtype=np.uint8)
    usable = rng.random((9, 5, 7)) < 0.6
    usable[:, 0, 0] = False
    median, count = masked_median(values, usable)
    np.testing.assert_array_equal(count, usable.sum(0))
    for y in range(5):
        for x in range(7):
            picked = np.sort(values[usable[:, y, x], y, x].astype(int), axis=0)
            expected = picked[(len(picked) - 1) // 2] if len(picked) else np.zeros(3)
            np.testing.assert_array_equal(median[y, x], expected)


def test_fill_holes_continues_a_gradient_and_keeps_known_pixels():
    ramp = np.linspace(20, 220, 96, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.full((96, 96), 128.0)), -1)
    image = image.astype(np.uint8)
    known = np.ones((96, 96), bool)
    cv2.circle(known.view(np.uint8), (48, 48), 25, 0, -1)
    filled = fill_holes(np.where(known[..., None], image, 0).astype(np.uint8), known)
    np.testing.assert_array_equal(filled[known], image[known])
    err = np.abs(filled.astype(int) - image.astype(int))[~known]
    assert err.mean() < 12 and err.max() < 40


def test_fill_holes_with_nothing_known_is_grey():
    assert np.all(fill_holes(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)) == 128)


def test_sample_indices_spread_over_the_clip():
    idx = sample_indices(1780, 100)
    assert len(idx) == 100 and idx[0] == 0 and idx[-1] == 1779 and np.all(np.diff(idx) > 0)
    assert sample_indices(5, 100).tolist() == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def clip(may_frames):
    """(frames, labels) of every 4th frame of may_5s.mp4 (session fixture ``may_frames``),
    labels from real selfie segmentation."""
    frames = may_frames[::4]
    with Segmenter() as seg:
        labels = [seg(f, None) for f in frames]
    return frames, labels


def test_plate_matches_the_background_and_has_no_holes(clip):
    frames, labels = clip
    reads = []

    def read_frame(i):
        reads.append(i)
        return frames[i]

    cfg = BackgroundConfig(sample_frames=20)
    plate, observed = estimate_background(read_frame, lambda i: labels[i], len(frames), cfg)
    assert len(reads) == 20, "only the sampled frames may be read"
    assert plate.dtype == np.uint8 and plate.shape == frames[0].shape
    assert observed.dtype == bool and 0.2 < observed.mean() < 0.95
    for frame, lab in zip(frames[::5], labels[::5]):
        background = cv2.erode((lab == LABEL_BACKGROUND).astype(np.uint8), np.ones((13, 13), np.uint8)) > 0
        diff = np.abs(plate.astype(np.int16) - frame.astype(np.int16))[background]
        assert diff.mean() < 6, diff.mean()
    # The hole behind the person is filled with background-like colour, not left black.
    hole = plate[~observed].astype(np.float32)
    seen = plate[observed].astype(np.float32)
    assert np.all(np.abs(hole.mean(0) - seen.mean(0)) < 40)
    assert hole.min() > 0 or np.mean(hole.sum(-1) == 0) < 0.001
