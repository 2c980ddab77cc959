"""New speech -> a :class:`~avatar.motion.motion_file.Motion`: expression from audio, blinks, head pose.

The order of the steps is the point:

1. the predictor turns speaker-normalised features into expressions;
2. they are scaled about the subject's rest expression by the articulation
   gain (:func:`articulation_gain`: the mouth moves as fast as the subject's
   own while speaking) times the mouth-amplitude control;
3. once a pause (no voice activity) has lasted :data:`SILENCE_HOLD_S`, and the
   look-ahead shows it going on, the face eases to the rest expression (closed,
   still mouth), until just before speech returns;
4. the lids are set to the blink track (generated, or a given one);
5. head pose comes from the chosen mode, scaled by the head-motion amount, stabilised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import ndimage

from avatar.core import config as config_io
from avatar.core.errors import UserError
from avatar.motion.features import normalised_features
from avatar.motion.model import SubjectMotion
from avatar.motion.motion_file import Motion
from avatar.motion.config import POSE_MODES
from avatar.motion.pose import prosody_drivers, replay, stabilise
from avatar.motion.predictor import predict_clip
from preprocess.subject import Subject

SILENCE_HOLD_S = 0.16
"""A pause starts easing the face to rest after it has lasted this long, if the look-ahead shows that it goes
on for at least the look-ahead beyond that (shorter breaks inside phrases keep what the predictor says)..."""
SILENCE_EASE_IN_S = 0.08
"""...taking this long to ease in, so the mouth is closed 0.2 s into a long pause (cnn2 avatar driven by
hallo_2: easing in over 0.15 s from 0.2 s left it open in 9 of the 69 frames ``silence_mouth_open`` counts,
every one on a ramp, 0.130; this way 4, all on the ease out, 0.058; cnn2's own held-out mesh opening
correlation 0.535 -> 0.529, from 0.12 s 0.511)..."""
SILENCE_EASE_S = 0.15
"""...and this long to ease out before speech returns (at most the predictor's look-ahead, so a stream
decides exactly as a whole clip does). Speakers part their lips to breathe in before they speak, so a
longer ease out follows the subject better (cnn2's held-out mouth opening: correlation 0.544 with 0.2 s
against 0.522; rendered ``mouth_corr`` 0.431) but leaves the mouth open in more of other voices' pauses
(hallo_2's ``silence_mouth_open`` 0.130 against 0.087, over the target's 0.1)."""
MAX_GAIN = 1.6
"""Most the articulation gain scales the predicted motion (see :func:`articulation_gain`)."""
MIN_SPEECH_S = 0.3
"""Audio shorter than this is refused (nothing to say)."""


@dataclass(frozen=True)
class Controls:
    """How the avatar moves, on top of what the audio says."""

    pose: str = "replay"
    """Head pose: replay (the training video's, looped), audio (generated from the speech), still."""
    mouth_amplitude: float = 1.0
    """Scale of the mouth and face motion about the rest expression (1 = as learned)."""
    blink_rate: float = 1.0
    """Blinks per minute as a multiple of the subject's own rate (0 = none)."""
    head_motion: float = 1.0
    """Scale of the head's motion about its mean pose (0 = still)."""
    seed: int = 0
    """Seed of the generated blinks and head motion."""

    def check(self) -> "Controls":
        if self.pose not in POSE_MODES:
            raise UserError(f"unknown pose mode {self.pose!r}", f"use one of {', '.join(POSE_MODES)}")
        for name in ("mouth_amplitude", "blink_rate", "head_motion"):
            value = getattr(self, name)
            if not (0.0 <= value <= 5.0):
                raise UserError(f"{name.replace('_', '-')} {value} is outside 0..5", "1 is the subject's own")
        return self


def audio_config(subject: Subject):
    """The subject's preprocess audio-feature settings: new speech must be featurised as its training audio was."""
    from preprocess.config import PreprocessConfig

    return config_io.from_dict(PreprocessConfig, config_io.read_yaml(subject.paths.config)).audio


def check_sound_file(path: str | Path) -> Path:
    """``path`` when it is a file ffmpeg reads with a sound stream; else a UserError naming the problem."""
    from avatar.core import media

    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file {path} does not exist", "give the path of a speech recording")
    try:
        stream = media.probe_media(path).audio
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - probing a non-media file fails in many ways
        raise UserError(f"{path} is not an audio file ffmpeg can read ({e.__class__.__name__})",
                        "give a wav, mp3, m4a, flac or ogg file") from None
    if stream is None:
        raise UserError(f"{path} has no audio stream", "give a file with sound (wav, mp3, m4a, flac, ogg)")
    return path


def audio_features(path: str | Path, subject: Subject) -> SimpleNamespace:
    """Frame-aligned features (preprocess's keys) of any audio file ffmpeg reads, at the subject's frame rate."""
    from preprocess.audio_features import compute_audio_features
    from preprocess.decode import decode_audio

    path = check_sound_file(path)
    wav = decode_audio(path, 16000)
    if len(wav) < MIN_SPEECH_S * 16000:
        raise UserError(f"{path} is {len(wav) / 16000:.2f} s long, too short to say anything",
                        f"give at least {MIN_SPEECH_S} s of speech")
    n_frames = max(1, int(round(len(wav) / 16000 * subject.fps)))  # a video of the sound's length, rounded
    feats = compute_audio_features(wav, 16000, n_frames, audio_config(subject), fps=subject.fps, phones=False)
    if feats["vad"].sum() == 0:
        raise UserError(f"{path} holds no speech (only silence or noise)", "give a recording of someone speaking")
    return SimpleNamespace(**feats)


def motion_from_features(model: SubjectMotion, subject: Subject, feats, controls: Controls = Controls(),
                         eye_open: np.ndarray | None = None, viewmats: np.ndarray | None = None,
                         meta: dict | None = None) -> Motion:
    """The motion for frame-aligned ``feats`` (preprocess's keys, at the subject's fps).

    Args:
        eye_open: (F, 2) lid openness to use instead of generated blinks (replaying a tracked clip).
        viewmats: (F, 4, 4) head poses to use instead of ``controls.pose``.
    """
    controls.check()
    t = subject.tracking
    n = len(feats.mel)
    expr = predict_clip(model.predictor, normalised_features(feats))  # levels measured on the clip, as below
    gain = articulation_gain(model, subject, expr, feats.vad > 0.5)
    expr = model.rest_expr + gain * controls.mouth_amplitude * (expr - model.rest_expr)
    ease = silence_weight(feats.vad < 0.5, model.fps, model.predictor.lookahead)
    expr = expr + ease[:, None] * (model.rest_expr - expr)
    if eye_open is None:
        eye_open = model.blinks.generate(n, controls.blink_rate, controls.seed)
    expr = model.eyelids.apply(expr, eye_open, t.mean_shape)
    if viewmats is None:
        viewmats = head_poses(model, feats, n, controls)
    verts = t.mean_shape + np.einsum("fk,kvc->fvc", expr, t.expr_basis)
    meta = dict(meta or {}) | {"subject": str(subject.paths.root), "controls": controls.__dict__,
                               "lookahead_ms": round(1000 * model.predictor.lookahead / model.fps, 1)}
    return Motion(float(model.fps), expr.astype(np.float32), viewmats.astype(np.float32),
                  model.calibration(verts), verts.astype(np.float32), meta)


def articulation_gain(model: SubjectMotion, subject: Subject, expr: np.ndarray, speaking: np.ndarray) -> float:
    """How much to scale the predicted motion about the rest expression so that the mouth moves, while
    speaking, as fast as the subject's own did in its video: in [1, MAX_GAIN].

    A voice the predictor never heard gets hedged, averaged lips (the field's most common complaint:
    lips that barely move on TTS or other voices); this measures that on the clip itself and undoes it.
    """
    from avatar.motion.model import speech_mouth_speed
    from preprocess.face_model import mouth_openness

    t = subject.tracking
    predicted = speech_mouth_speed(mouth_openness(t.mean_shape + np.einsum("fk,kvc->fvc", expr, t.expr_basis)),
                                   speaking)
    if predicted <= 0 or model.mouth_speed <= 0:
        return 1.0
    return float(np.clip(model.mouth_speed / predicted, 1.0, MAX_GAIN))


def head_poses(model: SubjectMotion, feats, n: int, controls: Controls) -> np.ndarray:
    """(n, 4, 4) camera-from-head poses for ``controls.pose``."""
    if controls.pose == "still":
        dev = np.zeros((n, 6))
    elif controls.pose == "replay":
        dev = replay(model.replay, n)
    else:
        drivers = prosody_drivers(feats.vad, feats.energy_db, model.levels.speech_db)
        dev = stabilise(model.pose.generate(drivers, controls.seed), model.fps)
    return model.mean_pose.viewmats(controls.head_motion * dev)


def replayed_frames(subject: Subject, n: int) -> np.ndarray:
    """(n,) int64: the subject frame whose head pose ``--pose replay`` gives each of ``n`` frames (the training
    frames forward, backward, ...: what :func:`~avatar.motion.pose.replay` plays); paste-back shows them."""
    train = subject.train_frames
    return replay(train[:, None].astype(np.float64), n)[:, 0].astype(np.int64)


def silence_weight(silent: np.ndarray, fps: float, lookahead: int) -> np.ndarray:
    """(F,) float32 in [0, 1]: how far the face eases to rest; 1 inside long silences, 0 elsewhere.

    ``silent``: (F,) bool, no voice activity. ``lookahead``: the predictor's, frames. A silent run eases
    when it lasts at least hold + look-ahead frames: its ease in starts ``hold`` frames in, where the
    look-ahead shows that much. Frame ``t``'s weight depends on frames up to ``t + lookahead`` only, so
    streaming gets the same weights.
    """
    out = np.zeros(len(silent), np.float32)
    runs, _ = ndimage.label(silent)
    hold = int(round(SILENCE_HOLD_S * fps))
    lookahead = max(1, lookahead)
    ease_in = max(1, int(round(SILENCE_EASE_IN_S * fps)))
    ease_out = int(np.clip(round(SILENCE_EASE_S * fps), 1, lookahead))
    for (run,) in ndimage.find_objects(runs):
        start, stop = run.start, run.stop
        if start > 0 and stop < len(silent) and stop - start < hold + lookahead:
            continue  # a break inside a phrase
        k = np.arange(start, stop)
        up = np.clip((k - start - hold + 1) / ease_in, 0, 1) if start > 0 else np.ones(len(k))
        down = np.clip((stop - k) / ease_out, 0, 1) if stop < len(silent) else np.ones(len(k))
        out[start:stop] = np.minimum(up, down)
    return out
