"""Face model, joint tracking fit and head-pose stabiliser on real landmarks.

preprocess/face_model.py and preprocess/tracking.py, fed by real MediaPipe
landmarks of the shared test clips: may_5s's landmarks and tracking are the
session fixtures ``may_landmarks`` and ``may_tracking`` (tests/conftest.py),
trump_10s's are computed here once.
"""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from avatar.core.camera import intrinsics, project
from avatar.core.errors import UserError
from avatar.core.media import ffmpeg_command
from preprocess.config import TrackingConfig
from preprocess.face_model import (LEFT_EYE_OUTER, NOSE_BRIDGE, RIGHT_EYE_OUTER, build_face_model,
                                   eye_openness, similarity_align)
from preprocess.landmarks import detect_landmarks
from preprocess.tracking import RIGID_LANDMARKS, fit_tracking, pose_jitter_deg
from tests.conftest import data_file, video_frames

CLIPS = {"may": "may_5s.mp4", "trump": "trump_10s.mp4"}
SIZE = 512  # both clips are 512 x 512
NOSE_TIP, CHIN = 1, 152


@pytest.fixture(scope="module")
def trump_landmarks():
    frames = video_frames(data_file("videos", CLIPS["trump"]))
    return detect_landmarks(frames, len(frames))


@pytest.fixture(scope="module")
def trump_tracking(trump_landmarks):
    lm = trump_landmarks
    return fit_tracking(lm.points, lm.valid, SIZE, SIZE, TrackingConfig())


