"""The project's top-level config: one section per part of the system.

Presets in ``configs/*.yaml`` fill it; ``--set section.key=value`` overrides
any field; ``avatar config`` prints it with every field's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from preprocess.config import PreprocessConfig


@dataclass
class RenderConfig:
    """Which rasteriser runs the Gaussians."""

    backend: Literal["auto", "cpu", "cuda", "torch"] = "auto"
    """auto: CUDA (gsplat) when a GPU is present, else our CPU kernels; torch: slow reference."""
    tile_size: int = 16
    """Side of the square screen tiles the rasteriser bins Gaussians into, pixels."""

    def __post_init__(self):
        if self.tile_size not in (8, 16, 32):
            raise ValueError(f"tile_size must be 8, 16 or 32, got {self.tile_size}")


@dataclass
class AvatarConfig:
    """Everything configurable, by stage."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    """Video -> subject folder (avatar preprocess)."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """Rasteriser backend."""


def load_config(preset: str = "default", overrides: list[str] | None = None) -> AvatarConfig:
    """Preset name or YAML path, plus ``--set`` overrides -> validated AvatarConfig."""
    from avatar import config as config_io
    return config_io.load(AvatarConfig, preset, overrides)
