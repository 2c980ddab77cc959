"""``avatar eval``: render the validation frames at their tracked expression and pose, compare with the real ones.

Metrics (one JSON object, ``fit/eval.json``):

- ``psnr``: full frame, dB, mean over frames; ``psnr_head``: inside the head and
  neck (head, mouth and eye labels, and the torso label in the head box grown
  down to the neck), as head-only papers report;
- ``ssim``: full frame (``pytorch-msssim``, 11-tap Gaussian window);
- ``lmd``: mouth landmark distance, pixels at 512x512 (frames of another size
  are resized to 512 first, so numbers compare across presets);
- ``csim``: identity similarity (see :mod:`avatar.fit.metrics`);
- ``mouth_corr``: Pearson correlation over time of the inner-lip opening of the
  rendered and the real frames (dlib's points 60-67, in the real frame's box);
  with tracked expressions it is the ceiling for the audio-driven number;
- ``mouth_std_ratio``: the rendered opening's standard deviation over time, over
  the real one's: how far the rendered mouth opens and closes (1 = as far);
- ``frames``, ``render_fps``: frames judged, and renders per second (placement,
  rasterisation and compositing, no gradients) on this machine, timed in a
  separate steady-state pass over up to :data:`FPS_FRAMES` frames (after a
  warm-up, nothing else running in between: what a viewer gets);
- ``psnr_mouth``, ``psnr_face``: inside the lips-and-mouth region, and in the
  rest of the head region, to see where the error is;
- ``psnr_live_background``: full frame, with the avatar composited over the real
  frame's own background where that frame shows background (the plate where the
  person is), as ``avatar render --paste-back`` shows it over the source video:
  the avatar's error without the studio's (a static plate cannot know what a
  screen behind the speaker shows next);
- ``psnr_plate_ceiling``: full frame, the real frame's own person (every pixel
  not labelled background) over the plate: what a perfect avatar would score in
  ``psnr``, so ``psnr`` can never exceed it. Where the background changes (a
  studio screen, a passer-by), it says how much of the error is the plate's.

It also writes ``fit/eval.mp4``: real | rendered | error, with the sound.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from pytorch_msssim import ssim

from avatar.core.errors import UserError
from avatar.core.progress import progress
from avatar.fit.data import TrainingFrames, head_and_neck
from avatar.fit.metrics import FaceMetrics, inner_lip_opening, lmd_of, mouth_corr, mouth_std_ratio, psnr
from avatar.fit.video import SideBySideWriter
from avatar.model.frame import render_frame
from avatar.model.store import fit_dir, load_avatar
from preprocess.segmentation import LABEL_BACKGROUND
from preprocess.subject import Subject

METRIC_SIZE = 512
"""LMD is measured on frames of this side (the papers' 512x512)."""
FPS_FRAMES = 50
"""Frames rendered back to back for ``render_fps``."""
FPS_WARMUP = 3
"""Renders before the timing starts (kernel loading, first allocations)."""


def evaluate(root: str | Path, *, video: bool = True, frames: int | None = None) -> dict:
    """The eval metrics of the fitted avatar in the subject folder ``root`` (and its side-by-side video).

    Args:
        video: also write ``fit/eval.mp4``.
        frames: judge only this many validation frames, evenly spread (None: all).
    """
    subject = Subject(root)
    model, _ = load_avatar(subject)
    val = pick_frames(subject, frames)
    t = subject.tracking
    verts, viewmats = torch.from_numpy(t.verts), torch.from_numpy(t.viewmats)
    expr = torch.from_numpy(t.expr.astype(np.float32))
    K = torch.from_numpy(t.K(subject.size))
    torso = torch.from_numpy(subject.torso.affine)  # the validation frames' tracked shoulders, like their pose
    plate = torch.from_numpy(subject.background().astype(np.float32) / 255.0)
    plate_picture = to_picture(plate)
    data = TrainingFrames(subject)
    faces = FaceMetrics()
    rows = []
    out = fit_dir(root)
    contiguous = len(val) == len(subject.val_frames)  # a subset's frames skip, so its sound would not match
    audio = subject.paths.audio if subject.paths.audio.exists() and contiguous else None
    writer = SideBySideWriter(out / "eval.mp4", subject.size, subject.fps, audio=audio,
                              audio_start_s=float(val[0]) / subject.fps) if video else None
    with torch.no_grad(), (writer if writer is not None else contextlib.nullcontext()):
        for i in progress(val, desc="eval", unit="frame"):
            i = int(i)
            out_i = render_frame(model, verts[i], viewmats[i], K, subject.size, None, expr=expr[i], torso_affine=torso[i])
            frame = data[i]
            shown_background = torch.from_numpy(frame.labels == LABEL_BACKGROUND)[..., None]
            live = torch.where(shown_background, torch.from_numpy(frame.image).float() / 255.0, plate)
            rendered = to_picture(out_i.rgb + (1.0 - out_i.alpha) * plate)
            rows.append(frame_metrics(frame, rendered, faces))
            rows[-1]["psnr_live_background"] = psnr(frame.image, to_picture(out_i.rgb + (1.0 - out_i.alpha) * live))
            rows[-1]["psnr_plate_ceiling"] = psnr(frame.image, np.where(shown_background.numpy(), plate_picture,
                                                                        frame.image))
            if writer is not None:
                writer.write(frame.image, rendered)
    result = summarise(rows)
    render = lambda i: render_frame(model, verts[i], viewmats[i], K, subject.size, plate, expr=expr[i],  # noqa: E731
                                    torso_affine=torso[i])
    result.update(frames=len(rows), render_fps=round(render_fps(render, [int(i) for i in val]), 1),
                  size=subject.size, gaussians=len(model))
    return result


def to_picture(rgb: torch.Tensor) -> np.ndarray:
    """(S, S, 3) uint8 of a float RGB image in [0, 1]."""
    return (rgb.clamp(0, 1) * 255).round().byte().numpy()


def pick_frames(subject: Subject, frames: int | None) -> np.ndarray:
    """The validation frames to judge: all, or ``frames`` of them evenly spread; UserError when there are none."""
    val = subject.val_frames
    if len(val) == 0:
        raise UserError(f"{subject.paths.root} has no validation frames to judge the avatar on",
                        "preprocess it again with --set preprocess.val_fraction=0.1 (the default)")
    if frames is not None and len(val) > frames:
        val = val[np.unique(np.linspace(0, len(val) - 1, frames).round().astype(int))]
    return val


@torch.no_grad()
def render_fps(render, frames: list[int]) -> float:
    """Steady-state frames per second of ``render(i)`` over up to FPS_FRAMES of ``frames`` (cycled)."""
    order = [frames[k % len(frames)] for k in range(FPS_WARMUP + FPS_FRAMES)]
    for i in order[:FPS_WARMUP]:
        render(i)
    t0 = time.perf_counter()
    for i in order[FPS_WARMUP:]:
        render(i)
    return FPS_FRAMES / (time.perf_counter() - t0)


def frame_metrics(frame, rendered: np.ndarray, faces: FaceMetrics) -> dict:
    """One frame's metrics (psnr, psnr_head, psnr_mouth, psnr_face, ssim, lmd, csim) of (S, S, 3) uint8 ``rendered``."""
    real = frame.image
    head = head_and_neck(frame)
    mouth = frame.mouth
    a = torch.from_numpy(real).permute(2, 0, 1)[None].float() / 255.0
    b = torch.from_numpy(rendered).permute(2, 0, 1)[None].float() / 255.0
    big_real, big_rendered = metric_size(real), metric_size(rendered)
    pair = faces.landmark_pair(big_real, big_rendered)
    return {"psnr": psnr(real, rendered), "psnr_head": psnr(real, rendered, head),
            "psnr_mouth": psnr(real, rendered, mouth) if mouth.any() else None,
            "psnr_face": psnr(real, rendered, head & ~mouth),
            "ssim": float(ssim(a, b, data_range=1.0)),
            "lmd": None if pair is None else lmd_of(*pair), "csim": faces.csim(big_real, big_rendered),
            "open_real": np.nan if pair is None else inner_lip_opening(pair[0]),
            "open_rendered": np.nan if pair is None else inner_lip_opening(pair[1])}


def metric_size(image: np.ndarray) -> np.ndarray:
    """``image`` resized to METRIC_SIZE square (as is when it already is)."""
    if image.shape[0] == METRIC_SIZE:
        return image
    return cv2.resize(image, (METRIC_SIZE, METRIC_SIZE), interpolation=cv2.INTER_CUBIC)


def summarise(rows: list[dict]) -> dict:
    """Means over frames of :func:`frame_metrics` rows (None entries skipped), plus ``lmd_frames``."""
    out = {}
    for key in ("psnr", "psnr_head", "psnr_face", "psnr_mouth", "psnr_live_background", "psnr_plate_ceiling", "ssim",
                "lmd", "csim"):
        if not any(key in r for r in rows):
            continue
        values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
        out[key] = round(float(np.mean(values)), 4) if values else None
    out["lmd_frames"] = sum(r["lmd"] is not None for r in rows)
    real, rendered = np.array([r["open_real"] for r in rows]), np.array([r["open_rendered"] for r in rows])
    corr = mouth_corr(real, rendered)
    out["mouth_corr"] = None if corr is None else round(corr, 4)
    ratio = mouth_std_ratio(real, rendered)
    out["mouth_std_ratio"] = None if ratio is None else round(ratio, 4)
    return out


POSE_DEG_PER_UNIT = 2.0
"""Retrieval baseline: 2 degrees of head rotation weigh like one unit (1 RMS) of an expression coefficient."""
POSE_MM_PER_UNIT = 5.0
"""...and 5 mm of head translation."""


def nearest_training_frames(subject: Subject, frames) -> np.ndarray:
    """For each of ``frames``, the training frame nearest in tracked expression and head pose.

    The retrieval baseline the fit must beat: it shows what replaying the
    training video gets without any model.
    """
    from scipy.spatial.transform import Rotation

    t = subject.tracking
    rot = Rotation.from_matrix(t.viewmats[:, :3, :3].astype(np.float64)).as_rotvec()
    features = np.c_[t.expr, np.degrees(rot) / POSE_DEG_PER_UNIT, t.viewmats[:, :3, 3] * 1000.0 / POSE_MM_PER_UNIT]
    train = subject.train_frames
    d = ((features[np.asarray(frames)][:, None] - features[train][None]) ** 2).sum(-1)
    return train[d.argmin(1)]


def retrieval_psnr(subject: Subject, frames) -> float:
    """Mean full-frame PSNR, dB, of the nearest training frames (:func:`nearest_training_frames`) as predictions."""
    nearest = nearest_training_frames(subject, frames)
    return float(np.mean([psnr(subject.frame(int(i)), subject.frame(int(j))) for i, j in zip(frames, nearest)]))


def plate_psnr(subject: Subject, frames) -> float:
    """Mean full-frame PSNR, dB, of the background plate alone as the prediction: what an avatar that
    learnt nothing (and draws nothing) gets, the floor every fit must clear."""
    plate = subject.background()
    return float(np.mean([psnr(subject.frame(int(i)), plate) for i in frames]))
