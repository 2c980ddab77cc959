"""Settings of the whole preprocessing pipeline: one section per stage.

Each section's dataclass lives beside the stage's code; this file only
gathers them, plus the few settings that belong to the pipeline itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from preprocess.audio_features import AudioFeatureConfig
from preprocess.background import BackgroundConfig
from preprocess.decode import DecodeConfig
from preprocess.landmarks import LandmarkConfig
from preprocess.segmentation import SegmentationConfig
from preprocess.tracking import TrackingConfig


@dataclass
class PreprocessConfig:
    """Video -> subject folder."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    """Decoding, frame rate, head crop and working size."""
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    """MediaPipe FaceMesh landmark detection."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Face model, focal length, stabilised head pose and expressions."""
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    """Per-frame labels: background, head, neck/torso, mouth interior, eyes."""
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    """Static background plate."""
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    """Audio features (mel, pitch, energy, voice activity, phones)."""
    val_fraction: float = 0.1
    """Share of the clip, taken from its end, held out for validation."""
    jpeg_quality: int = 95
    """JPEG quality of the stored working frames (1-100)."""
    min_usable_fraction: float = 0.5
    """Fail when fewer than this share of frames show exactly one face."""
    min_usable_frames: int = 50
    """Fail when fewer than this many frames show exactly one face."""

    def __post_init__(self):
        if not 0.0 <= self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in [0, 0.5), got {self.val_fraction}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if not 0.0 < self.min_usable_fraction <= 1.0:
            raise ValueError(f"min_usable_fraction must be in (0, 1], got {self.min_usable_fraction}")
