"""Gaussians bound to mesh triangles follow the mesh: rigid motion, scale, expressions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatar.core.rotations import axis_angle_to_matrix, quat_to_rotmat, rotmat_to_quat
from avatar.model.binding import bind_to_mesh, triangle_frames, unbind_from_mesh
from preprocess.face_topology import face_triangles

FACES = torch.from_numpy(face_triangles().astype(np.int64))


def random_rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return quat_to_rotmat(torch.randn(4, generator=g, dtype=torch.float64))


def random_bound(n: int, n_tri: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3,
            torch.randn(n, 4, generator=g, dtype=torch.float64),
            torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.5 - 1.0,
            torch.randint(0, n_tri, (n,), generator=g))


@pytest.fixture(scope="module")
def face(may_subject):
    """The tracked mesh of may_5s: (F, 478, 3) float64 head-frame vertices, metres."""
    from preprocess.subject import Subject
    return torch.from_numpy(Subject(may_subject).tracking.verts.astype(np.float64))


def test_frames_are_proper_rotations_with_the_outward_normal(face):
    fr = triangle_frames(face[0], FACES)
    R = fr.rotations
    assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3, dtype=R.dtype).expand_as(R), atol=1e-9)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(FACES), dtype=R.dtype), atol=1e-9)
    # front faces: the normal (third column) points toward the camera, -z in the head frame
    assert (R[:, 2, 2] < 0).float().mean() > 0.9
    assert ((fr.sizes > 1e-4) & (fr.sizes < 0.03)).all()  # millimetres to centimetres on a real face


def test_bound_gaussians_move_rigidly_with_the_mesh(face):
    verts = face[0]
    local = random_bound(500, len(FACES))
    R, t = random_rotation(1), torch.tensor([0.1, -0.2, 0.7], dtype=torch.float64)
    here = bind_to_mesh(*local, triangle_frames(verts, FACES))
    there = bind_to_mesh(*local, triangle_frames(verts @ R.T + t, FACES))
    assert torch.allclose(there.means, here.means @ R.T + t, atol=1e-9)
    assert torch.allclose(quat_to_rotmat(there.quats), R @ quat_to_rotmat(here.quats), atol=1e-9)
    assert torch.allclose(there.scales, here.scales, atol=1e-12)


def test_bound_gaussians_scale_with_their_triangle(face):
    verts = face[0]
    local = random_bound(300, len(FACES), seed=2)
    here = bind_to_mesh(*local, triangle_frames(verts, FACES))
    bigger = bind_to_mesh(*local, triangle_frames(2.0 * verts, FACES))
    assert torch.allclose(bigger.scales, 2.0 * here.scales, atol=1e-12)
    assert torch.allclose(bigger.means, 2.0 * here.means, atol=1e-12)


def test_an_expression_moves_mouth_gaussians_and_not_forehead_ones(face, may_subject):
    from preprocess.landmark_ids import FOREHEAD_TOP, INNER_LIPS
    from preprocess.subject import Subject

    mouth_open = Subject(may_subject).tracking.mouth_open
    closed, wide = int(np.argmin(mouth_open)), int(np.argmax(mouth_open))
    lip = INNER_LIPS[1][1]  # the lower lip's middle
    tri_of = lambda v: int(torch.nonzero((FACES == v).any(1))[0])  # noqa: E731
    parent = torch.tensor([tri_of(lip), tri_of(FOREHEAD_TOP)])
    local = (torch.zeros(2, 3, dtype=torch.float64), torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64),
             torch.full((2, 3), -1.0, dtype=torch.float64), parent)
    frames = triangle_frames(face[[closed, wide]], FACES)  # two frames of the clip at once
    means = bind_to_mesh(*local, frames).means  # (2 frames, 2 Gaussians, 3)
    lip_moved = (means[1, 0] - means[0, 0]).norm().item()
    brow_moved = (means[1, 1] - means[0, 1]).norm().item()
    assert lip_moved > 3e-3 and brow_moved < 0.25 * lip_moved, (lip_moved, brow_moved)


def test_unbind_inverts_bind_and_children_inherit_the_parent_triangle(face):
    frames = triangle_frames(face[10], FACES)
    local = random_bound(200, len(FACES), seed=3)
    world = bind_to_mesh(*local, frames)
    m, q, s = unbind_from_mesh(world.means, world.quats, world.scales, local[3], frames)
    assert torch.allclose(m, local[0], atol=1e-9) and torch.allclose(s, local[2], atol=1e-9)
    assert torch.allclose(quat_to_rotmat(q), quat_to_rotmat(local[1]), atol=1e-9)
    # densifying = gathering every per-Gaussian attribute, the parent index included
    keep = torch.tensor([5, 5, 17])
    children = bind_to_mesh(*(x[keep] for x in local), frames)
    assert torch.equal(children.means[0], children.means[1])
    assert torch.allclose(children.means, world.means[keep])


def test_gradients_match_finite_differences(face):
    m, q, s, parent = random_bound(6, len(FACES), seed=4)
    verts = face[0].clone()

    def placed(m, q, s, verts):
        world = bind_to_mesh(m, q, s, parent, triangle_frames(verts, FACES))
        return world.means, world.quats, world.scales

    inputs = tuple(x.clone().requires_grad_(True) for x in (m, q, s, verts))
    assert torch.autograd.gradcheck(placed, inputs, eps=1e-7, atol=1e-5)


def test_rotmat_to_quat_is_right_near_half_turns():
    g = torch.Generator().manual_seed(5)
    axes = torch.nn.functional.normalize(torch.randn(1000, 3, generator=g, dtype=torch.float64), dim=-1)
    for angle in (math.pi, math.pi - 1e-7, 2.0, 1e-8):
        q = torch.cat([torch.full((1000, 1), math.cos(angle / 2), dtype=torch.float64),
                       axes * math.sin(angle / 2)], -1)
        R = quat_to_rotmat(q)
        assert torch.allclose(quat_to_rotmat(rotmat_to_quat(R)), R, atol=1e-12), angle


def test_axis_angle_gradients_are_finite_at_no_rotation():
    """The Taylor branch at 0 must not drag sqrt's infinite slope into the gradient (it once made it NaN)."""
    r = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    R = axis_angle_to_matrix(r)
    (R * torch.arange(9, dtype=torch.float64).view(3, 3)).sum().backward()
    assert torch.isfinite(r.grad).all()
    # d(R v)/dr at 0 is -[v]x: the derivative of a small turn
    v = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda x: axis_angle_to_matrix(x[None])[0] @ v,
                                             torch.zeros(3, dtype=torch.float64))
    skew = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], dtype=torch.float64)
    assert torch.allclose(jac, -skew, atol=1e-12)


