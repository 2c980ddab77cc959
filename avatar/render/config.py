"""Settings of the rendering layer that other stages' configs embed (light: no torch here).

``avatar/render/__init__.py`` loads the heavy modules lazily, so importing this
module for a config costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from avatar.core.config import Range
from avatar.core.errors import UserError

FEATURE_WIDTHS = (1, 2, 4, 8)  # what the compiled kernel is specialised for


@dataclass
class HashGridConfig:
    """Shape of the multi-resolution hash grid."""

    n_levels: Annotated[int, Range(1, 64)] = 16
    """Number of grid resolutions L, coarse to fine."""
    n_features_per_level: Annotated[int, Range(1, 8)] = 2
    """Features F stored per vertex; 1, 2, 4 or 8."""
    log2_hashmap_size: Annotated[int, Range(4, 30)] = 19
    """T: a level stores at most 2^T rows; finer levels share them through the hash."""
    base_resolution: Annotated[int, Range(1, 2 ** 19)] = 16
    """Cells per axis of the coarsest level."""
    max_resolution: Annotated[int, Range(1, 2 ** 19)] = 2048
    """Cells per axis of the finest level; sets per_level_scale when that is None."""
    per_level_scale: Annotated[float | None, Range(1.0, None)] = None
    """Resolution growth b per level; None derives (max/base)^(1/(L-1)) as Instant-NGP does."""

    def __post_init__(self) -> None:
        if self.n_levels < 1:
            raise UserError(f"hash grid n_levels is {self.n_levels}", "use 1 or more levels")
        if self.n_features_per_level not in FEATURE_WIDTHS:
            raise UserError(f"hash grid n_features_per_level is {self.n_features_per_level}",
                            f"use one of {FEATURE_WIDTHS}")
        if not 4 <= self.log2_hashmap_size <= 30:
            raise UserError(f"hash grid log2_hashmap_size is {self.log2_hashmap_size}",
                            "use a value between 4 and 30 (19 is the usual choice)")
        if self.base_resolution < 1 or self.max_resolution < self.base_resolution:
            raise UserError(f"hash grid resolutions {self.base_resolution}..{self.max_resolution}",
                            "use 1 <= base_resolution <= max_resolution")
        if self.per_level_scale is not None and self.per_level_scale < 1.0:
            raise UserError(f"hash grid per_level_scale is {self.per_level_scale}",
                            "use a growth factor >= 1, or None to derive it")

    def level_scale(self) -> float:
        """Resolution growth factor b between consecutive levels."""
        if self.per_level_scale is not None:
            return self.per_level_scale
        if self.n_levels == 1:
            return 1.0
        return math.exp(math.log(self.max_resolution / self.base_resolution) / (self.n_levels - 1))

    @property
    def output_dim(self) -> int:
        """Width L*F of the encoding."""
        return self.n_levels * self.n_features_per_level
