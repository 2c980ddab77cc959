"""Settings of the fit (light: no heavy imports, like every stage's config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from avatar.core.config import Range
from avatar.model.config import InitConfig


@dataclass
class LearningRates:
    """Adam step sizes per parameter kind."""

    face_means: Annotated[float, Range(0.0, 1.0)] = 1e-3
    """Face Gaussian centres, in triangle sizes per step."""
    rigid_means: Annotated[float, Range(0.0, 1.0)] = 5e-5
    """Head and torso Gaussian centres, metres per step."""
    quats: Annotated[float, Range(0.0, 1.0)] = 1e-3
    """Rotations (raw quaternion components)."""
    log_scales: Annotated[float, Range(0.0, 1.0)] = 5e-3
    """Log-scales."""
    opacity_logits: Annotated[float, Range(0.0, 10.0)] = 5e-2
    """Opacity logits."""
    color_logits: Annotated[float, Range(0.0, 10.0)] = 2.5e-2
    """Colour logits."""


@dataclass
class FitConfig:
    """How an avatar is trained."""

    init: InitConfig = field(default_factory=InitConfig)
    """First placement and colours of the Gaussians."""
    lr: LearningRates = field(default_factory=LearningRates)
    """Adam step sizes."""
    iterations: Annotated[int, Range(0, 10_000_000)] = 3000
    """Training steps (one training frame each)."""
    checkpoint_every: Annotated[int, Range(1, 10_000_000)] = 200
    """Steps between checkpoints (one is always written at the end)."""
    seed: Annotated[int, Range(0, None)] = 0
    """Seed of the frame order (the same seed and settings give the same avatar, to the bit)."""
