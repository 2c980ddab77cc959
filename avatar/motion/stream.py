"""Streaming audio-to-motion: audio chunks in, motion frames out, a bounded look-ahead behind the audio.

Frame ``t`` comes out once the audio up to the end of frame
``t + lookahead + AFTER`` has arrived: the predictor's look-ahead
(:attr:`~avatar.motion.predictor.AudioToExpression.lookahead`, 5 frames = 200
ms at 25 fps) plus :data:`AFTER` frames for the feature windows (40 ms). It is
the whole-clip computation of :mod:`avatar.motion.generate` done on a sliding
window, so both agree, except where whole-clip statistics are not known yet:

- the speaker's levels (mean log-mel, speech level, median pitch) are running
  estimates over what was heard, starting from the subject's own;
- voice activity thresholds come from the last :data:`HISTORY_S` seconds;
- Praat's pitch is computed on the window (its path finder sees less);
- the articulation gain follows the predicted mouth speed so far (from 1).

Head pose ``audio`` is filtered causally (a One-Euro filter) instead of
forward-backward. Memory is bounded: nothing older than the history is kept.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import torch

from avatar.motion.blinks import BlinkTrack
from avatar.motion.features import SpeakerLevels, normalised_features
from avatar.motion.generate import MAX_GAIN, Controls, audio_config, silence_weight
from avatar.motion.model import SubjectMotion
from avatar.motion.motion_file import Motion
from avatar.motion.pose import OneEuroFilter, ProsodyPoseTrack, prosody_drivers, replay
from preprocess.audio_features import SAMPLE_RATE, acoustic_features, voice_activity

BEFORE = 10
"""Frames of audio before a new stretch that its features are computed with (pitch needs context)."""
AFTER = 1
"""Frames of audio after a stretch that must have arrived before its features are final (mel window)."""
HISTORY_S = 60.0
"""Seconds of frame energies and voicing that voice-activity thresholds are taken from."""
PRIOR_FRAMES = 50
"""The subject's own levels weigh like this many frames of speech in the running speaker levels."""
_KEYS = ("mel", "mel_hi", "f0_hz", "f0_hi_hz", "voicing", "energy_db", "energy_hi_db")
_HIGH_RATE = ("mel_hi", "f0_hi_hz", "energy_hi_db")
"""Keys with ``rows_per_frame`` rows a frame, kept as (r, ...) per frame."""


