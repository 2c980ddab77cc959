"""Gaussians bound to mesh triangles, as GaussianAvatars binds them to FLAME.

Each bound Gaussian has a parent triangle and lives in that triangle's local
frame: its centre, rotation and scale are stored relative to the triangle, so
when the tracked mesh moves with an expression the Gaussian moves, turns and
stretches with its triangle. A densified child copies its parent's triangle
index (``parent`` is gathered like any other per-Gaussian attribute).

Triangle frame (for triangle ``(a, b, c)`` of :func:`preprocess.face_topology.face_triangles`):

- origin: the centroid ``(v_a + v_b + v_c) / 3``;
- axes: x along the edge ``v_b - v_a``; z the unit normal
  ``(v_b - v_a) x (v_c - v_a)``, which points out of the face toward the camera
  for the front faces of that topology; y = z x x. ``R = [x y z]`` (columns) is a
  proper rotation;
- size: ``k`` = mean of the base ``|v_b - v_a|`` and the height on it, so a
  triangle scaled by ``s`` has ``k`` scaled by ``s`` whatever its shape.

A Gaussian with local centre ``m``, local rotation ``q`` (wxyz quaternion) and
local log-scale ``l`` is, in the mesh's frame (the head frame of a subject,
metres; see :mod:`avatar.core.camera`):

    mean = R @ m * k + centroid,   rotation = R * rot(q),   scale = exp(l) * k

Everything is PyTorch and differentiable in the local parameters and in the
vertices (the residual deformation of the fit moves both).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from avatar.core.rotations import quat_multiply, quat_to_rotmat, rotmat_to_quat

MIN_EDGE_M = 1e-9
"""Edge lengths and normals below this (metres) are clamped, so a degenerate triangle stays finite."""


class TriangleFrames(NamedTuple):
    """Local frames of the triangles of one or more meshes (``...`` = leading batch dims, T triangles)."""

    centroids: Tensor  #: (..., T, 3) metres
    rotations: Tensor  #: (..., T, 3, 3) columns: edge direction, in-plane perpendicular, outward normal
    sizes: Tensor  #: (..., T) metres: mean of the base edge and the height on it


class WorldGaussians(NamedTuple):
    """Bound Gaussians placed on a mesh, in the mesh's frame; what :func:`avatar.render.rasterization` takes."""

    means: Tensor  #: (..., N, 3) metres
    quats: Tensor  #: (..., N, 4) wxyz unit quaternions
    scales: Tensor  #: (..., N, 3) metres (standard deviations)


def triangle_frames(verts: Tensor, faces: Tensor) -> TriangleFrames:
    """Frames of the ``faces`` (T, 3) int64 triangles of ``verts`` (..., V, 3) float (metres)."""
    a, b, c = (verts[..., faces[:, j], :] for j in range(3))
    base = b - a
    base_len = base.norm(dim=-1, keepdim=True).clamp_min(MIN_EDGE_M)
    x = base / base_len
    normal = torch.cross(base, c - a, dim=-1)
    double_area = normal.norm(dim=-1, keepdim=True).clamp_min(MIN_EDGE_M ** 2)
    z = normal / double_area
    y = torch.cross(z, x, dim=-1)
    height = double_area / base_len
    return TriangleFrames(centroids=(a + b + c) / 3.0,
                          rotations=torch.stack([x, y, z], dim=-1),
                          sizes=0.5 * (base_len + height)[..., 0])


def bind_to_mesh(local_means: Tensor, local_quats: Tensor, local_log_scales: Tensor, parent: Tensor,
                 frames: TriangleFrames) -> WorldGaussians:
    """Place N bound Gaussians on the mesh whose triangle frames are ``frames``.

    Args:
        local_means: (N, 3) centre in the parent triangle's frame, in units of its size ``k``.
        local_quats: (N, 4) wxyz rotation relative to the triangle frame (any norm > 0).
        local_log_scales: (N, 3) log of the scale in units of ``k``.
        parent: (N,) int64 index of each Gaussian's triangle.
        frames: :func:`triangle_frames` of the mesh, leading dims ``...`` (e.g. frames of a clip).

    Returns:
        :class:`WorldGaussians` with leading dims ``...``.
    """
    rot = frames.rotations[..., parent, :, :]  # (..., N, 3, 3)
    size = frames.sizes[..., parent, None]  # (..., N, 1)
    means = (rot @ local_means[..., None])[..., 0] * size + frames.centroids[..., parent, :]
    # one matrix -> quaternion per triangle, then a quaternion product per Gaussian (cheaper than per Gaussian)
    tri_quats = rotmat_to_quat(frames.rotations)  # (..., T, 4)
    quats = quat_multiply(tri_quats[..., parent, :], local_quats / local_quats.norm(dim=-1, keepdim=True))
    scales = torch.exp(local_log_scales) * size
    return WorldGaussians(means=means, quats=quats, scales=scales)


def to_triangle_local(points: Tensor, parent: Tensor, frames: TriangleFrames) -> Tensor:
    """(N, 3) points in the mesh's frame -> (N, 3) local means relative to their ``parent`` triangles
    of one mesh (the inverse of the ``means`` part of :func:`bind_to_mesh`)."""
    rot = frames.rotations[parent]
    return (rot.transpose(-1, -2) @ (points - frames.centroids[parent])[..., None])[..., 0] / frames.sizes[parent, None]


def unbind_from_mesh(means: Tensor, quats: Tensor, scales: Tensor, parent: Tensor,
                     frames: TriangleFrames) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`bind_to_mesh` for one mesh: world (N, 3) means, (N, 4) quats, (N, 3) scales
    -> local means, local quats, local log-scales relative to the ``parent`` triangles."""
    local_rot = frames.rotations[parent].transpose(-1, -2) @ quat_to_rotmat(quats)
    return (to_triangle_local(means, parent, frames), rotmat_to_quat(local_rot),
            torch.log(scales / frames.sizes[parent, None]))

