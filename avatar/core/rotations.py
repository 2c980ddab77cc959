"""Rotation conversions, one place for every stage (PyTorch, any device and dtype).

Conventions: axis-angle vectors in radians; quaternions ``wxyz``; rotation
matrices act on column vectors (``x' = R @ x``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def axis_angle_to_matrix(rvec: Tensor) -> Tensor:
    """(F, 3) axis-angle, radians -> (F, 3, 3) rotation matrices (Rodrigues, safe at 0)."""
    theta2 = (rvec * rvec).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2)
    small = theta2 < 1e-8  # Taylor series there: sin(t)/t and (1 - cos(t))/t^2 are 0/0
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(safe)) / safe ** 2)
    x, y, z = rvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rvec.dtype, device=rvec.device).expand_as(skew)
    return eye + a[..., None] * skew + b[..., None] * (skew @ skew)


def quat_to_rotmat(quats: Tensor, min_norm: float = 1e-12) -> Tensor:
    """(..., 4) wxyz quaternions (any norm > 0) -> (..., 3, 3) rotation matrices.

    Norms below ``min_norm`` are clamped to it, so a zero quaternion gives a
    finite (degenerate) matrix instead of NaN.
    """
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(min_norm)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def rotmat_to_quat(R: Tensor) -> Tensor:
    """(N, 3, 3) rotation matrices -> (N, 4) wxyz unit quaternions (w >= 0)."""
    w = torch.sqrt(torch.clamp(1 + R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2], min=1e-12)) / 2
    x = torch.sqrt(torch.clamp(1 + R[:, 0, 0] - R[:, 1, 1] - R[:, 2, 2], min=0)) / 2
    y = torch.sqrt(torch.clamp(1 - R[:, 0, 0] + R[:, 1, 1] - R[:, 2, 2], min=0)) / 2
    z = torch.sqrt(torch.clamp(1 - R[:, 0, 0] - R[:, 1, 1] + R[:, 2, 2], min=0)) / 2
    x = torch.copysign(x, R[:, 2, 1] - R[:, 1, 2])
    y = torch.copysign(y, R[:, 0, 2] - R[:, 2, 0])
    z = torch.copysign(z, R[:, 1, 0] - R[:, 0, 1])
    return torch.stack([w, x, y, z], dim=-1)