class MotionStream:
    """Feed audio with :meth:`push`, end with :meth:`finish`; each returns the motion frames now ready."""

    def __init__(self, model: SubjectMotion, subject, controls: Controls = Controls(), sample_rate: int = SAMPLE_RATE):
        import soxr

        self.model, self.controls = model, controls.check()
        self.cfg = audio_config(subject)
        self.fps = float(model.fps)
        self.r = self.cfg.rows_per_frame(self.fps)
        self.frame_len = int(round(SAMPLE_RATE / self.fps))
        self.mean_shape, self.basis = subject.tracking.mean_shape, subject.tracking.expr_basis
        self._resampler = None if sample_rate == SAMPLE_RATE else soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1)
        self._audio = np.zeros(0, np.float32)  # samples from frame self._audio_frame on
        self._audio_frame = 0
        self._feats = {k: [] for k in _KEYS}  # per-frame rows (hi-rate ones reshaped to (r, ...)) from _feat_frame
        self._feat_frame = 0
        self._n_feat = 0  # frames with final features
        self._energy, self._voicing = [], []  # history for voice activity, from frame _hist_frame
        self._hist_frame = 0
        self._emitted = 0
        self._levels = _RunningLevels(model.levels, int(HISTORY_S * self.fps))
        self._blinks = BlinkTrack(model.blinks, controls.blink_rate, controls.seed)
        self._pose_track = ProsodyPoseTrack(model.pose, controls.seed)
        self._pose_filter = OneEuroFilter(self.fps)
        self._speed_sum, self._speed_n = PRIOR_FRAMES * model.mouth_speed, PRIOR_FRAMES  # articulation gain 1
        self._last_open, self._last_speaking = 0.0, False
        self._warm_up()

    def _warm_up(self) -> None:
        """Load what the first chunk would otherwise wait for (librosa's lazy modules and numba
        kernels: about 4 s; the predictor's first call), so the first frame comes out on time."""
        acoustic_features(np.zeros(4 * self.frame_len, np.float32), 4, self.cfg, self.fps)
        p = self.model.predictor
        with torch.no_grad():
            p(torch.zeros(1, p.context + p.lookahead + 1, p.in_dim))

    def set_controls(self, controls: Controls) -> None:
        """New mouth amplitude, blink rate and head motion from the next frame on (a live viewer's sliders);
        the pose mode and seed stay as the stream began."""
        c = replace(controls, pose=self.controls.pose, seed=self.controls.seed).check()
        self.controls = c
        self._blinks.set_rate(c.blink_rate)

    @property
    def latency_frames(self) -> int:
        """Frames of audio beyond frame ``t`` needed before frame ``t`` comes out."""
        return self.model.predictor.lookahead + AFTER

    def push(self, samples: np.ndarray) -> Motion:
        """Add (T,) or (T, C) samples at the stream's rate; the motion frames that became ready."""
        x = np.asarray(samples, np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        self._audio = np.concatenate([self._audio, x.astype(np.float32)])
        complete = self._audio_frame + len(self._audio) // self.frame_len
        self._features_until(complete - AFTER, complete)
        return self._emit(self._n_feat - self.model.predictor.lookahead, final=False)

    def finish(self) -> Motion:
        """End of the audio: the remaining frames (the last partial frame is padded with silence, as a clip is)."""
        if self._resampler is not None:
            self._audio = np.concatenate([self._audio, self._resampler.resample_chunk(np.zeros(0, np.float32),
                                                                                      last=True)])
        end = self._audio_frame + int(np.ceil(len(self._audio) / self.frame_len - 1e-6))
        pad = (end - self._audio_frame) * self.frame_len - len(self._audio)
        self._audio = np.pad(self._audio, (0, pad))
        self._features_until(end, end)
        return self._emit(self._n_feat, final=True)

    # -- features ---------------------------------------------------------------------------------------------

    def _features_until(self, stop: int, available: int) -> None:
        """Final features for frames up to ``stop`` (exclusive), from audio of frames up to ``available``."""
        if stop <= self._n_feat:
            return
        lo = max(self._audio_frame, self._n_feat - BEFORE)
        a = self._audio[(lo - self._audio_frame) * self.frame_len:(available - self._audio_frame) * self.frame_len]
        f = acoustic_features(a, available - lo, self.cfg, self.fps)
        keep = slice(self._n_feat - lo, stop - lo)
        for k in _KEYS:
            rows = f[k].reshape(available - lo, -1, *f[k].shape[1:]) if k in _HIGH_RATE else f[k]
            self._feats[k].extend(rows[keep])
        self._energy.extend(f["energy_db"][keep])
        self._voicing.extend(f["voicing"][keep])
        self._n_feat = stop
        self._trim()

    def _trim(self) -> None:
        """Drop audio, features and history nobody needs again."""
        keep_audio_from = max(self._audio_frame, self._n_feat - BEFORE)
        cut = (keep_audio_from - self._audio_frame) * self.frame_len
        self._audio, self._audio_frame = self._audio[cut:], keep_audio_from
        need = max(self._feat_frame, self._emitted - self.model.predictor.context - 1)
        drop = need - self._feat_frame
        if drop > 0:
            for k in _KEYS:
                del self._feats[k][:drop]
            self._feat_frame = need
        hist = int(HISTORY_S * self.fps)
        if len(self._energy) > hist:
            extra = len(self._energy) - hist
            del self._energy[:extra], self._voicing[:extra]
            self._hist_frame += extra

    def _vad(self) -> np.ndarray:
        """Voice activity of the history frames (thresholds from the history)."""
        return voice_activity(np.asarray(self._energy), np.asarray(self._voicing), self.cfg, self.fps)

    # -- motion -------------------------------------------------------------------------------------------------

    def _emit(self, stop: int, final: bool) -> Motion:
        m, p = self.model, self.model.predictor
        start = self._emitted
        n = max(0, stop - start)
        if n == 0:
            return self._empty()
        vad_hist = self._vad()
        vad_of = lambda f: vad_hist[np.clip(np.asarray(f) - self._hist_frame, 0, len(vad_hist) - 1)]  # noqa: E731
        lo, hi = start - p.context, stop + p.lookahead
        frames = np.clip(np.arange(lo, hi), 0, self._n_feat - 1)  # edges repeated, as in a whole clip
        rows = frames - self._feat_frame
        window = SimpleNamespace(**{k: np.stack([self._feats[k][i] for i in rows]) for k in _KEYS})
        window.mel_hi = window.mel_hi.reshape(-1, window.mel_hi.shape[-1])
        window.f0_hi_hz, window.energy_hi_db = window.f0_hi_hz.reshape(-1), window.energy_hi_db.reshape(-1)
        window.vad = vad_of(frames).astype(np.float32)
        for t in range(start, stop):  # levels as they were known when frame t is due
            k = t - lo
            self._levels.add(window.mel[k], window.energy_db[k], window.f0_hz[k], window.vad[k])
        x = normalised_features(window, self._levels.current())
        with torch.no_grad():
            expr = p(torch.from_numpy(x)[None])[0, p.context:p.context + n].numpy()
        gain = self._articulation_gain(expr, window.vad[p.context:p.context + n] > 0.5)
        expr = m.rest_expr + gain * self.controls.mouth_amplitude * (expr - m.rest_expr)
        ease_frames = np.arange(max(0, start - 60), min(stop + p.lookahead, self._n_feat))
        ease = silence_weight(vad_of(ease_frames) < 0.5, self.fps, p.lookahead)
        w = ease[start - ease_frames[0]:stop - ease_frames[0]]
        expr = expr + w[:, None] * (m.rest_expr - expr)
        expr = m.eyelids.apply(expr, self._blinks.take(n), self.mean_shape)
        dev = self._pose(start, stop, window, lo)
        viewmats = m.mean_pose.viewmats(self.controls.head_motion * dev)
        verts = self.mean_shape + np.einsum("fk,kvc->fvc", expr, self.basis)
        self._emitted = stop
        self._trim()
        return Motion(self.fps, expr.astype(np.float32), viewmats, m.calibration(verts), verts.astype(np.float32),
                      {"start_frame": start, "lookahead_ms": round(1000 * self.latency_frames / self.fps, 1)})

    def _articulation_gain(self, expr: np.ndarray, speaking: np.ndarray) -> float:
        """The whole clip's articulation gain, from the predicted mouth speed so far (starting at gain 1)."""
        from preprocess.face_model import mouth_openness

        opening = mouth_openness(self.mean_shape + np.einsum("fk,kvc->fvc", expr, self.basis))
        for o, sp in zip(opening, speaking):
            if sp and self._last_speaking:
                self._speed_sum += abs(o - self._last_open)
                self._speed_n += 1
            self._last_open, self._last_speaking = o, sp
        speed = self._speed_sum / self._speed_n
        if speed <= 0 or self.model.mouth_speed <= 0:
            return 1.0
        return float(np.clip(self.model.mouth_speed / speed, 1.0, MAX_GAIN))

    def _pose(self, start: int, stop: int, window, lo: int) -> np.ndarray:
        n = stop - start
        if self.controls.pose == "still":
            return np.zeros((n, 6))
        if self.controls.pose == "replay":
            return replay(self.model.replay, n, start=start)
        k = slice(start - lo, stop - lo)
        drivers = prosody_drivers(window.vad[k], window.energy_db[k], self.model.levels.speech_db)
        raw = self._pose_track.take(drivers)
        return np.stack([self._pose_filter(d) for d in raw])

    def _empty(self) -> Motion:
        k = self.basis.shape[0]
        return Motion(self.fps, np.zeros((0, k), np.float32), np.zeros((0, 4, 4), np.float32),
                      np.zeros((0, len(self.model.calibration.lo)), np.float32),
                      np.zeros((0, *self.mean_shape.shape), np.float32), {"start_frame": self._emitted})


class _RunningLevels:
    """Speaker levels over the speech heard so far, starting from the subject's own."""

    def __init__(self, prior: SpeakerLevels, limit: int):
        self.prior, self.limit = prior, limit
        self.n = 0
        self.sum_mel = np.zeros_like(prior.mel_mean, dtype=np.float64)
        self.sum_sq = 0.0
        self.energies: list[float] = []
        self.f0s: list[float] = []

    def add(self, mel: np.ndarray, energy_db: float, f0_hz: float, vad: float) -> None:
        if vad < 0.5:
            return
        self.n += 1
        self.sum_mel += mel
        self.sum_sq += float(np.square(mel).mean())
        self.energies.append(float(energy_db))
        if f0_hz > 0:
            self.f0s.append(float(f0_hz))
        del self.energies[:-self.limit], self.f0s[:-self.limit]

    def current(self) -> SpeakerLevels:
        w0, n = PRIOR_FRAMES, self.n
        if n == 0:
            return self.prior
        mel_mean = (w0 * self.prior.mel_mean + self.sum_mel) / (w0 + n)
        mean_sq = (w0 * (self.prior.mel_std ** 2 + float(np.square(self.prior.mel_mean).mean())) + self.sum_sq) / (w0 + n)
        std = float(np.sqrt(max(mean_sq - float(np.square(mel_mean).mean()), 1e-6)))
        speech = (w0 * self.prior.speech_db + n * float(np.median(self.energies))) / (w0 + n)
        f0 = self.prior.f0_median_hz if not self.f0s else \
            (w0 * self.prior.f0_median_hz + n * float(np.median(self.f0s))) / (w0 + n)
        return SpeakerLevels(mel_mean.astype(np.float32), std, float(speech), float(f0))
