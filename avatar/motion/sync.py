"""How far a recording's sound is shifted against its picture, from the speech and the tracked mouth.

Many talking-head videos are not in sync: re-encoding, a separate microphone or
an editor moves the sound by a few frames. Measured on the clips of
``../shared/data`` (cnn2, may_5s, trump_10s and the 19 of ``multispeaker/``):
most peak at 0 or 1 frame, but may_5s, Kristi Noem, AOC and the Obama clips
peak 2-4 frames (80-160 ms) late. A predictor trained on such a video learns
the shift, and then speaks every new sound out of sync in the same way; a
prior trained over many such clips learns a blur of them.

So the offset is measured before the mouth is learnt: a speaker-independent
guess of the mouth opening from the recognised phones (a fixed table: open
vowels wide, bilabials shut; no training, so no person in it) is correlated
with the tracked opening at every shift in a window, and the best shift wins
where the correlation is clear. The tracked mouth at frame ``t`` goes with
the sound at ``t + offset``.

Lips lead their sound a little in natural speech (they shape a vowel before it
sounds), and 0 or 1 frame is what most clips measure; only what lies outside
0-:data:`NATURAL_LEAD_S` is corrected (:meth:`SyncOffset.correction`), so a
clip in sync keeps its own timing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from preprocess.audio_features import PHONES

_OPENING = {
    "SIL": 0.0, "NOISE": 0.1,
    "AA": 1.0, "AE": 0.9, "AH": 0.7, "AO": 0.8, "AW": 0.9, "AY": 0.9, "EH": 0.6, "ER": 0.4, "EY": 0.55,
    "IH": 0.4, "IY": 0.3, "OW": 0.6, "OY": 0.7, "UH": 0.4, "UW": 0.3,
    "B": 0.0, "M": 0.0, "P": 0.0, "F": 0.1, "V": 0.1,
    "CH": 0.25, "JH": 0.25, "SH": 0.2, "ZH": 0.2, "S": 0.15, "Z": 0.15, "TH": 0.2, "DH": 0.2,
    "D": 0.3, "T": 0.3, "N": 0.3, "L": 0.35, "R": 0.35, "G": 0.35, "K": 0.35, "NG": 0.35, "HH": 0.5,
    "W": 0.25, "Y": 0.3,
}
"""Rough jaw opening of each phone, 0 (lips shut) to 1 (open vowel): phonetics, not any speaker's data."""
PHONE_OPENING = np.array([_OPENING[p] for p in PHONES], np.float32)
"""(P,) the table in :data:`preprocess.audio_features.PHONES` order."""

MAX_OFFSET_S = 0.32
"""Shifts searched: up to this far either way (8 frames at 25 fps)."""
MIN_CORRELATION = 0.2
"""Below this peak correlation the recording gives no clear answer and the offset is taken as 0."""
NATURAL_LEAD_S = 0.04
"""Lips ahead of their sound by up to this much count as in sync (one frame at 25 fps)."""
MIN_FRAMES = 50
"""Fewer frames than this (2 s at 25 fps) are not enough to measure an offset."""


@dataclass(frozen=True)
class SyncOffset:
    """A recording's audio-video offset."""

    frames: int
    """The tracked mouth at frame t goes with the sound at frame t + frames (positive: the sound is late)."""
    correlation: float
    """Phone-guessed against tracked mouth opening at that shift (nan when not measured)."""
    at_zero: float
    """The same with no shift."""

    def correction(self, fps: float) -> int:
        """Frames to move the sound by to bring it into sync: the part of the offset outside 0..natural lead."""
        lead = int(round(NATURAL_LEAD_S * fps))
        return self.frames - min(max(self.frames, 0), lead)

    def to_json(self, fps: float) -> dict:
        return {"frames": self.frames, "ms": round(1000.0 * self.frames / fps, 1),
                "correction_frames": self.correction(fps),
                "correlation": round(self.correlation, 3), "at_zero": round(self.at_zero, 3)}


NO_OFFSET = SyncOffset(0, float("nan"), float("nan"))


def phone_mouth_opening(phone_post: np.ndarray) -> np.ndarray:
    """(F,) float32 mouth opening guessed from (F, P) phone posteriors, 0-1."""
    return (phone_post @ PHONE_OPENING).astype(np.float32)


def measure_offset(phone_post: np.ndarray, mouth_open: np.ndarray, fps: float,
                   usable: np.ndarray | None = None) -> SyncOffset:
    """The shift of the sound against the tracked mouth (see the module docstring).

    phone_post: (F, P) phone posteriors per video frame.
    mouth_open: (F,) tracked mouth opening (any monotone measure).
    usable:     (F,) bool frames to use (tracked ones); default all.
    """
    guess = phone_mouth_opening(phone_post).astype(np.float64)
    mouth = np.asarray(mouth_open, np.float64)
    ok = np.ones(len(mouth), bool) if usable is None else np.asarray(usable, bool)
    reach = max(1, int(round(MAX_OFFSET_S * fps)))
    if ok.sum() < max(MIN_FRAMES, 4 * reach):
        return NO_OFFSET
    corr = {lag: _shifted_corr(guess, mouth, ok, lag) for lag in range(-reach, reach + 1)}
    best = max(corr, key=lambda lag: corr[lag])
    zero = corr[0]
    if not np.isfinite(corr[best]) or corr[best] < MIN_CORRELATION:
        return SyncOffset(0, float(corr[best]), float(zero))
    return SyncOffset(int(best), float(corr[best]), float(zero))


def _shifted_corr(guess: np.ndarray, mouth: np.ndarray, ok: np.ndarray, lag: int) -> float:
    """Pearson correlation of guess[t + lag] with mouth[t] over frames where both exist and t is usable."""
    n = len(mouth)
    t = np.arange(max(0, -lag), min(n, n - lag))
    t = t[ok[t]]
    a, b = guess[t + lag], mouth[t]
    if len(t) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def shift_frames(x: np.ndarray, frames: int, fill: str = "edge") -> np.ndarray:
    """``y[t] = x[t + frames]`` along the first axis, the ends held (``fill="edge"``) or False/0 (``"zero"``)."""
    if frames == 0:
        return x.copy()
    n = len(x)
    idx = np.arange(n) + frames
    out = x[np.clip(idx, 0, n - 1)]  # a new array: indexing by a list copies
    if fill == "zero":
        out[(idx < 0) | (idx >= n)] = 0
    return out


def shift_features(feats, frames: int):
    """A subject's :class:`~preprocess.subject_data.AudioFeatures` with the sound moved ``frames`` earlier:
    every per-frame array by ``frames``, every high-rate array by ``frames`` x its rows per frame."""
    if frames == 0:
        return feats
    r = feats.rows_per_frame
    return replace(feats, **{name: shift_frames(value, frames * (r if len(value) != feats.n_frames else 1))
                             for name, value in feats.arrays().items()})
