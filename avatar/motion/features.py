"""Speaker-normalised audio features: the predictor's input, one row per video frame.

Another voice must land where the subject's voice landed in training, so every
feature is measured against the speaker's own levels, taken from the clip
itself (whole-clip mode) or from what has been heard so far (streaming):

- log-mel at the high rate (``r`` rows per frame, 4 at 25 fps / 100 Hz), minus
  the speaker's mean log-mel per band over speech frames, divided by its
  standard deviation over all bands and speech frames (a spectral tilt, a
  microphone or a louder voice shifts the mean, not the pattern);
- energy at the high rate, dB relative to the speaker's speech level (median
  frame energy over speech), divided by 10;
- pitch at the high rate in semitones around the speaker's median F0 over
  voiced frames, divided by 12, 0 where unvoiced, plus a voiced flag;
- voice activity of the frame.

Phone posteriors are *not* an input: on cnn2 they added nothing measurable to
mouth correlation on held-out frames (see docs/benchmarks.md, "Audio to
motion") while costing two thirds of the feature time and a decoder that
cannot stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SILENCE_DB = -100.0
"""Energy floor of preprocess's features, dBFS."""


@dataclass(frozen=True)
class SpeakerLevels:
    """A speaker's reference levels, measured on speech frames."""

    mel_mean: np.ndarray
    """(n_mels,) float32 mean log-mel per band."""
    mel_std: float
    """Standard deviation of log-mel about the band means, over bands and frames."""
    speech_db: float
    """Median frame energy over speech, dBFS."""
    f0_median_hz: float
    """Median F0 over voiced frames, Hz."""

    @classmethod
    def measure(cls, mel: np.ndarray, energy_db: np.ndarray, f0_hz: np.ndarray, vad: np.ndarray) -> "SpeakerLevels":
        """Levels from frame-rate arrays: (F, n_mels) log-mel, (F,) dBFS, (F,) Hz (0 unvoiced), (F,) 0/1."""
        speech = vad > 0.5
        if speech.sum() < 5:  # (nearly) silent: any levels do, the frames are silence anyway
            speech = np.ones_like(speech)
        voiced = f0_hz[speech & (f0_hz > 0)]
        mean = mel[speech].mean(0)
        return cls(mel_mean=mean.astype(np.float32),
                   mel_std=float(max((mel[speech] - mean).std(), 1e-3)),
                   speech_db=float(np.median(energy_db[speech])),
                   f0_median_hz=float(np.median(voiced)) if len(voiced) else 150.0)


def feature_dim(n_mels: int, rows_per_frame: int) -> int:
    """Width D of :func:`normalised_features` rows."""
    return rows_per_frame * (n_mels + 3) + 1


def normalised_features(feats, levels: SpeakerLevels | None = None) -> np.ndarray:
    """(F, D) float32 predictor input from a :class:`preprocess.subject_data.AudioFeatures`-like object.

    Args:
        feats: anything with ``mel``, ``mel_hi``, ``energy_db``, ``energy_hi_db``,
            ``f0_hz``, ``f0_hi_hz``, ``vad`` (the preprocess keys, at one frame rate).
        levels: the speaker's levels; None measures them on ``feats`` (whole-clip mode).
    """
    if levels is None:
        levels = SpeakerLevels.measure(feats.mel, feats.energy_db, feats.f0_hz, feats.vad)
    n = len(feats.mel)
    r = len(feats.mel_hi) // max(n, 1)
    mel = (feats.mel_hi[:n * r] - levels.mel_mean) / levels.mel_std
    energy = (np.maximum(feats.energy_hi_db[:n * r], SILENCE_DB) - levels.speech_db) / 10.0
    f0 = feats.f0_hi_hz[:n * r]
    voiced = f0 > 0
    semitones = np.where(voiced, 12.0 * np.log2(np.maximum(f0, 1.0) / levels.f0_median_hz) / 12.0, 0.0)
    rows = np.concatenate([mel, energy[:, None], semitones[:, None], voiced[:, None]], axis=1)
    return np.concatenate([rows.reshape(n, -1), feats.vad[:n, None]], axis=1).astype(np.float32)
