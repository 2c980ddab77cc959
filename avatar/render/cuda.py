"""CUDA backend: gsplat's rasteriser behind our :func:`avatar.render.rasterization` interface.

Imported lazily, only for CUDA tensors; gsplat (1.5.3, the ``cuda`` extra) compiles its own
kernels on first use. Its semantics match ours (:mod:`avatar.render.reference`) with one
exception: gsplat clamps alpha at 0.999 where we clamp at 0.99, which only matters for
Gaussians with opacity above 0.99.
"""

from __future__ import annotations

from torch import Tensor

from avatar.core.errors import UserError


def rasterization_cuda(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                       colors: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
                       backgrounds: Tensor | None, near_plane: float, far_plane: float,
                       eps2d: float, tile_size: int) -> tuple[Tensor, Tensor, dict]:
    """gsplat rasterisation; arguments and results as :func:`avatar.render.rasterization`."""
    try:
        from gsplat import rasterization as gsplat_rasterization
    except ImportError as err:
        raise UserError(f"the cuda renderer needs gsplat ({err})",
                        "pip install 'talking-avatar[cuda]' on a machine with CUDA") from None
    # "RGB+D" appends the alpha-weighted depth (not divided by alpha) as a last channel.
    renders, alphas, info = gsplat_rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, packed=False,
        tile_size=tile_size, backgrounds=None, render_mode="RGB+D",
        rasterize_mode="classic")
    radii = info["radii"]
    if radii.dim() == 3:  # gsplat >= 1.5 gives per-axis radii
        radii = radii.amax(dim=-1)
    meta = {"depths": renders[..., -1:], "means2d": info["means2d"], "radii": radii.int(),
            "depths_gauss": info["depths"], "conics": info["conics"]}
    colors_out = renders[..., :-1]
    if backgrounds is not None:  # composited here so the depth channel never sees it
        colors_out = colors_out + (1.0 - alphas) * backgrounds[:, None, None, :]
    return colors_out, alphas, meta
