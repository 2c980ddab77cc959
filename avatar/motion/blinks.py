"""Blinks at the subject's own rate and shape, from the tracked eye openness (never from audio)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

DIP = 0.6
"""A blink: mean eye openness below this fraction of the subject's open level."""
HALF_WIDTH = 5
"""Frames either side of a blink's deepest frame in its profile (at 25 fps: 200 ms)."""
DEFAULT_PROFILE = np.array([0.0, 0.05, 0.2, 0.55, 0.9, 1.0, 0.85, 0.55, 0.3, 0.12, 0.0], np.float32)
"""Closure profile when the clip shows too few blinks: fast closing, slower opening."""
DEFAULT_INTERVAL_S = 4.0
"""Mean time between blinks when the clip shows too few (15 a minute, typical in conversation)."""
MIN_INTERVAL_S = 0.6
"""Generated blinks are never closer than this."""


@dataclass(frozen=True)
class BlinkModel:
    """The subject's blinks: when (intervals), how (closure profile) and how deep."""

    open_level: np.ndarray
    """(2,) float32 median eye openness (lid gap / eye width), subject's left eye first."""
    depth: np.ndarray
    """(2,) float32 openness at the deepest frame of a blink, as a fraction of ``open_level``."""
    profile: np.ndarray
    """(2 * HALF_WIDTH + 1,) float32 closure over a blink, 0 open .. 1 deepest, one frame per sample."""
    intervals_s: np.ndarray
    """(B,) float32 observed times between blinks, seconds (generation resamples them)."""
    fps: float

    @property
    def rate_per_min(self) -> float:
        return 60.0 / float(np.mean(self.intervals_s))

    @classmethod
    def fit(cls, eye_open: np.ndarray, fps: float) -> "BlinkModel":
        """From (F, 2) tracked eye openness at ``fps``."""
        open_level = np.median(eye_open, axis=0).astype(np.float32)
        rel = eye_open / np.maximum(open_level, 1e-6)
        m = rel.mean(1)
        peaks, _ = signal.find_peaks(-m, height=-DIP, distance=max(2, int(0.25 * fps)))
        inner = peaks[(peaks >= HALF_WIDTH) & (peaks < len(m) - HALF_WIDTH)]
        if len(inner) >= 2:
            windows = np.stack([m[p - HALF_WIDTH:p + HALF_WIDTH + 1] for p in inner])
            closure = (1.0 - windows) / np.maximum(1.0 - windows[:, HALF_WIDTH:HALF_WIDTH + 1], 1e-6)
            profile = np.clip(np.median(closure, axis=0), 0.0, 1.0)
            profile = profile - min(profile[0], profile[-1])
            profile = np.clip(profile / max(profile[HALF_WIDTH], 1e-6), 0.0, 1.0)
            depth = np.median(rel[inner], axis=0)
        else:
            profile, depth = DEFAULT_PROFILE, np.array([0.15, 0.15])
        intervals = np.diff(peaks) / fps if len(peaks) >= 3 else np.array([DEFAULT_INTERVAL_S])
        return cls(open_level, np.clip(depth, 0.0, 0.9).astype(np.float32), profile.astype(np.float32),
                   intervals.astype(np.float32), float(fps))

    def generate(self, n_frames: int, rate: float = 1.0, seed: int = 0) -> np.ndarray:
        """(n_frames, 2) float32 eye openness with blinks at ``rate`` x the subject's rate (0: none)."""
        return BlinkTrack(self, rate, seed).take(n_frames)

    def arrays(self) -> dict:
        return {"open_level": self.open_level, "depth": self.depth, "profile": self.profile,
                "intervals_s": self.intervals_s, "fps": self.fps}


class BlinkTrack:
    """A blink track taken frame by frame: the same frames whether taken all at once or in pieces (streaming)."""

    def __init__(self, model: BlinkModel, rate: float = 1.0, seed: int = 0):
        self.model, self.rate = model, rate
        self._rng = np.random.default_rng(seed)
        self._frame = 0  # first frame not yet taken
        self._pending = np.zeros(0, np.float32)  # closure of frames from self._frame on, as far as scheduled
        self._next_s = self._rng.uniform(0.3, 1.0) * float(np.mean(model.intervals_s)) / rate if rate > 0 else np.inf

    def set_rate(self, rate: float) -> None:
        """Blink at ``rate`` times the subject's rate from now on: the wait for the next blink is rescaled."""
        if rate == self.rate:
            return
        now_s = self._frame / self.model.fps
        if rate <= 0:
            self._next_s = np.inf
        elif not np.isfinite(self._next_s):
            self._next_s = now_s + self._rng.uniform(0.3, 1.0) * float(np.mean(self.model.intervals_s)) / rate
        else:
            self._next_s = now_s + max(self._next_s - now_s, 0.0) * self.rate / rate
        self.rate = rate

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` frames' (n, 2) float32 eye openness."""
        m = self.model
        while self._next_s * m.fps - HALF_WIDTH < self._frame + n:
            self._schedule(int(round(self._next_s * m.fps)))
            gap = self._rng.choice(m.intervals_s) * self._rng.uniform(0.8, 1.25) / self.rate
            self._next_s += max(gap, MIN_INTERVAL_S)
        if len(self._pending) < n:
            self._pending = np.pad(self._pending, (0, n - len(self._pending)))
        closure, self._pending = self._pending[:n], self._pending[n:]
        self._frame += n
        return (m.open_level[None] * (1.0 - closure[:, None] * (1.0 - m.depth[None]))).astype(np.float32)

    def _schedule(self, centre: int) -> None:
        lo, hi = centre - HALF_WIDTH - self._frame, centre + HALF_WIDTH + 1 - self._frame
        if hi > len(self._pending):
            self._pending = np.pad(self._pending, (0, hi - len(self._pending)))
        prof = self.model.profile[max(0, -lo):]
        lo = max(0, lo)
        np.maximum(self._pending[lo:hi], prof, out=self._pending[lo:hi])
