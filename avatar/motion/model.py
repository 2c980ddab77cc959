"""A subject's motion model: everything learned from its video that turns new speech into motion.

Trained on demand (under a minute on 2 cores for a minute of video) and kept
in ``SUBJECT_DIR/motion/motion_model.pt``, with the subject's stage runs and
the motion settings it was trained with: a folder preprocessed again, or other
settings, train a new one instead of reusing a stale one.
"""

from __future__ import annotations

import logging
import pickle
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avatar.core import config as config_io
from avatar.core.errors import UserError
from avatar.core.files import atomic_path, exclusive
from avatar.motion.blinks import BlinkModel
from avatar.motion.config import MotionConfig
from avatar.motion.face import ChannelCalibration, EyelidModel, opening_metric, vertex_weights, weighted_metric
from avatar.motion.features import SpeakerLevels, normalised_features
from avatar.motion.pose import MeanPose, ProsodyPoseModel, prosody_drivers, stabilise
from avatar.motion.predictor import AudioToExpression
from avatar.motion.sync import NO_OFFSET, measure_offset, shift_frames
from avatar.motion.train import TrainingData, train_predictor, vertex_error
from preprocess.subject import Subject

log = logging.getLogger(__name__)

MODEL_FORMAT = 3
"""Bumped whenever an older motion model could be misread."""


def motion_dir(subject_root: str | Path) -> Path:
    return Path(subject_root) / "motion"


def motion_model_path(subject_root: str | Path) -> Path:
    return motion_dir(subject_root) / "motion_model.pt"


@dataclass
class SubjectMotion:
    """What turns a subject's new speech into its motion (see :mod:`avatar.motion.generate`)."""

    predictor: AudioToExpression
    levels: SpeakerLevels
    """The subject's own voice levels (the starting point of streaming normalisation)."""
    rest_expr: np.ndarray
    """(K,) float32 the subject's expression with the mouth at rest (silence)."""
    eyelids: EyelidModel
    calibration: ChannelCalibration
    blinks: BlinkModel
    pose: ProsodyPoseModel
    mean_pose: MeanPose
    replay: np.ndarray
    """(T, 6) float64 the tracked pose deviations (see :mod:`avatar.motion.pose`), for ``--pose replay``."""
    fps: float
    mouth_speed: float
    """The subject's mean frame-to-frame change of mouth opening (inner-lip gap / width) while speaking."""
    summary: dict
    """How it was trained and how it did on the validation frames (JSON-able)."""
    av_offset: int = 0
    """How far the training video's sound was moved to bring it into sync, frames
    (:meth:`avatar.motion.sync.SyncOffset.correction`): the model speaks in sync; replaying that video's
    sound as it was recorded moves its features by this."""


