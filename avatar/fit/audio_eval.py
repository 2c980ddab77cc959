"""``avatar eval --driver audio``: the fitted avatar driven by speech instead of tracking.

Two settings:

- **self-driven** (no ``--audio``): the validation frames rendered from motion
  predicted from the validation audio, with head pose and blinks replayed from
  tracking (the field's self-driven test). Reports ``avatar eval``'s metrics plus
  ``mouth_corr``: Pearson correlation over time of the inner-lip opening of the
  rendered and the real frames (dlib's points 60-67, in the real frame's face box),
  and ``mesh_mouth_corr``: the same of the predicted mesh's opening against the
  tracked mesh's, which tells the predictor's share of a low ``mouth_corr`` from the
  renderer's (on cnn2 the renders follow predicted and tracked meshes alike, 0.88).
  ``speech_frames``, ``lmd_speech`` and ``mouth_corr_speech`` are the same over the
  frames where the speech sets the mouth: not eased to rest in a long pause
  (:func:`~avatar.motion.generate.silence_weight`). There a speaker also breathes
  in, presses the lips or swallows, which no audio tells; the split shows how much
  of ``lmd`` and ``mouth_corr`` is the predictor's and how much the pauses'.
  The motion model learns the mouth in sync with the sound; where the video's
  own sound is late or early (``motion_model.av_offset``, :mod:`avatar.motion.sync`),
  the predictor is given the validation sound moved by that offset, so the
  renders reproduce the recording as it is, as the replayed poses and lids do.
- **other audio** (``--audio FILE``): no real video to compare with, so it
  renders the whole clip and reports

  - ``silence_mouth_open``: the fraction of frames inside pauses of at least
    1 s, after their first 0.2 s, where the rendered mouth is open clearly above
    the subject's closed level (its 10th percentile of opening over real frames,
    plus a quarter of its 10th-90th percentile range);
  - ``speech_mouth_motion``: mean frame-to-frame change of the rendered opening
    during speech, over the same in the subject's own video during speech.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from avatar.core.progress import progress
from avatar.fit.data import TrainingFrames
from avatar.fit.evaluate import frame_metrics, metric_size, pick_frames, summarise, to_picture
from avatar.fit.metrics import FaceMetrics, inner_lip_opening, mouth_corr
from avatar.fit.video import SideBySideWriter
from avatar.model.frame import render_frame
from avatar.model.store import fit_dir, load_avatar
from avatar.motion.config import MotionConfig
from avatar.motion.generate import Controls, audio_features, motion_from_features, silence_weight
from avatar.motion.model import load_or_train_motion
from avatar.motion.sync import shift_features
from preprocess.subject import Subject

PAUSE_MIN_S, PAUSE_SKIP_S = 1.0, 0.2
"""``silence_mouth_open`` counts pauses this long, from this far into them."""
OPEN_MARGIN = 0.25
"""Open = above the closed level by this fraction of the subject's 10th-90th percentile opening range."""
REAL_FRAMES = 250
"""Contiguous real frames (10 s at 25 fps) that give the subject's own mouth levels and speed."""


def evaluate_audio_driven(root: str | Path, cfg: MotionConfig, *, audio: str | Path | None = None,
                          controls: Controls = Controls(), video: bool = True, frames: int | None = None) -> dict:
    """Metrics of the avatar in ``root`` driven by its own validation audio, or by ``audio``."""
    subject = Subject(root)
    avatar, _ = load_avatar(subject)
    motion_model = load_or_train_motion(subject, cfg)
    if audio is not None:
        return _other_audio(subject, avatar, motion_model, audio, controls)
    val = pick_frames(subject, frames)
    t = subject.tracking
    # the video's own sound as it was recorded: a model that speaks in sync is shown the sound moved by the
    # recording's offset, as the tracked poses and lids are replayed as recorded
    feats = shift_features(subject.audio_features, motion_model.av_offset)
    motion = motion_from_features(motion_model, subject, feats, controls, eye_open=t.eye_open, viewmats=t.viewmats)
    data, faces = TrainingFrames(subject), FaceMetrics()
    render = _renderer(subject, avatar, motion, subject.torso.affine)  # the tracked pose, and the tracked body
    rows = []
    contiguous = len(val) == len(subject.val_frames)
    writer = SideBySideWriter(fit_dir(root) / "eval_audio.mp4", subject.size, subject.fps,
                              audio=subject.paths.audio if contiguous else None,
                              audio_start_s=float(val[0]) / subject.fps) if video else None
    with torch.no_grad(), (writer if writer is not None else contextlib.nullcontext()):
        for i in progress(val, desc="eval (audio-driven)", unit="frame"):
            i = int(i)
            rendered = render(i)
            frame = data[i]
            rows.append(frame_metrics(frame, rendered, faces))
            if writer is not None:
                writer.write(frame.image, rendered)
    result = summarise(rows)
    speaking = silence_weight(feats.vad < 0.5, motion_model.fps, motion_model.predictor.lookahead)[val] == 0
    result.update(driver="audio", frames=len(rows), mesh_mouth_corr=_mesh_mouth_corr(motion.verts, t.verts, val),
                  **speech_split(rows, speaking), lookahead_ms=motion.meta["lookahead_ms"],
                  motion_model=motion_model.summary)
    return result


