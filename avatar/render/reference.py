"""Pure-PyTorch reference of the 3D Gaussian rasteriser (``backend="torch"``).

Slow and obviously correct: every pixel is evaluated against every visible Gaussian
(memory ~ C x H x W x N), and gradients come from autograd. It defines the semantics
the compiled CPU kernels (``cuda_ext/csrc/rasterize*.cpp``) and the gsplat backend
are tested against:

- **Projection (EWA).** ``cov3d = R S S^T R^T`` from the normalised quaternion (wxyz)
  and linear scales; ``cov2d = J W cov3d W^T J^T + eps2d I`` with ``W`` the camera
  rotation and ``J`` the perspective Jacobian, whose ``x/z, y/z`` are clamped to 1.3x
  the field of view (as gsplat and 3DGS do). ``conic = inverse(cov2d)``.
- **Culling.** A Gaussian is dropped (radius 0) when ``z <= near_plane`` or
  ``z >= far_plane``, ``det(cov2d) <= 0``, ``opacity < 1/255``, or its footprint box
  misses the image.
- **Footprint.** A Gaussian reaches a pixel iff ``alpha = min(0.99, o exp(-sigma))``
  is at least 1/255, ``sigma = 0.5 d^T conic d``, ``d`` = mean2d - pixel centre. That
  region is the ellipse ``sigma <= log(255 o)``; its per-axis half-extents are
  ``extend * sqrt(diag(cov2d))`` with ``extend = min(3.33, sqrt(2 log(255 o)))``
  (gsplat 1.5's opacity-aware bound), and ``radii = ceil`` of the larger one. The
  result does not depend on the tile size.
- **Compositing.** Front to back in order of camera z (ties by index); a pixel stops
  before the Gaussian that would bring its transmittance to <= 1e-4. Colour =
  sum(w c) + T bg, alpha = 1 - T, depth = sum(w z) (not divided by alpha).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from avatar.core.rotations import quat_to_rotmat

ALPHA_THRESHOLD = 1.0 / 255.0
"""Alphas below this are skipped (and define the footprint)."""
ALPHA_MAX = 0.99
"""Alpha is clamped to this so that 1 - alpha never vanishes."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel stops before the Gaussian that would bring its transmittance to this or below."""
EXTEND_MAX = 3.33
"""Largest footprint, in standard deviations."""
MIN_QUAT_NORM = 1e-12
"""Quaternions are divided by max(norm, this)."""


class Projection(NamedTuple):
    """Gaussians projected into C cameras; culled entries are zero."""

    means2d: Tensor  #: (C, N, 2) pixel coordinates of the centres
    conics: Tensor  #: (C, N, 3) inverse 2D covariance [Q00, Q01, Q11], 1/px^2
    depths: Tensor  #: (C, N) camera z of the centres, metres
    extents: Tensor  #: (C, N, 2) half-extents of the footprint ellipse, px (no gradient)
    radii: Tensor  #: (C, N) int32 ceil of the larger half-extent, 0 = culled


