"""Shoulder tracking (preprocess/torso.py) and the torso it moves (AvatarGaussians.place)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from avatar.model.gaussians import torso_motion_m
from avatar.model.init import init_avatar
from preprocess.config import TorsoConfig
from preprocess.subject import Subject
from preprocess.torso import neck_column, shoulder_region, track_shoulders


@pytest.fixture(scope="module")
def subject(may_subject) -> Subject:
    return Subject(may_subject)


def test_a_known_sway_is_recovered_to_a_fraction_of_a_pixel(subject):
    """A real frame moved along a known path (sideways by up to 14 px, down by up to 10, sub-pixel steps): the tracker finds every frame's motion to within a fraction of a pixel in
    99% of the shoulder region (a tenth on average), and to a pixel or so at its far edge."""
    cfg = TorsoConfig()
    t = subject.tracking
    frames = np.flatnonzero(t.valid)
    region = shoulder_region(subject.labels, frames[:20], neck_column(t.landmarks2d, t.valid), cfg)
    assert region.sum() > 0.02 * region.size
    base = subject.frame(int(frames[0]))
    size = base.shape[0]
    k = np.arange(40)
    truth = np.zeros((len(k), 3, 3))
    truth[:, 2, 2] = 1
    truth[:, 0, 0] = truth[:, 1, 1] = 1
    truth[:, 0, 2] = 14 * np.sin(k / 6.0)
    truth[:, 1, 2] = 5 - 5 * np.cos(k / 4.0)  # downwards: moved up, the frame's edge would be smeared into view
    # cv2's pixel centres are at integers, ours at +0.5: in ours, x -> s x + b is x - 0.5 -> s (x - 0.5) + b
    to_cv = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    warp = lambda i: cv2.warpAffine(base, (to_cv @ truth[i] @ np.linalg.inv(to_cv))[:2], (size, size),  # noqa: E731
                                    flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    affine, measured = track_shoulders(warp, len(truth), region, 0, cfg, desc=None)
    assert measured.all() and affine.shape == (len(k), 2, 3)
    found = np.tile(np.eye(3), (len(k), 1, 1))
    found[:, :2] = affine
    # the motion from frame 0 to each frame, whatever the usual place is
    found, expected = found @ np.linalg.inv(found[0]), truth @ np.linalg.inv(truth[0])
    ys, xs = np.nonzero(region)
    points = np.c_[xs + 0.5, ys + 0.5, np.ones(len(xs))]  # every region pixel: where each map sends it
    error = np.linalg.norm(points @ found.transpose(0, 2, 1) - points @ expected.transpose(0, 2, 1), axis=-1)
    # measured on may_5s (6 Dec): mean 0.10 px, 99th percentile 0.52, max 1.10 in one frame. may_5s's region is a
    # band of 144 rows under full-width shoulders, so its vertical scale is weakly held and trades with the shift
    # (-0.8% against 4 px there), which shows only at the band's top edge (2 Dec, another preprocessing: max 0.16)
    assert np.percentile(error, 99) < 0.75 and error.mean() < 0.2, error.max(1).round(2)
    assert error.max() < 1.5, error.max(1).round(2)
    assert np.abs(np.median(affine, axis=0) - np.eye(2, 3)).max() < 1e-5  # the usual place is the median


def test_the_subject_has_a_torso_track_of_every_frame(subject):
    track = subject.torso
    assert track.affine.shape == (subject.n_frames, 2, 3) and track.affine.dtype == np.float32
    assert np.isfinite(track.affine).all() and track.measured.mean() > 0.9
    usual = np.median(track.affine[track.measured], axis=0)
    assert np.abs(usual - np.eye(2, 3)).max() < 0.01  # the identity is the usual place


def test_the_shoulders_move_with_their_motion_and_the_neck_with_the_head(subject):
    """The torso Gaussians that do not follow the head move by the whole motion; those that follow it fully
    (the neck under the chin) do not move with the shoulders."""
    model = init_avatar(subject)
    t = subject.tracking
    verts, viewmat = torch.from_numpy(t.verts[0]), torch.from_numpy(t.viewmats[0])
    n = len(model) - len(model.torso)
    motion = torch.tensor([[1.03, 0.01, 0.0, 0.02], [-0.01, 0.98, 0.0, -0.01], [0.0, 0.0, 1.0, 0.0]])
    half = len(model.torso) // 2
    with torch.no_grad():
        model.torso.follow_logits[:half] = -20.0  # shoulders
        model.torso.follow_logits[half:] = 20.0  # neck
        still = model.place(verts, viewmat)[0][n:]
        moved = model.place(verts, viewmat, torso=motion)[0][n:]
    R, tr = viewmat[:3, :3], viewmat[:3, 3]
    cam_still, cam_moved = still @ R.T + tr, moved @ R.T + tr  # from the head frame to the camera's
    assert torch.allclose(cam_moved[:half], cam_still[:half] @ motion[:, :3].T + motion[:, 3], atol=1e-5)
    assert (cam_moved[half:] - cam_still[half:]).abs().max() < 1e-5


def test_an_image_motion_moves_the_rendered_shoulders_by_as_much(subject):
    """torso_motion_m: shoulders at one depth, moved by an image map, are seen where the map sends them."""
    model = init_avatar(subject)
    K = torch.from_numpy(subject.tracking.K(subject.size))
    affine = torch.tensor([[1.02, 0.01, -3.0], [0.0, 0.99, 5.0]])
    motion = torso_motion_m(affine, model, K)
    z = float(model.torso.means[:, 2].median())
    p = torch.tensor([[0.05, 0.12, z], [-0.1, 0.15, z]])
    seen = lambda q: (q[:, :2] / q[:, 2:]) * K[0, 0] + K[:2, 2]  # noqa: E731
    assert torch.allclose(seen(p @ motion[:, :3].T + motion[:, 3]), seen(p) @ affine[:, :2].T + affine[:, 2], atol=1e-3)