def audio_level_db(name: str, n_frames: int, fps: int = 25, rate: int = 16000) -> np.ndarray:
    """(F,) per-video-frame loudness of the clip's sound track, dB full scale."""
    path = data_file("videos", CLIPS[name])
    pcm = subprocess.run(ffmpeg_command(["-i", path, "-f", "s16le", "-ac", "1", "-ar", str(rate), "-"]),
                         capture_output=True, check=True).stdout
    audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
    hop = rate // fps
    audio = np.pad(audio, (0, max(0, n_frames * hop - len(audio))))[: n_frames * hop]
    return 10 * np.log10((audio.reshape(n_frames, hop) ** 2).mean(1) + 1e-10)


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(F, 3, 3) x 2 -> (F,) angle of a @ b^T, degrees."""
    cos = (np.trace(a @ b.transpose(0, 2, 1), axis1=1, axis2=2) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


# ---------------------------------------------------------------- face model
def test_similarity_align_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(2, 30, 3))
    rot = cv2.Rodrigues(np.array([0.3, -0.2, 0.5]))[0]
    dst = 1.7 * src[0] @ rot.T + np.array([1.0, -2.0, 0.5])
    scale, r, t = similarity_align(src[:1], dst)
    assert np.allclose(scale, 1.7) and np.allclose(r[0], rot) and np.allclose(t[0], [1.0, -2.0, 0.5])


def test_face_model_is_metric_in_the_head_frame(may_landmarks):
    lm = may_landmarks
    model = build_face_model(lm.points[lm.valid], RIGID_LANDMARKS, n_expr=16)
    mean = model.mean
    assert model.basis.shape == (16, 478, 3)
    assert np.linalg.norm(mean[LEFT_EYE_OUTER] - mean[RIGHT_EYE_OUTER]) == pytest.approx(0.09, rel=1e-4)
    assert mean[LEFT_EYE_OUTER, 0] > 0.03 > -0.03 > mean[RIGHT_EYE_OUTER, 0]  # x: image right
    assert mean[CHIN, 1] > 0.08  # y: down
    assert mean[NOSE_TIP, 2] < mean[NOSE_BRIDGE, 2] < 0  # z: away from the camera, origin behind the face
    assert np.allclose(model.verts(np.zeros((1, 16)))[0], mean)  # zero expression = mean shape


# ---------------------------------------------------------------- joint fit on real clips
def test_fit_reprojects_landmarks_within_a_pixel_with_a_plausible_focal(may_landmarks, may_tracking):
    lm, res = may_landmarks, may_tracking
    assert np.nanmean(res.reproj_px) < 1.0
    assert np.isfinite(res.reproj_px[lm.valid]).all()
    fov = np.degrees(2 * np.arctan(SIZE / 2 / res.focal_px))
    assert 10 < fov < 60


def test_outputs_are_consistent_with_the_camera_convention(may_tracking):
    res = may_tracking
    n_frames, n_expr = res.expr.shape
    assert res.verts.shape == (n_frames, 478, 3) and res.expr_basis.shape == (n_expr, 478, 3)
    verts = res.mean_shape + np.einsum("fk,knc->fnc", res.expr, res.expr_basis)
    assert np.allclose(verts, res.verts, atol=1e-6)
    K = intrinsics(res.focal_px, SIZE, SIZE)
    for f in (0, n_frames // 2, n_frames - 1):
        assert np.allclose(project(res.verts[f], res.viewmats[f], K), res.landmarks2d[f], atol=1e-3)


@pytest.mark.parametrize("field", ["viewmats", "pnp_viewmats"])
def test_viewmats_are_rigid_and_put_the_head_in_front_of_the_camera(field, may_tracking):
    view = getattr(may_tracking, field).astype(np.float64)
    rot = view[:, :3, :3]
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert np.allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    assert np.allclose(view[:, 3], [0, 0, 0, 1])
    assert (view[:, 2, 3] > 0.2).all() and (view[:, 2, 3] < 3.0).all()  # metres in front


def test_stabilised_pose_jitters_far_less_than_raw_pnp(may_landmarks, may_tracking):
    lm, res = may_landmarks, may_tracking
    stabilised, raw = pose_jitter_deg(res.viewmats, lm.valid), pose_jitter_deg(res.pnp_viewmats, lm.valid)
    assert stabilised < 0.5 * raw
    # ... while still following the head: the two poses agree to a couple of degrees.
    assert np.median(rotation_angle_deg(res.viewmats[:, :3, :3], res.pnp_viewmats[:, :3, :3])) < 3.0


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_mouth_moves_more_while_talking_than_in_silence(name, request):
    mouth = request.getfixturevalue(f"{name}_tracking").mouth_open
    level = audio_level_db(name, len(mouth))
    silent, talking = level < -50, level > -35
    assert silent.sum() >= 10 and talking.sum() >= 50
    assert mouth.std() > 0.03
    motion = np.convolve(np.abs(np.diff(mouth, prepend=mouth[0])), np.ones(5) / 5, "same")
    assert motion[talking].mean() > 1.5 * motion[silent].mean()


def test_eye_openness_is_a_blink_signal_that_follows_the_landmarks(may_landmarks, may_tracking):
    lm, res = may_landmarks, may_tracking
    eyes = res.eye_open
    assert eyes.shape == (len(lm), 2)
    assert (eyes >= 0).all() and (eyes < 1).all()
    assert eyes.min() < 0.5 * np.median(eyes)  # may_5s has a blink
    raw = eye_openness(lm.points)  # the same measure on MediaPipe's own 3D points
    assert np.corrcoef(raw.mean(1), eyes.mean(1))[0, 1] > 0.9


def test_frames_without_a_face_are_interpolated_from_their_neighbours(may_landmarks, may_tracking):
    lm, full = may_landmarks, may_tracking
    lost = np.zeros(len(lm), bool)
    lost[:3] = lost[60:70] = True
    points = np.where(lost[:, None, None], np.nan, lm.points)
    res = fit_tracking(points, lm.valid & ~lost, SIZE, SIZE, TrackingConfig())
    assert np.isfinite(res.viewmats).all() and np.isfinite(res.verts).all()
    assert np.isnan(res.reproj_px[lost]).all() and np.isfinite(res.reproj_px[~lost]).all()
    assert rotation_angle_deg(res.viewmats[lost, :3, :3], full.viewmats[lost, :3, :3]).max() < 3.0


def test_fit_is_deterministic(may_landmarks):
    lm = may_landmarks
    cfg = TrackingConfig(iters=2)
    a, b = (fit_tracking(lm.points[:40], lm.valid[:40], SIZE, SIZE, cfg) for _ in range(2))
    assert a.focal_px == b.focal_px
    for field in ("viewmats", "expr", "verts", "landmarks2d"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_too_few_frames_with_a_face_is_a_user_error(may_landmarks):
    lm = may_landmarks
    valid = np.zeros(len(lm), bool)
    valid[:5] = True
    with pytest.raises(UserError, match="frames show exactly one face"):
        fit_tracking(lm.points, valid, SIZE, SIZE, TrackingConfig())


# ---------------------------------------------------------------- jitter metric
def test_pose_jitter_measures_changes_of_angular_velocity():
    n, speed, wobble = 40, 0.5, 0.1  # degrees per frame, degrees
    angles = speed * np.arange(n)
    steady = np.tile(np.eye(4), (n, 1, 1))
    steady[:, :3, :3] = [cv2.Rodrigues(np.radians([0.0, a, 0.0]))[0] for a in angles]
    assert pose_jitter_deg(steady) == pytest.approx(0.0, abs=1e-6)
    shaky = steady.copy()
    shaky[:, :3, :3] = [cv2.Rodrigues(np.radians([0.0, a + wobble * (-1) ** k, 0.0]))[0]
                        for k, a in enumerate(angles)]
    assert pose_jitter_deg(shaky) == pytest.approx(4 * wobble, rel=1e-4)
    spiked = steady.copy()
    spiked[20, :3, :3] = cv2.Rodrigues(np.radians([5.0, 0.0, 0.0]))[0]
    valid = np.ones(n, bool)
    valid[20] = False
    assert pose_jitter_deg(spiked, valid) == pytest.approx(0.0, abs=1e-6)
    assert pose_jitter_deg(spiked) > 1.0