def _jacobian(mean_c: Tensor, Ks: Tensor, width: int, height: int) -> Tensor:
    """(C, N, 2, 3) perspective Jacobian at camera-space points (C, N, 3), clamped like gsplat."""
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    x, y, z = mean_c.unbind(-1)
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    tx = z * torch.clamp(x / z, -(cx / fx + 0.3 * tan_fovx), (width - cx) / fx + 0.3 * tan_fovx)
    ty = z * torch.clamp(y / z, -(cy / fy + 0.3 * tan_fovy), (height - cy) / fy + 0.3 * tan_fovy)
    zero = torch.zeros_like(z)
    row0 = torch.stack([fx / z, zero, -fx * tx / (z * z)], dim=-1)
    row1 = torch.stack([zero, fy / z, -fy * ty / (z * z)], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def project(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor,
            Ks: Tensor, width: int, height: int, eps2d: float = 0.3, near_plane: float = 0.01,
            far_plane: float = 1e10) -> Projection:
    """EWA-project N Gaussians into C cameras (shapes as in :func:`rasterization_torch`)."""
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    mean_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]
    z = mean_c[..., 2]
    in_depth = (z > near_plane) & (z < far_plane)
    # Culled entries are replaced by harmless values so no inf/nan reaches autograd.
    safe_mean_c = torch.where(in_depth[..., None], mean_c, torch.ones_like(mean_c))
    z = safe_mean_c[..., 2]

    M = quat_to_rotmat(quats, MIN_QUAT_NORM) * scales[:, None, :]
    cov_w = M @ M.transpose(-1, -2)
    cov_c = R[:, None] @ cov_w[None] @ R[:, None].transpose(-1, -2)
    J = _jacobian(safe_mean_c, Ks, width, height)
    cov2d = J @ cov_c @ J.transpose(-1, -2)
    a = cov2d[..., 0, 0] + eps2d
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    has_det = det > 0
    det = torch.where(has_det, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    means2d = torch.stack([fx * safe_mean_c[..., 0] / z + cx, fy * safe_mean_c[..., 1] / z + cy], dim=-1)

    with torch.no_grad():
        opaque = opacities >= ALPHA_THRESHOLD
        log_ratio = torch.log(opacities.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)
        extend = torch.sqrt(2 * log_ratio).clamp(max=EXTEND_MAX)[None, :]
        extents = torch.stack([extend * a.clamp_min(0).sqrt(), extend * c.clamp_min(0).sqrt()], dim=-1)
        r = torch.ceil(extents)
        on_image = ((means2d[..., 0] + r[..., 0] > 0) & (means2d[..., 0] - r[..., 0] < width)
                    & (means2d[..., 1] + r[..., 1] > 0) & (means2d[..., 1] - r[..., 1] < height))
        visible = in_depth & has_det & opaque[None, :] & (r.amax(-1) > 0) & on_image
        extents = torch.where(visible[..., None], extents, torch.zeros_like(extents))
        radii = torch.where(visible, r.amax(-1), torch.zeros_like(z)).to(torch.int32)

    keep = visible[..., None]
    return Projection(means2d=torch.where(keep, means2d, torch.zeros_like(means2d)),
                      conics=torch.where(keep, conics, torch.zeros_like(conics)),
                      depths=torch.where(visible, z, torch.zeros_like(z)),
                      extents=extents, radii=radii)


def composite_camera(means2d: Tensor, conics: Tensor, depths: Tensor, opacities: Tensor,
                     colors: Tensor, background: Tensor, visible: Tensor, width: int,
                     height: int) -> tuple[Tensor, Tensor, Tensor]:
    """Dense front-to-back compositing of one camera.

    means2d (N, 2) px, conics (N, 3), depths (N,) metres, opacities (N,), colors (N, D),
    background (D,), visible (N,) bool. Returns colour (H, W, D), alpha (H, W, 1) and
    alpha-weighted depth (H, W, 1).
    """
    idx = torch.nonzero(visible).squeeze(1)
    idx = idx[torch.argsort(depths[idx], stable=True)]
    m, q, o, col, z = means2d[idx], conics[idx], opacities[idx], colors[idx], depths[idx]

    ys, xs = torch.meshgrid(torch.arange(height, dtype=m.dtype) + 0.5,
                            torch.arange(width, dtype=m.dtype) + 0.5, indexing="ij")
    dx = m[None, :, 0] - xs.reshape(-1, 1)  # (P, n)
    dy = m[None, :, 1] - ys.reshape(-1, 1)
    sigma = 0.5 * (q[:, 0] * dx * dx + q[:, 2] * dy * dy) + q[:, 1] * dx * dy
    # sigma < 0 only from rounding; clamping keeps exp finite there (those pixels are skipped).
    alpha = torch.clamp(o * torch.exp(-sigma.clamp_min(0)), max=ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
    with torch.no_grad():
        before_stop = torch.cumprod(1 - alpha, dim=1) > TRANSMITTANCE_MIN
    alpha = torch.where(before_stop, alpha, torch.zeros_like(alpha))
    transmittance = torch.cumprod(1 - alpha, dim=1)
    ones = alpha.new_ones(alpha.shape[0], 1)
    t_before = torch.cat([ones, transmittance[:, :-1]], dim=1)
    t_final = torch.cat([ones, transmittance], dim=1)[:, -1:]
    weights = alpha * t_before
    color = weights @ col + t_final * background
    depth = weights @ z[:, None]
    return (color.reshape(height, width, -1), (1 - t_final).reshape(height, width, 1),
            depth.reshape(height, width, 1))


def rasterization_torch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                        colors: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
                        backgrounds: Tensor | None = None, near_plane: float = 0.01,
                        far_plane: float = 1e10, eps2d: float = 0.3) -> tuple[Tensor, Tensor, dict]:
    """Reference rasterisation; arguments and results as :func:`avatar.render.rasterization`.

    Works in the dtype of its inputs (float64 for gradcheck). Differentiable w.r.t. every
    floating input by autograd, cameras included.
    """
    C = viewmats.shape[0]
    proj = project(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d=eps2d,
                   near_plane=near_plane, far_plane=far_plane)
    colors = colors.expand(C, *colors.shape[-2:])
    if backgrounds is None:
        backgrounds = torch.zeros(C, colors.shape[-1], dtype=colors.dtype)
    images, alphas, depths = zip(*(
        composite_camera(proj.means2d[c], proj.conics[c], proj.depths[c], opacities, colors[c],
                         backgrounds[c], proj.radii[c] > 0, width, height)
        for c in range(C)))
    meta = {"depths": torch.stack(depths), "means2d": proj.means2d, "radii": proj.radii,
            "depths_gauss": proj.depths, "conics": proj.conics, "extents": proj.extents}
    return torch.stack(images), torch.stack(alphas), meta
