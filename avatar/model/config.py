"""Settings of the avatar model (light: no heavy imports, like every stage's config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from avatar.core.config import Range
from avatar.render.config import HashGridConfig


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


def _face_grid() -> HashGridConfig:
    # a face is ~0.2 m: 8 levels from 8 to 256 cells (1 mm at the finest), 2^14 rows a level, so the
    # table (about 100k rows) costs little to step with Adam; the full-scene default has 6.1 M rows
    return HashGridConfig(n_levels=8, n_features_per_level=2, log2_hashmap_size=14, base_resolution=8,
                          max_resolution=256)


@dataclass
class DeformConfig:
    """The residual deformation field of the face Gaussians (hash grid + expression -> MLP -> offsets)."""

    enabled: bool = False
    """Use it at all (off: the tracked mesh alone moves the face)."""
    grid: HashGridConfig = field(default_factory=_face_grid)
    """Hash grid over the neutral face's bounding box."""
    hidden: Annotated[int, Range(4, 1024)] = 64
    """Width of the MLP's two hidden layers."""