def test_lip_edge_penalty_keeps_lip_gaussians_out_of_the_mouth_opening(face):
    from avatar.model.lip_edge import LipEdges

    edges = LipEdges(face[0].float(), FACES)
    assert int(edges.has_edge.sum()) == 20  # the inner-lip loop's 20 edges, each on one triangle (a hole)
    tri = int(torch.nonzero(edges.has_edge)[0, 0])
    parent = torch.tensor([tri, tri])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2)
    thin = torch.full((2, 3), math.log(1e-3))
    at_centroid = torch.zeros(2, 3)
    assert float(edges.penalty(at_centroid, quats, thin, parent)) == 0.0  # small, and on the lip's side
    wide = torch.full((2, 3), math.log(2.0))
    assert float(edges.penalty(at_centroid, quats, wide, parent)) > 0.5  # a blob over the edge reaches across
    across = (edges.point[tri] - 0.5 * edges.inward[tri]).repeat(2, 1)
    means = torch.cat([across, torch.zeros(2, 1)], 1).requires_grad_(True)
    penalty = edges.penalty(means, quats, thin, parent)
    assert float(penalty) > 0.2
    penalty.backward()
    assert float((means.grad[:, :2] * edges.inward[tri]).sum()) < 0  # descent moves it back onto the lip
    off_edge = torch.nonzero(~edges.has_edge)[0, 0].repeat(2)
    assert float(edges.penalty(means.detach(), quats, wide, off_edge)) == 0.0  # other triangles are free
