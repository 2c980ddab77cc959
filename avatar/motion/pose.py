"""Head pose for new speech: replayed, held still, or generated from prosody; always stabilised.

A pose is a camera-from-head (4, 4) matrix (:mod:`avatar.core.camera`). Motion
is handled as the deviation from the subject's mean pose: a rotation vector in
degrees and a translation in millimetres, (F, 6), which is what the modes
generate, the head-motion control scales and the stabiliser smooths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

AR_ORDER = 2
"""Order of the autoregressive model of each pose channel."""


@dataclass(frozen=True)
class MeanPose:
    """The subject's mean head pose: the origin of pose deviations."""

    rotation: np.ndarray
    """(3, 3) float64 mean camera-from-head rotation."""
    translation: np.ndarray
    """(3,) float64 mean camera-from-head translation, metres."""

    @classmethod
    def of(cls, viewmats: np.ndarray) -> "MeanPose":
        rot = Rotation.from_matrix(viewmats[:, :3, :3].astype(np.float64)).mean()
        return cls(rot.as_matrix(), viewmats[:, :3, 3].astype(np.float64).mean(0))

    def deviations(self, viewmats: np.ndarray) -> np.ndarray:
        """(F, 6) float64: rotation vector of R_mean^T R, degrees, then t - t_mean, millimetres."""
        rel = Rotation.from_matrix(self.rotation.T @ viewmats[:, :3, :3].astype(np.float64))
        return np.c_[np.degrees(rel.as_rotvec()), (viewmats[:, :3, 3] - self.translation) * 1000.0]

    def viewmats(self, deviations: np.ndarray) -> np.ndarray:
        """(F, 4, 4) float32 camera-from-head matrices from (F, 6) deviations (inverse of :meth:`deviations`)."""
        out = np.tile(np.eye(4), (len(deviations), 1, 1))
        out[:, :3, :3] = self.rotation @ Rotation.from_rotvec(np.radians(deviations[:, :3])).as_matrix()
        out[:, :3, 3] = self.translation + deviations[:, 3:] / 1000.0
        return out.astype(np.float32)


def replay(deviations: np.ndarray, n_frames: int, start: int = 0) -> np.ndarray:
    """(n_frames, 6) the tracked deviations (T, 6) played forward, then backward, and so on: no jumps."""
    t = len(deviations)
    if t == 1:
        return np.repeat(deviations, n_frames, axis=0)
    period = 2 * (t - 1)
    k = (np.arange(n_frames) + start) % period
    return deviations[np.where(k < t, k, period - k)]


@dataclass(frozen=True)
class ProsodyPoseModel:
    """Head motion from speech, fitted on the subject: per channel, an AR(2) process whose innovations
    grow with speech activity and loudness (pauses bring stillness, emphasis brings motion)."""

    ar: np.ndarray
    """(6, 2) float64 AR coefficients per deviation channel."""
    gain: np.ndarray
    """(6, 3) float64 innovation std per channel = gain @ [1, speaking, dB above speech level / 10] (clipped at 0)."""
    lo: np.ndarray
    """(6,) float64 smallest deviation seen (generation is kept within 1.2 x the seen range)."""
    hi: np.ndarray
    """(6,) float64 largest deviation seen."""

    @classmethod
    def fit(cls, deviations: np.ndarray, drivers: np.ndarray) -> "ProsodyPoseModel":
        """From (F, 6) tracked deviations and (F, 3) drivers (:func:`prosody_drivers` of the subject's audio)."""
        ar, gain = np.zeros((6, AR_ORDER)), np.zeros((6, 3))
        for c in range(6):
            x = deviations[:, c] - deviations[:, c].mean()
            design = np.c_[x[1:-1], x[:-2]]
            coef, *_ = np.linalg.lstsq(design, x[2:], rcond=None)
            if np.max(np.abs(np.roots([1.0, -coef[0], -coef[1]]))) >= 0.995:  # not stationary: a safe default
                coef = np.array([1.8, -0.82])
            ar[c] = coef
            resid = np.abs(x[2:] - design @ coef) * np.sqrt(np.pi / 2)  # E|e| = sigma sqrt(2 / pi)
            g, *_ = np.linalg.lstsq(drivers[2:], resid, rcond=None)
            gain[c] = g
        return cls(ar, gain, deviations.min(0), deviations.max(0))

    def generate(self, drivers: np.ndarray, seed: int = 0) -> np.ndarray:
        """(F, 6) deviations for (F, 3) drivers of new speech."""
        return ProsodyPoseTrack(self, seed).take(drivers)

    def arrays(self) -> dict:
        return {"ar": self.ar, "gain": self.gain, "lo": self.lo, "hi": self.hi}


class ProsodyPoseTrack:
    """Generated head motion taken chunk by chunk: the same frames however the drivers are split."""

    def __init__(self, model: ProsodyPoseModel, seed: int = 0):
        self.model = model
        self._rng = np.random.default_rng(seed)
        self._prev = np.zeros((2, 6))  # deviations of the last two frames, newest first
        centre, self._span = 0.5 * (model.lo + model.hi), 0.6 * (model.hi - model.lo)
        self._centre = centre

    def take(self, drivers: np.ndarray) -> np.ndarray:
        """(n, 6) deviations for the next (n, 3) drivers."""
        m = self.model
        sigma = np.clip(drivers @ m.gain.T, 0.0, None)
        noise = self._rng.standard_normal(sigma.shape) * sigma
        out = np.zeros_like(noise)
        for t in range(len(out)):
            x = m.ar[:, 0] * self._prev[0] + m.ar[:, 1] * self._prev[1] + noise[t]
            out[t] = np.clip(x, self._centre - self._span, self._centre + self._span)
            self._prev = np.stack([out[t], self._prev[0]])
        return out


def prosody_drivers(vad: np.ndarray, energy_db: np.ndarray, speech_db: float) -> np.ndarray:
    """(F, 3) float64 [1, speaking, dB above the speech level / 10 while speaking]: what moves the head."""
    speaking = vad.astype(np.float64)
    loud = np.clip(energy_db - speech_db, 0.0, 20.0) / 10.0 * speaking
    return np.c_[np.ones_like(speaking), speaking, loud]


class OneEuroFilter:
    """Adaptive low-pass (Casiez et al. 2012): strong smoothing when still, little when moving fast.

    So jitter goes and real motion is not delayed. ``min_cutoff_hz`` sets the
    smoothing at rest, ``beta`` how fast the cutoff rises with speed.
    Streaming: :meth:`__call__` one frame at a time.
    """

    def __init__(self, fps: float, min_cutoff_hz: float = 1.5, beta: float = 0.05, d_cutoff_hz: float = 1.0):
        self.fps, self.min_cutoff, self.beta, self.d_cutoff = fps, min_cutoff_hz, beta, d_cutoff_hz
        self._x = self._dx = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * self.fps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self._x) * self.fps
        a_d = self._alpha(self.d_cutoff)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self._dx))
        self._x = a * x + (1 - a) * self._x
        return self._x.copy()


def stabilise(deviations: np.ndarray, fps: float, **filter_args) -> np.ndarray:
    """(F, 6) deviations through a One-Euro filter forward and then backward: smooth and without lag."""
    if len(deviations) == 0:
        return deviations.copy()
    fwd = OneEuroFilter(fps, **filter_args)
    once = np.stack([fwd(x) for x in deviations])
    back = OneEuroFilter(fps, **filter_args)
    return np.stack([back(x) for x in once[::-1]])[::-1]
