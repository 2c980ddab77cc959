"""Settings of audio-to-motion (light: no heavy imports, like every stage's config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from avatar.core.config import Range

POSE_MODES = ("replay", "audio", "still")
"""Head pose sources: the training video's poses looped, generated from the speech, or held still."""


@dataclass
class PredictorConfig:
    """The audio-to-expression network and how it is trained on the subject."""

    width: Annotated[int, Range(8, 1024)] = 128
    """Channels of the temporal convolutions."""
    dropout: Annotated[float, Range(0.0, 0.9)] = 0.1
    """Dropout after every layer while training."""
    steps: Annotated[int, Range(0, 1_000_000)] = 400
    """Training steps (cnn2: 400 predict held-out speech as well as 800 and 1600, in half the time)."""
    batch: Annotated[int, Range(1, 4096)] = 16
    """Windows per step."""
    window: Annotated[int, Range(8, 4096)] = 64
    """Frames per training window (plus the network's context and look-ahead)."""
    lr: Annotated[float, Range(0.0, 1.0, lo_open=True)] = 2e-3
    """Peak learning rate (one-cycle schedule)."""
    weight_decay: Annotated[float, Range(0.0, 10.0)] = 1e-2
    """AdamW weight decay."""
    opening_weight: Annotated[float, Range(0.0, 100.0)] = 1.0
    """Extra loss on the inner-lip opening, as a multiple of the vertex error (0 = vertex error only; cnn2, 3 folds: held-out opening correlation 0.574 -> 0.589)."""
    velocity_weight: Annotated[float, Range(0.0, 100.0)] = 1.0
    """Weight of the frame-to-frame change error against the per-frame error."""
    aug_vtlp: Annotated[float, Range(0.0, 0.5)] = 0.12
    """Vocal tract length warp of the mel axis: factor drawn from 1 +- this."""
    aug_tilt: Annotated[float, Range(0.0, 10.0)] = 0.3
    """Std-dev of a random spectral tilt, in normalised log-mel units from the lowest to the highest band."""
    aug_noise: Annotated[float, Range(0.0, 10.0)] = 0.1
    """Std-dev of noise added to the normalised log-mel."""
    aug_level_db: Annotated[float, Range(0.0, 60.0)] = 3.0
    """Std-dev of a random level offset, dB."""
    aug_pitch_st: Annotated[float, Range(0.0, 24.0)] = 1.0
    """Std-dev of a random pitch offset, semitones."""
    aug_rate: Annotated[float, Range(0.0, 0.5)] = 0.15
    """Speaking-rate change: each window's features and targets resampled in time by a factor from 1 +- this (0 = off)."""
    aug_band_mask: Annotated[int, Range(0, 256)] = 0
    """Most adjacent mel bands set to zero per window (SpecAugment's frequency mask; 0 = off)."""
    aug_time_mask: Annotated[int, Range(0, 1024)] = 0
    """Most consecutive frames whose mel is set to zero per window (SpecAugment's time mask; 0 = off)."""
    linear_blend: Annotated[float, Range(0.0, 1.0)] = 0.0
    """Weight of the linear part (ridge regression on the 9 frames around each) in the output; 0 = the net alone (measured as good on rendered lips, docs/benchmarks.md)."""
    linear_ridge: Annotated[float, Range(0.0, 1e6)] = 2.0
    """The linear part's ridge penalty per training frame (on standardised features)."""


PRIOR_USES = ("none", "finetune", "only")
"""How a subject uses the shipped multispeaker prior."""


@dataclass
class MotionConfig:
    """Audio -> per-frame expression, blinks and head pose (avatar motion)."""

    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    """The audio-to-expression network."""
    prior: str = "none"
    """Multispeaker prior (from `make pretrain`): none (the subject alone; measured better), finetune (start from it), only."""
    sync: bool = True
    """Measure how far the video's sound is shifted against its mouth and learn the mouth in sync with the sound (avatar.motion.sync), so new speech is not spoken with the recording's offset."""
    seed: Annotated[int, Range(0, 2**31 - 1)] = 0
    """Seed of training and of the generated blinks and head motion."""

    def __post_init__(self):
        if self.prior not in PRIOR_USES:
            raise ValueError(f"motion.prior={self.prior!r} is not one of {', '.join(PRIOR_USES)}")