def train_motion(subject: Subject, cfg: MotionConfig) -> SubjectMotion:
    """Train a :class:`SubjectMotion` on ``subject`` (its training frames only)."""
    feats = subject.audio_features
    if feats is None:
        raise UserError(f"{subject.paths.root} has no sound, so nothing can learn how its mouth moves with speech",
                        "preprocess a video with an audio track")
    t = subject.tracking
    levels = SpeakerLevels.measure(feats.mel, feats.energy_db, feats.f0_hz, feats.vad)
    x = normalised_features(feats, levels)
    usable = np.zeros(t.n_frames, bool)
    usable[subject.train_frames] = True
    offset = measure_offset(feats.phone_post, t.mouth_open, subject.fps, usable) if cfg.sync else NO_OFFSET
    # every face track paired with the sound below is moved into sync with it (a clip in sync moves by 0)
    shift = -offset.correction(subject.fps)
    if shift:
        log.info("the video's sound is %.0f ms %s against its mouth: the mouth is learnt in sync with the sound",
                 1000.0 * abs(offset.frames) / subject.fps, "late" if offset.frames > 0 else "early")
    expr, mouth_open = shift_frames(t.expr.astype(np.float32), shift), shift_frames(t.mouth_open, shift)
    usable = shift_frames(usable, shift, fill="zero")
    metric = opening_metric(expr[usable], mouth_open[usable],
                            weighted_metric(t.expr_basis, vertex_weights(t.mean_shape)), cfg.predictor.opening_weight)
    data = TrainingData(x, expr, usable, metric, feats.mel.shape[1], feats.rows_per_frame)
    t0 = time.perf_counter()
    predictor = _predictor(data, cfg, t)
    seconds = time.perf_counter() - t0
    train = subject.train_frames
    mean_pose = MeanPose.of(t.viewmats[train])
    deviations = stabilise(mean_pose.deviations(t.viewmats), subject.fps)
    drivers = prosody_drivers(feats.vad, feats.energy_db, levels.speech_db)
    summary = {"train_seconds": round(seconds, 1), "train_frames": int(len(train)),
               "train_vertex_rms_mm": round(vertex_error(predictor, data, train), 3),
               "av_offset": offset.to_json(subject.fps)}
    if len(subject.val_frames):
        summary["val_vertex_rms_mm"] = round(vertex_error(predictor, data, subject.val_frames), 3)
    return SubjectMotion(
        predictor=predictor, levels=levels, rest_expr=rest_expression(expr[train], mouth_open[train],
                                                                      feats.vad[train]),
        eyelids=EyelidModel.fit(t, train), calibration=ChannelCalibration.fit(t.verts[train]),
        blinks=BlinkModel.fit(t.eye_open[train], subject.fps),
        pose=ProsodyPoseModel.fit(shift_frames(deviations, shift)[train], drivers[train]), mean_pose=mean_pose,
        replay=deviations[train], fps=subject.fps,
        mouth_speed=speech_mouth_speed(mouth_open[train], feats.vad[train] > 0.5), summary=summary,
        av_offset=-shift)


def speech_mouth_speed(mouth_open: np.ndarray, speaking: np.ndarray) -> float:
    """Mean |change| per frame of (F,) mouth opening over consecutive speaking frames ((F,) bool)."""
    both = speaking[1:] & speaking[:-1]
    return float(np.abs(np.diff(mouth_open))[both].mean()) if both.any() else 0.0


def _predictor(data: TrainingData, cfg: MotionConfig, tracking) -> AudioToExpression:
    """The subject's predictor: trained alone, fine-tuned from the multispeaker prior, or the prior as is."""
    import dataclasses

    from avatar.motion.pretrain import load_prior, subject_predictor

    prior = load_prior() if cfg.prior != "none" else None
    if prior is None:
        if cfg.prior != "none":
            raise UserError(f"motion.prior={cfg.prior}, but this installation has no multispeaker prior",
                            "run `make pretrain` (needs ../shared/data/multispeaker) or use motion.prior=none")
        return train_predictor(data, cfg.predictor, seed=cfg.seed)
    if prior.predictor.in_dim != data.features.shape[1]:
        log.warning("the multispeaker prior was trained on other audio features (%d values a frame, these have "
                    "%d): training the subject's predictor alone", prior.predictor.in_dim, data.features.shape[1])
        return train_predictor(data, cfg.predictor, seed=cfg.seed)
    init = subject_predictor(prior, tracking)
    steps = 0 if cfg.prior == "only" else cfg.predictor.steps
    pcfg = dataclasses.replace(cfg.predictor, steps=steps, width=prior.predictor.width)
    return train_predictor(data, pcfg, seed=cfg.seed, init=init)


def rest_expression(expr: np.ndarray, mouth_open: np.ndarray, vad: np.ndarray) -> np.ndarray:
    """(K,) mean expression over the frames where the mouth is most closed, preferring silent ones."""
    quiet = vad < 0.5
    pool = np.flatnonzero(quiet) if quiet.sum() >= 10 else np.arange(len(expr))
    closed = pool[mouth_open[pool] <= np.percentile(mouth_open[pool], 25)]
    return expr[closed].mean(0).astype(np.float32)


