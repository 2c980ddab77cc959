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
    small = theta2 < 1e-8  # Taylor series there: sin(t)/t and (1 - cos(t))/t^2 are 0/0
    # the square root of 1, not of 0, where small: sqrt's infinite slope at 0 would make the gradient NaN
    safe = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
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
    """(..., 3, 3) rotation matrices -> (..., 4) wxyz unit quaternions with w >= 0.

    Shepperd's method: each matrix takes the candidate built from its largest
    of (trace, R00, R11, R22), so rotations near 180 degrees (where w -> 0 and the
    signs of x, y, z cannot be read off the antisymmetric part) come out right.
    """
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    trace = m00 + m11 + m22
    candidates = torch.stack([  # (..., 4 candidates, 4 components), each times 4 * its pivot component
        torch.stack([1 + trace, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], -2)
    best = torch.stack([trace, m00, m11, m22], -1).argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_left_matrix(a: Tensor) -> Tensor:
    """(4, 4) matrix L of one wxyz quaternion ``a`` with ``quat_multiply(a, b) == b @ L.T`` for any (N, 4) ``b``:
    turning many quaternions by one is then a single small matmul (10x the broadcast product on 15k)."""
    w, x, y, z = a.unbind(-1)
    return torch.stack([torch.stack([w, -x, -y, -z]), torch.stack([x, w, -z, y]),
                        torch.stack([y, z, w, -x]), torch.stack([z, -y, x, w])])


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """(..., 4) wxyz Hamilton product ``a * b`` (the rotation ``b`` first, then ``a``); broadcasts.

    Composing as quaternions costs a few multiplies per Gaussian where going
    through matrices (``rotmat_to_quat(R_a @ R_b)``) costs a Shepperd selection.
    """
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)
