"""Render the avatar for one tracked frame: place the Gaussians, rasterise, composite over the plate."""

from __future__ import annotations

import torch
from torch import Tensor

from avatar.model.gaussians import AvatarGaussians
from avatar.render import rasterization


def render_frame(model: AvatarGaussians, verts: Tensor, viewmat: Tensor, K: Tensor, size: int,
                 background: Tensor | None = None, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """(S, S, 3) float32 RGB in [0, 1] and (S, S, 1) alpha of the avatar for one frame.

    Args:
        verts: (V, 3) float32 tracked head-frame mesh of the frame, metres.
        viewmat: (4, 4) float32 camera-from-head; K: (3, 3) float32 intrinsics, pixels.
        size: S, the square image side in pixels.
        background: (S, S, 3) float32 plate composited behind the avatar, or None (black).
    """
    means, quats, scales, opacities, colors = model.place(verts, viewmat)
    rgb, alpha, _ = rasterization(means, quats, scales, opacities, colors, viewmat[None], K[None],
                                  size, size, backend=backend)
    rgb, alpha = rgb[0], alpha[0]
    if background is not None:
        rgb = rgb + (1.0 - alpha) * background
    return rgb, alpha
