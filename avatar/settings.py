"""The project's top-level config: one section per stage of the system.

Presets in ``configs/*.yaml`` fill it; ``--set section.key=value`` overrides
any field; ``avatar config`` prints it with every field's docstring. Each
stage's section is a light dataclass module (no heavy imports), so loading a
config is fast. Sections are added here as their stages land (fit, motion,
render, viewer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from avatar.fit.config import FitConfig
from avatar.motion.config import MotionConfig
from avatar.talk.config import RenderConfig
from avatar.view.config import ViewConfig
from preprocess.config import PreprocessConfig


@dataclass
class AvatarConfig:
    """Everything configurable, by stage."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    """Video -> subject folder (avatar preprocess)."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Subject folder -> fitted Gaussian avatar (avatar fit)."""
    motion: MotionConfig = field(default_factory=MotionConfig)
    """Speech -> per-frame expression, blinks and head pose (avatar motion)."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """Motion -> talking video file (avatar render)."""
    view: ViewConfig = field(default_factory=ViewConfig)
    """The live viewer and its streaming engine (avatar view, avatar bench stream)."""


def load_config(preset: str = "default", overrides: list[str] | None = None) -> AvatarConfig:
    """Preset name or YAML path, plus ``--set`` overrides -> validated AvatarConfig."""
    from avatar.core import config as config_io
    return config_io.load(AvatarConfig, preset, overrides)
