"""Settings of the fit (light: no heavy imports, like every stage's config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from avatar.core.config import Range
from avatar.model.config import DeformConfig, InitConfig


@dataclass
class LearningRates:
    """Adam step sizes per parameter kind."""

    face_means: Annotated[float, Range(0.0, 1.0)] = 1e-3
    """Face Gaussian centres, in triangle sizes per step."""
    rigid_means: Annotated[float, Range(0.0, 1.0)] = 5e-5
    """Mouth, head and torso Gaussian centres, metres per step."""
    means_final: Annotated[float, Range(0.0, 1.0)] = 0.05
    """The centres' step sizes decay exponentially to this fraction of the above by the last iteration."""
    quats: Annotated[float, Range(0.0, 1.0)] = 1e-3
    """Rotations (raw quaternion components)."""
    log_scales: Annotated[float, Range(0.0, 1.0)] = 5e-3
    """Log-scales."""
    opacity_logits: Annotated[float, Range(0.0, 10.0)] = 5e-2
    """Opacity logits."""
    color_logits: Annotated[float, Range(0.0, 10.0)] = 2.5e-2
    """Colour logits."""
    follow_logits: Annotated[float, Range(0.0, 10.0)] = 1e-2
    """Logits of how much each torso Gaussian follows the head."""
    color_basis: Annotated[float, Range(0.0, 10.0)] = 1e-3
    """How each Gaussian's colour changes with the head's and the shoulders' pose (0: it does not)."""
    color_basis_face: Annotated[float, Range(0.0, 10.0)] = 0.0
    """The same for the face's and the mouth interior's Gaussians (0: only hair, ears, neck and torso shade;
    with 1e-3 the lips shaded with the pose instead of following the mouth, cnn2 `lmd` 1.48 -> 1.64)."""
    deform_grid: Annotated[float, Range(0.0, 10.0)] = 1e-2
    """The deformation field's hash-grid table."""
    deform_mlp: Annotated[float, Range(0.0, 10.0)] = 1e-3
    """The deformation field's MLP weights."""


@dataclass
class LossConfig:
    """What the fit minimises, per training frame (full frame, plus a random patch for SSIM)."""

    ssim: Annotated[float, Range(0.0, 1.0)] = 0.2
    """Weight of D-SSIM (1 - SSIM) against L1 (weight 1 - this), as in 3DGS."""
    ssim_patch_px: Annotated[int, Range(16, 4096)] = 128
    """Side of the square patch, inside the head and neck, where D-SSIM is computed each step (speed)."""
    mouth: Annotated[float, Range(0.0, 100.0)] = 4.0
    """Extra L1 weight on the lips and mouth interior (1 = twice the rest)."""
    eyes: Annotated[float, Range(0.0, 100.0)] = 2.0
    """Extra L1 weight on the eyes."""
    silhouette: Annotated[float, Range(0.0, 10.0)] = 0.1
    """Weight of |alpha - person mask| (keeps the avatar off the background and without holes)."""
    scale: Annotated[float, Range(0.0, 10.0)] = 1.0
    """Weight of the penalty on Gaussians wider than ``max_scale_m``."""
    max_scale_m: Annotated[float, Range(0.0, 1.0)] = 0.01
    """Standard deviations above this (metres) are penalised (no blobs across the face)."""
    deform: Annotated[float, Range(0.0, 100.0)] = 0.01
    """Weight of the mean squared offset of the deformation field (keeps it a residual)."""
    lip_edge: Annotated[float, Range(0.0, 1000.0)] = 0.0
    """Weight of the lips' Gaussians reaching across the inner-lip edge into the mouth opening
    (:mod:`avatar.model.lip_edge`; trump_10s, fast preset, 6000 steps: 1 raised `mouth_std_ratio`
    0.760 -> 0.864, `lmd` 1.09 -> 0.99; cnn2, default preset: 0.767 -> 0.733, `lmd` 1.52 -> 1.53, as other Gaussians reach
    into the mesh's gap instead: off, docs/benchmarks.md)."""


@dataclass
class DensifyConfig:
    """Where Gaussians are added and removed during the fit (3DGS-style, on the screen-space gradient)."""

    enabled: bool = True
    """Densify and prune at all."""
    start: Annotated[int, Range(0, None)] = 300
    """First step that densifies."""
    stop_fraction: Annotated[float, Range(0.0, 1.0)] = 0.6
    """No densification after this fraction of the iterations (the rest refines)."""
    every: Annotated[int, Range(1, None)] = 200
    """Steps between densifications."""
    grad_threshold: Annotated[float, Range(0.0, None)] = 0.0008
    """Mean screen-space gradient of a centre (per half image side) above which a Gaussian is densified."""
    split_scale_px: Annotated[float, Range(0.0, None)] = 3.0
    """Densified Gaussians wider than this (standard deviation, pixels) are split in two; narrower ones are cloned."""
    prune_opacity: Annotated[float, Range(0.0, 1.0)] = 0.01
    """Gaussians fainter than this are removed (a face triangle keeps at least one)."""
    max_gaussians: Annotated[int, Range(1, None)] = 50_000
    """Densification stops adding at this many Gaussians (bounds the render time)."""


@dataclass
class FitConfig:
    """How an avatar is trained."""

    init: InitConfig = field(default_factory=InitConfig)
    """First placement and colours of the Gaussians."""
    lr: LearningRates = field(default_factory=LearningRates)
    """Adam step sizes."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss terms and weights."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """Adding and removing Gaussians."""
    deform: DeformConfig = field(default_factory=DeformConfig)
    """The residual deformation field of the face (off by default: see docs/benchmarks.md)."""
    iterations: Annotated[int, Range(0, 10_000_000)] = 12_000
    """Training steps (one training frame each)."""
    minutes: Annotated[float, Range(0.0, None, lo_open=True)] = 40.0
    """Wall-clock budget of the training: it stops here with the model so far (``--minutes``)."""
    checkpoint_every: Annotated[int, Range(1, 10_000_000)] = 500
    """Steps between checkpoints (one is always written at the end)."""
    preview_every: Annotated[int, Range(1, 10_000_000)] = 1000
    """Steps between preview images of a few validation frames (fit/preview_*.png)."""
    seed: Annotated[int, Range(0, None)] = 0
    """Seed of the frame order and of densification (the same seed and settings give the same avatar)."""