def load_or_train_motion(subject: Subject, cfg: MotionConfig, retrain: bool = False) -> SubjectMotion:
    """The subject's motion model: the saved one if it matches the subject and ``cfg``, else a new one (saved)."""
    path = motion_model_path(subject.paths.root)
    wanted = _identity(subject, cfg)
    if not retrain and (saved := _saved(path, wanted)) is not None:
        return saved
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path.with_name(path.name + ".lock")):
        # another process (a second render of this subject) may have trained it while this one waited
        if not retrain and (saved := _saved(path, wanted, quiet=True)) is not None:
            return saved
        log.info("training the motion model of %s on its own video", subject.paths.root)
        motion = train_motion(subject, cfg)
        with atomic_path(path) as tmp:
            torch.save(_to_state(motion, wanted), tmp)
    return motion


def _saved(path: Path, wanted: dict, quiet: bool = False) -> SubjectMotion | None:
    """The motion model saved at ``path`` if it was trained for ``wanted``, else None."""
    if not path.exists():
        return None
    state = _read(path)
    if state is not None and state.get("identity") == wanted:
        return _from_state(state)
    if not quiet:
        log.info("motion model in %s is stale (other preprocessing or settings): training a new one", path)
    return None


def _identity(subject: Subject, cfg: MotionConfig) -> dict:
    return {"format": MODEL_FORMAT, "subject": dict(subject.manifest.stage_runs),
            "config": config_io.to_dict(cfg)}


def _read(path: Path) -> dict | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError):
        log.warning("%s is damaged: training a new motion model", path)
        return None


def _tensors(d: dict) -> dict:
    return {k: torch.as_tensor(np.asarray(v)) for k, v in d.items()}


def _arrays(d: dict) -> dict:
    return {k: v.numpy() for k, v in d.items()}


def _to_state(m: SubjectMotion, identity: dict) -> dict:
    p = m.predictor
    return {"identity": identity, "summary": m.summary, "fps": m.fps, "mouth_speed": m.mouth_speed,
            "predictor": {"in_dim": p.in_dim, "out_dim": p.out_dim, "width": p.width, "state": p.state_dict()},
            "levels": {"mel_mean": torch.from_numpy(m.levels.mel_mean), "mel_std": m.levels.mel_std,
                       "speech_db": m.levels.speech_db, "f0_median_hz": m.levels.f0_median_hz},
            "rest_expr": torch.from_numpy(m.rest_expr),
            "eyelids": _tensors({k: getattr(m.eyelids, k) for k in
                                 ("offset", "slope", "side", "vertices", "solve", "lid_basis")}),
            "calibration": _tensors({"lo": m.calibration.lo, "hi": m.calibration.hi}),
            "blinks": _tensors({k: v for k, v in m.blinks.arrays().items() if k != "fps"}),
            "pose": _tensors(m.pose.arrays()),
            "mean_pose": _tensors({"rotation": m.mean_pose.rotation, "translation": m.mean_pose.translation}),
            "replay": torch.from_numpy(m.replay), "av_offset": m.av_offset}


def _from_state(s: dict) -> SubjectMotion:
    p = s["predictor"]
    predictor = AudioToExpression(p["in_dim"], p["out_dim"], p["width"])
    predictor.load_weights(p["state"])
    predictor.eval()
    lv = s["levels"]
    levels = SpeakerLevels(lv["mel_mean"].numpy(), float(lv["mel_std"]), float(lv["speech_db"]),
                           float(lv["f0_median_hz"]))
    return SubjectMotion(
        predictor=predictor, levels=levels, rest_expr=s["rest_expr"].numpy(),
        eyelids=EyelidModel(**_arrays(s["eyelids"])), calibration=ChannelCalibration(**_arrays(s["calibration"])),
        blinks=BlinkModel(**_arrays(s["blinks"]), fps=float(s["fps"])),
        pose=ProsodyPoseModel(**_arrays(s["pose"])), mean_pose=MeanPose(**_arrays(s["mean_pose"])),
        replay=s["replay"].numpy(), fps=float(s["fps"]), mouth_speed=float(s["mouth_speed"]),
        summary=dict(s["summary"]), av_offset=int(s["av_offset"]))
