"""Settings of the avatar model (light: no heavy imports, like every stage's config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from avatar.core.config import Range


@dataclass
class InitConfig:
    """How the Gaussians are first placed and coloured from a subject folder."""

    per_triangle: Annotated[int, Range(1, 64)] = 4
    """Face Gaussians per mesh triangle (852 triangles)."""
    head_gaussians: Annotated[int, Range(0, 1_000_000)] = 12_000
    """Head-rigid Gaussians (hair, ears, back of the head), from head-label pixels outside the face mesh."""
    mouth_gaussians: Annotated[int, Range(0, 1_000_000)] = 2_000
    """Mouth-interior Gaussians (teeth, tongue), from mouth-label pixels of the most open-mouthed frames."""
    mouth_depth_m: Annotated[float, Range(0.0, 0.05)] = 0.008
    """The mouth interior starts this far behind the inner lips, metres."""
    torso_gaussians: Annotated[int, Range(0, 1_000_000)] = 6_000
    """Camera-frame Gaussians for neck and torso, from torso-label pixels."""
    color_frames: Annotated[int, Range(1, 200)] = 8
    """Training frames, spread over the clip, whose pixels give the first colours."""
    opacity: Annotated[float, Range(0.01, 0.99)] = 0.9
    """Opacity every Gaussian starts with."""
    skull_margin: Annotated[float, Range(1.0, 3.0)] = 1.25
    """The skull ellipsoid that carries hair and ears, as a multiple of the face mesh's extent."""
    torso_depth_m: Annotated[float, Range(0.0, 1.0)] = 0.04
    """Torso Gaussians start this far behind the head's centre, metres."""
    seed: Annotated[int, Range(0, None)] = 0
    """Random seed of the sampling (the same seed gives the same model)."""
