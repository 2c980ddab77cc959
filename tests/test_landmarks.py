"""MediaPipe FaceMesh landmarks on real video (preprocess/landmarks.py).

``may_frames`` and ``may_landmarks`` (``detect_landmarks`` on them with the default
LandmarkConfig) are session fixtures of tests/conftest.py, shared with the tracking,
segmentation and face-topology tests.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from preprocess.landmarks import N_LANDMARKS, detect_landmarks, distinct_faces
from tests.conftest import data_file, video_frames


def test_may_has_478_points_on_almost_every_frame_inside_the_image(may_frames, may_landmarks):
    lm = may_landmarks
    assert lm.points.shape == (len(may_frames), N_LANDMARKS, 3) and lm.points.dtype == np.float32
    assert lm.valid.mean() >= 0.99
    assert (lm.n_faces[lm.valid] == 1).all()
    xy = lm.points[lm.valid, :, :2]
    height, width = may_frames[0].shape[:2]
    assert np.isfinite(xy).all()
    assert (xy[..., 0] >= 0).all() and (xy[..., 0] <= width).all()
    assert (xy[..., 1] >= 0).all() and (xy[..., 1] <= height).all()
    # z is in pixels (MediaPipe z * width): a face's depth range is tens of pixels, not a fraction.
    depth_range = np.ptp(lm.points[lm.valid, :468, 2], axis=1)
    assert 20 < np.median(depth_range) < width


def test_black_frame_is_invalid_and_tracking_recovers_after_it(may_frames):
    frames = [may_frames[0], np.zeros_like(may_frames[0]), may_frames[2]]
    lm = detect_landmarks(frames, len(frames))
    assert lm.valid.tolist() == [True, False, True]
    assert lm.n_faces.tolist() == [1, 0, 1]
    assert np.isnan(lm.points[1]).all()
    assert np.isfinite(lm.points[[0, 2]]).all()


def test_two_faces_side_by_side_are_flagged_and_the_larger_is_kept(may_frames):
    trump = video_frames(data_file("videos", "trump_10s.mp4"), limit=1)[0]
    small = cv2.resize(trump, (400, 400), interpolation=cv2.INTER_AREA)
    right = np.zeros_like(may_frames[0])
    right[56:456, 56:456] = small
    frame = np.concatenate([may_frames[0], right], axis=1)  # (512, 1024, 3): May left, Trump right
    lm = detect_landmarks([frame], 1)
    assert lm.n_faces[0] == 2
    assert not lm.valid[0]
    kept_x = lm.points[0, :, 0]
    assert np.isfinite(kept_x).all() and kept_x.max() < 512  # May's face, the larger one


def test_duplicate_tracks_of_one_face_count_once():
    face = np.random.default_rng(0).uniform(100, 300, (N_LANDMARKS, 3)).astype(np.float32)
    shifted, far = face + 5, face + np.array([400, 0, 0], np.float32)
    assert len(distinct_faces([face, shifted], duplicate_iou=0.5)) == 1
    assert len(distinct_faces([face, far], duplicate_iou=0.5)) == 2


def test_frame_count_mismatch_is_an_error(may_frames):
    with pytest.raises(ValueError, match="expected n_frames=3"):
        detect_landmarks(may_frames[:2], 3)
    with pytest.raises(ValueError, match="more than n_frames=1"):
        detect_landmarks(may_frames[:2], 1)
