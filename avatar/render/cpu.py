"""CPU backend: autograd functions over the compiled rasteriser (``cuda_ext/csrc/rasterize*``).

Two functions, as in gsplat: :class:`_Projection` (3D Gaussians -> 2D conics, C++ forward
and backward) and :class:`_Compositing` (tile binning + front-to-back blending). Splitting
them keeps ``means2d`` a real node of the graph, so ``meta["means2d"].retain_grad()`` gives
the per-Gaussian 2D positional gradients used for densification.

The kernel is compiled on first use (about a minute) and cached; see :mod:`cuda_ext`.
All tensors are float32 on the CPU; the thread count is ``torch.get_num_threads()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor

import cuda_ext


def kernel() -> ModuleType:
    """The compiled rasteriser module (built and cached on first call)."""
    return cuda_ext.load("rasterize")


@dataclass(frozen=True)
class _Settings:
    width: int
    height: int
    eps2d: float
    near_plane: float
    far_plane: float
    threads: int


class _Projection(torch.autograd.Function):
    """(means, quats, scales, opacities, viewmats, Ks) -> means2d, conics, depths, extents, radii."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, s: _Settings):
        means2d, conics, depths, extents, radii = kernel().project_forward(
            means, quats, scales, opacities, viewmats, Ks, s.width, s.height, s.eps2d,
            s.near_plane, s.far_plane, s.threads)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, radii)
        ctx.settings = s
        ctx.mark_non_differentiable(extents, radii)
        return means2d, conics, depths, extents, radii

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, _v_extents, _v_radii):
        means, quats, scales, viewmats, Ks, radii = ctx.saved_tensors
        s = ctx.settings
        v_means, v_quats, v_scales = kernel().project_backward(
            means, quats, scales, viewmats, Ks, radii, v_means2d.contiguous(), v_conics.contiguous(),
            v_depths.contiguous(), s.width, s.height, s.eps2d, s.near_plane, s.far_plane, s.threads)
        return v_means, v_quats, v_scales, None, None, None, None


class _Compositing(torch.autograd.Function):
    """(means2d, conics, depths, opacities, colors, backgrounds) -> colours, alphas, depths."""

    @staticmethod
    def forward(ctx, means2d, conics, depths, opacities, colors, backgrounds, extents, s: _Settings):
        (images, alphas, depth_images, transmittance, last, tile_offsets, tile_gauss, slot_isect,
         cg_offsets) = kernel().rasterize_forward(means2d, conics, depths, extents, opacities, colors,
                                                  backgrounds, s.width, s.height, s.threads)
        ctx.save_for_backward(means2d, conics, depths, extents, opacities, colors, backgrounds,
                              transmittance, last, tile_offsets, tile_gauss, slot_isect, cg_offsets)
        ctx.settings = s
        return images, alphas, depth_images

    @staticmethod
    def backward(ctx, g_images, g_alphas, g_depths):
        s = ctx.settings
        grads = kernel().rasterize_backward(*ctx.saved_tensors, g_images.contiguous(),
                                            g_alphas.contiguous(), g_depths.contiguous(),
                                            s.width, s.height, s.threads)
        v_means2d, v_conics, v_depths, v_opacities, v_colors, v_backgrounds = grads
        return v_means2d, v_conics, v_depths, v_opacities, v_colors, v_backgrounds, None, None


def rasterization_cpu(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                      colors: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
                      backgrounds: Tensor | None, near_plane: float, far_plane: float,
                      eps2d: float) -> tuple[Tensor, Tensor, dict]:
    """Compiled CPU rasterisation; arguments and results as :func:`avatar.render.rasterization`.

    Inputs must already be validated float32 CPU tensors. ``colors`` may be (N, D), shared
    by all cameras, or (C, N, D). Tiles are always 16 x 16 pixels (one 16-lane vector per
    tile row); the image does not depend on the tile size.
    """
    s = _Settings(width=width, height=height, eps2d=float(eps2d), near_plane=float(near_plane),
                  far_plane=float(far_plane), threads=torch.get_num_threads())
    C, D = viewmats.shape[0], colors.shape[-1]
    means, quats, scales, opacities, colors, viewmats, Ks = (
        t.contiguous() for t in (means, quats, scales, opacities, colors, viewmats, Ks))
    if backgrounds is None:
        backgrounds = torch.zeros(C, D, dtype=torch.float32)
    backgrounds = backgrounds.contiguous()
    means2d, conics, depths, extents, radii = _Projection.apply(means, quats, scales, opacities,
                                                                viewmats, Ks, s)
    images, alphas, depth_images = _Compositing.apply(means2d, conics, depths, opacities, colors,
                                                      backgrounds, extents, s)
    meta = {"depths": depth_images, "means2d": means2d, "radii": radii, "depths_gauss": depths,
            "conics": conics, "extents": extents}
    return images, alphas, meta


def picture_cpu(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                viewmats: Tensor, Ks: Tensor, width: int, height: int, plate: Tensor, *,
                near_plane: float, far_plane: float, eps2d: float) -> tuple[Tensor, Tensor]:
    """The compiled forward for looking only; arguments and results as :func:`avatar.render.render_picture`.

    Projection and compositing run straight through the kernel (no autograd
    graph, nothing kept for a backward), and the colours are composited over
    ``plate`` and rounded to bytes inside it, where they are computed.
    """
    threads = torch.get_num_threads()
    means, quats, scales, opacities, colors, viewmats, Ks, plate = (
        t.contiguous() for t in (means, quats, scales, opacities, colors, viewmats, Ks, plate))
    k = kernel()
    means2d, conics, depths, extents, _radii = k.project_forward(
        means, quats, scales, opacities, viewmats, Ks, width, height, float(eps2d), float(near_plane),
        float(far_plane), threads)
    rgb, alphas = k.render_picture(means2d, conics, depths, extents, opacities, colors, plate, width, height,
                                   threads)
    return rgb, alphas
