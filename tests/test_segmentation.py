"""Label maps on real frames with real MediaPipe landmarks and selfie segmentation.

The frames and landmarks are the session fixtures ``may_frames`` / ``may_landmarks``
(tests/conftest.py), a few frames spread over may_5s.mp4.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from preprocess import face_topology as topo
from preprocess.config import SegmentationConfig
from preprocess.segmentation import (LABEL_BACKGROUND, LABEL_EYES, LABEL_HEAD, LABEL_MOUTH, LABEL_TORSO, LABELS,
                                     Segmenter)

FRAME_INDICES = (0, 30, 60, 90, 120)


@pytest.fixture(scope="module")
def clip(may_frames, may_landmarks):
    """(frames, landmarks, labels) of a few frames spread over may_5s.mp4: (478, 2) float32
    pixel landmarks from real MediaPipe FaceMesh (refine_landmarks), labels from them."""
    frames = [may_frames[i] for i in FRAME_INDICES]
    assert may_landmarks.valid[list(FRAME_INDICES)].all(), "MediaPipe found no face in a may_5s.mp4 frame"
    landmarks = [may_landmarks.points[i, :, :2] for i in FRAME_INDICES]
    with Segmenter() as seg:
        labels = [seg(f, lm) for f, lm in zip(frames, landmarks)]
    return frames, landmarks, labels


def _polygon_mask(shape, points: np.ndarray, grow_px: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    pts = np.round(points - 0.5).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    cv2.polylines(mask, [pts], True, 1, thickness=2 * grow_px + 1)
    return mask > 0


def test_labels_are_valid_uint8_maps(clip):
    frames, _, labels = clip
    for frame, lab in zip(frames, labels):
        assert lab.dtype == np.uint8 and lab.shape == frame.shape[:2]
        assert set(np.unique(lab).tolist()) <= set(LABELS)
    assert set(np.unique(np.stack(labels)).tolist()) == set(LABELS), "every label should occur in the clip"


def test_head_area_is_a_sensible_fraction(clip):
    for lab in clip[2]:
        head = np.isin(lab, (LABEL_HEAD, LABEL_MOUTH, LABEL_EYES)).mean()
        assert 0.15 < head < 0.6, head


def test_face_oval_is_head(clip):
    _, landmarks, labels = clip
    for lm, lab in zip(landmarks, labels):
        nose = np.floor(lm[topo.NOSE_TIP]).astype(int)
        assert lab[nose[1], nose[0]] == LABEL_HEAD


def test_mouth_is_inside_the_lips(clip):
    _, landmarks, labels = clip
    for lm, lab in zip(landmarks, labels):
        mouth = lab == LABEL_MOUTH
        lips = _polygon_mask(lab.shape, lm[topo.lips_outer()], grow_px=1)
        assert not np.any(mouth & ~lips)
    # The speaker talks: some frame has an open mouth.
    assert max((lab == LABEL_MOUTH).sum() for lab in labels) > 50


def test_eyes_are_at_the_eye_landmarks(clip):
    _, landmarks, labels = clip
    for lm, lab in zip(landmarks, labels):
        eyes = lab == LABEL_EYES
        near = _polygon_mask(lab.shape, lm[topo.left_eye()], 3) | _polygon_mask(lab.shape, lm[topo.right_eye()], 3)
        assert eyes.sum() > 20 and not np.any(eyes & ~near)
        for centre in (topo.LEFT_IRIS_CENTER, topo.RIGHT_IRIS_CENTER):
            x, y = np.floor(lm[centre]).astype(int)
            assert lab[y, x] == LABEL_EYES


def test_background_in_top_corners_and_torso_below_the_chin(clip):
    _, landmarks, labels = clip
    for lm, lab in zip(landmarks, labels):
        h, w = lab.shape
        assert np.all(lab[:8, :8] == LABEL_BACKGROUND) and np.all(lab[:8, -8:] == LABEL_BACKGROUND)
        chin = lm[topo.CHIN]
        x, y = int(chin[0]), int(min(h - 1, chin[1] + 0.06 * h))
        assert lab[y, x] == LABEL_TORSO
        assert np.mean(lab[-4:, w // 4: 3 * w // 4] == LABEL_TORSO) > 0.9


def test_without_a_face_the_person_is_head(clip):
    frames, _, labels = clip
    with Segmenter() as seg:
        no_face = seg(frames[0], None)
        nan_face = seg(frames[0], np.full((478, 2), np.nan, np.float32))
    assert set(np.unique(no_face).tolist()) == {LABEL_BACKGROUND, LABEL_HEAD}
    np.testing.assert_array_equal(no_face, nan_face)
    # Same person/background split as with landmarks.
    assert np.mean((no_face > 0) != (labels[0] > 0)) < 0.01


def test_cut_offset_moves_the_head_torso_boundary(clip):
    frames, landmarks, labels = clip
    with Segmenter(SegmentationConfig(neck_cut_offset=0.4)) as seg:
        lower_cut = seg(frames[0], landmarks[0])
    assert (lower_cut == LABEL_HEAD).sum() > (labels[0] == LABEL_HEAD).sum()


def test_rejects_bad_input_and_use_after_close(clip):
    seg = Segmenter()
    with pytest.raises(ValueError):
        seg(clip[0][0][..., 0], None)
    seg.close()
    with pytest.raises(RuntimeError):
        seg(clip[0][0], None)
