"""Keeping the lips' Gaussians out of the mouth opening.

The tracked mesh has a hole between the inner lips. A face Gaussian bound to a
triangle on that hole's edge can drift across the edge, and the photometric loss
barely notices it: the mouth is nearly closed in most frames, where the two lips
meet at that edge anyway. When the mouth opens, such Gaussians hang in the gap
and the rendered mouth opens less than the mesh.

:class:`LipEdges` holds, for each triangle with an edge on the inner-lip loop,
that edge as a line in the triangle's local frame (at the mean shape, in units of
the triangle's size, see :mod:`avatar.model.binding`). :meth:`LipEdges.penalty`
is the mean squared amount by which the Gaussians of those triangles reach
across it: a Gaussian should keep its centre one standard deviation (in-plane,
across the edge) on the lip's side.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from avatar.core.rotations import quat_to_rotmat
from avatar.model.binding import to_triangle_local, triangle_frames
from preprocess.face_topology import lips_inner


class LipEdges:
    """The inner-lip edges of a face mesh's triangles, in their local frames."""

    def __init__(self, mean_shape: Tensor, faces: Tensor):
        """``mean_shape``: (V, 3) metres; ``faces``: (T, 3) int64 triangles (their local frames are the binding's)."""
        loop = lips_inner()
        edges = {frozenset((int(a), int(b))) for a, b in zip(loop, np.roll(loop, -1))}
        tri = faces.numpy()
        rows, pairs = [], []
        for t, (a, b, c) in enumerate(tri):
            for p, q, other in ((a, b, c), (b, c, a), (c, a, b)):
                if frozenset((int(p), int(q))) in edges:
                    rows.append(t)
                    pairs.append((p, q, other))
        n_tri = len(tri)
        self.has_edge = torch.zeros(n_tri, dtype=torch.bool)
        """(T,) bool: the triangle has an edge on the inner-lip loop."""
        self.point = torch.zeros(n_tri, 2)
        """(T, 2) a point of that edge, local in-plane coordinates (units of the triangle's size)."""
        self.inward = torch.zeros(n_tri, 2)
        """(T, 2) unit in-plane normal of the edge, pointing into the triangle (toward the lip)."""
        if not rows:
            return
        frames = triangle_frames(mean_shape.double(), faces)
        idx = torch.tensor(rows)
        corner = [torch.as_tensor([pq[j] for pq in pairs]) for j in range(3)]
        p, q, o = (to_triangle_local(mean_shape.double()[c], idx, frames)[:, :2] for c in corner)
        along = (q - p) / (q - p).norm(dim=-1, keepdim=True).clamp_min(1e-12)
        normal = torch.stack([-along[:, 1], along[:, 0]], -1)
        normal = torch.where(((o - p) * normal).sum(-1, keepdim=True) < 0, -normal, normal)
        self.has_edge[idx] = True
        self.point[idx] = p.float()
        self.inward[idx] = normal.float()

    def penalty(self, local_means: Tensor, local_quats: Tensor, local_log_scales: Tensor, parent: Tensor) -> Tensor:
        """Mean over the edge triangles' Gaussians of relu(sigma_across - distance)^2 (units of triangle size):
        how far each reaches across its triangle's inner-lip edge. Zero when there are none."""
        on = self.has_edge[parent]
        if not bool(on.any()):
            return local_means.new_zeros(())
        par = parent[on]
        n = self.inward[par]
        dist = ((local_means[on, :2] - self.point[par]) * n).sum(-1)
        rot = quat_to_rotmat(local_quats[on] / local_quats[on].norm(dim=-1, keepdim=True))
        n3 = torch.cat([n, n.new_zeros(len(n), 1)], -1)
        sigma = ((rot.transpose(-1, -2) @ n3[..., None])[..., 0] * torch.exp(local_log_scales[on])).norm(dim=-1)
        return torch.relu(sigma - dist).square().mean()