def speech_split(rows: list[dict], speaking: np.ndarray) -> dict:
    """``speech_frames``, ``lmd_speech`` and ``mouth_corr_speech``: the :func:`frame_metrics` ``rows`` where
    (F,) bool ``speaking`` is set (None where there are too few of them to say)."""
    part = summarise([r for r, s in zip(rows, speaking) if s]) if speaking.any() else {}
    return {"speech_frames": int(speaking.sum()), "lmd_speech": part.get("lmd"),
            "mouth_corr_speech": part.get("mouth_corr")}


def _mesh_mouth_corr(predicted: np.ndarray, tracked: np.ndarray, frames: np.ndarray) -> float | None:
    """Pearson correlation over ``frames`` of the mouth opening of (F, V, 3) predicted and tracked meshes."""
    from preprocess.face_model import mouth_openness

    corr = mouth_corr(mouth_openness(tracked[frames]), mouth_openness(predicted[frames]))
    return None if corr is None else round(corr, 4)


def _renderer(subject: Subject, avatar, motion, torso: np.ndarray | None = None):
    """Frame i of ``motion`` as (S, S, 3) uint8, with the shoulders of ``torso`` (F, 2, 3) (None: usual place)."""
    K = torch.from_numpy(subject.tracking.K(subject.size))
    shoulders = None if torso is None else torch.from_numpy(torso)
    plate = torch.from_numpy(subject.background().astype(np.float32) / 255.0)
    verts, viewmats = torch.from_numpy(motion.verts), torch.from_numpy(motion.viewmats)
    expr = torch.from_numpy(motion.expr)

    @torch.no_grad()
    def render(i: int) -> np.ndarray:
        rgb = render_frame(avatar, verts[i], viewmats[i], K, subject.size, plate, expr=expr[i],
                           torso_affine=None if shoulders is None else shoulders[i]).rgb
        return to_picture(rgb)
    return render


def _other_audio(subject: Subject, avatar, motion_model, audio, controls: Controls) -> dict:
    feats = audio_features(audio, subject)
    motion = motion_from_features(motion_model, subject, feats, controls)
    render = _renderer(subject, avatar, motion)
    faces = FaceMetrics()
    opening = np.full(len(motion), np.nan)
    for i in progress(range(len(motion)), desc="eval (other audio)", unit="frame"):
        big = metric_size(render(i))
        box = faces.face_box(big)
        if box is not None:
            opening[i] = inner_lip_opening(faces.landmarks(big, box))
    closed, spread, real_speed = subject_mouth_levels(subject, faces)
    speech = feats.vad > 0.5
    pauses = pause_frames(feats.vad, subject.fps)
    is_open = opening > closed + OPEN_MARGIN * spread
    moves = np.abs(np.diff(opening))[speech[1:] & speech[:-1]]
    moves = moves[np.isfinite(moves)]
    return {"driver": "audio", "audio": str(audio), "frames": len(motion),
            "silence_frames": int(pauses.sum()),
            "silence_mouth_open": round(float(is_open[pauses].mean()), 4) if pauses.any() else None,
            "speech_mouth_motion": round(float(moves.mean() / real_speed), 4) if len(moves) and real_speed > 0
            else None,
            "faces_found": round(float(np.isfinite(opening).mean()), 4), "closed_px": round(closed, 2),
            "lookahead_ms": motion.meta["lookahead_ms"]}


def pause_frames(vad: np.ndarray, fps: float) -> np.ndarray:
    """(F,) bool: frames inside non-speech runs of at least PAUSE_MIN_S, after their first PAUSE_SKIP_S."""
    from scipy import ndimage

    out = np.zeros(len(vad), bool)
    runs, _ = ndimage.label(vad < 0.5)
    for (run,) in ndimage.find_objects(runs):
        if run.stop - run.start >= PAUSE_MIN_S * fps:
            out[run.start + int(round(PAUSE_SKIP_S * fps)):run.stop] = True
    return out


def subject_mouth_levels(subject: Subject, faces: FaceMetrics) -> tuple[float, float, float]:
    """(closed level px, 10th-90th percentile range px, mean change per frame during speech px) of the
    subject's real mouth, over up to REAL_FRAMES contiguous frames of its video."""
    n = min(subject.n_frames, REAL_FRAMES)
    start = max(0, (subject.n_frames - n) // 2)
    opening = np.full(n, np.nan)
    for k in progress(range(n), desc="subject's own mouth", unit="frame"):
        big = metric_size(subject.frame(start + k))
        box = faces.face_box(big)
        if box is not None:
            opening[k] = inner_lip_opening(faces.landmarks(big, box))
    vad = subject.audio_features.vad[start:start + n] > 0.5
    moves = np.abs(np.diff(opening))[vad[1:] & vad[:-1]]
    ok = opening[np.isfinite(opening)]
    p10, p90 = np.percentile(ok, [10, 90])
    return float(p10), float(p90 - p10), float(np.nanmean(moves))
