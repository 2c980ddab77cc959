"""The fit's loss for one frame: weighted L1 + D-SSIM on a head patch + silhouette + scale penalty.

- L1 on the full frame, weighted up on the lips, mouth interior and eyes (where
  a talking head is judged) by :class:`avatar.fit.data.TrainingFrame`.
- D-SSIM (``pytorch-msssim``) on a random square patch inside the head-and-neck
  box, a new patch every step: full-frame SSIM costs 170 ms forward+backward
  at 512x512 on 2 cores, a 128 px patch 11 ms, and over many steps the patches
  cover the head, where structure matters.
- Silhouette: mean |alpha - person mask|, so the avatar neither leaks onto the
  background plate nor leaves holes the plate shows through.
- Scale: mean squared excess of the standard deviations over ``max_scale_m``.
- Deformation: mean squared output of the residual deformation field, so the
  tracked mesh stays the explanation of the face's motion.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from pytorch_msssim import ssim
from torch import Tensor

from avatar.fit.config import LossConfig


class LossTerms(NamedTuple):
    """The terms of one step's loss (scalars) and their weighted sum, ``total``; ``mse`` is for display."""

    total: Tensor
    l1: Tensor
    dssim: Tensor
    silhouette: Tensor
    scale: Tensor
    mse: Tensor


def patch_origin(box: tuple[int, int, int, int], patch: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left (x, y) of a ``patch`` px square with a random centre inside ``box``, kept inside the image."""
    x0, y0, x1, y1 = box
    cx, cy = rng.integers(x0, max(x0 + 1, x1)), rng.integers(y0, max(y0 + 1, y1))
    half = patch // 2
    return int(np.clip(cx - half, 0, size - patch)), int(np.clip(cy - half, 0, size - patch))


def frame_loss(rgb: Tensor, alpha: Tensor, real: Tensor, person: Tensor, weight: Tensor, scales: Tensor,
               patch_xy: tuple[int, int], cfg: LossConfig, offsets: Tensor | None = None) -> LossTerms:
    """The loss of one rendered frame.

    Args:
        rgb, real: (S, S, 3) float32 rendered and real RGB in [0, 1].
        alpha: (S, S, 1) rendered opacity; person: (S, S, 1) 1 on the person's labels.
        weight: (S, S, 1) per-pixel L1 weight (mean about 1).
        scales: (N, 3) the Gaussians' standard deviations, metres.
        patch_xy: top-left of the D-SSIM patch (see :func:`patch_origin`).
        offsets: (N, K) the deformation field's raw output for this frame, or None.
    """
    l1 = ((rgb - real).abs() * weight).mean() / weight.mean()
    p = min(cfg.ssim_patch_px, rgb.shape[0])
    x, y = patch_xy
    crop = (slice(y, y + p), slice(x, x + p))
    if cfg.ssim > 0:
        # pytorch-msssim's 11-tap window needs at least 11 px; the patch is at least 16
        dssim = 1.0 - ssim(rgb[crop].permute(2, 0, 1)[None], real[crop].permute(2, 0, 1)[None], data_range=1.0)
    else:
        dssim = rgb.new_zeros(())
    silhouette = (alpha - person).abs().mean()
    scale = (scales - cfg.max_scale_m).clamp_min(0).square().sum(-1).mean() / cfg.max_scale_m ** 2 \
        if len(scales) else rgb.new_zeros(())
    deform = offsets.square().mean() if offsets is not None and offsets.numel() else rgb.new_zeros(())
    total = (1 - cfg.ssim) * l1 + cfg.ssim * dssim + cfg.silhouette * silhouette + cfg.scale * scale \
        + cfg.deform * deform
    mse = (rgb.detach() - real).square().mean()
    return LossTerms(total, l1.detach(), dssim.detach(), silhouette.detach(), scale.detach(), mse)
