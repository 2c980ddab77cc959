"""The preprocessing stages: each reads what earlier stages wrote and writes its own files.

Every stage is a function ``run(ctx)`` that takes a :class:`StageContext` and
writes its outputs atomically (to a temporary name, renamed at the end), so an
interrupted stage leaves nothing that looks finished. The order, caching and
resume logic live in ``preprocess/pipeline.py``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from avatar.core.errors import UserError
from avatar.core.files import atomic_path, commit_dir, fresh_dir, read_image, write_image, write_json, write_npz
from avatar.core.progress import progress
from preprocess.config import STAGE_NAMES, PreprocessConfig
from preprocess.subject import FRAME_PATTERN, LABEL_PATTERN, SubjectPaths
from preprocess.subject_data import Landmarks, Tracking, load_npz

log = logging.getLogger("avatar.preprocess")


@dataclass
class StageContext:
    """What a stage needs: where things are, the config, and the user's inputs."""

    paths: SubjectPaths
    cfg: PreprocessConfig
    video: Path
    """The user's video file."""
    audio: Path | None
    """A separate audio file for the video (e.g. a .wav beside an mp4 without sound), or None."""

    @property
    def video_meta(self) -> dict:
        return json.loads(self.paths.video_info.read_text())

    @property
    def n_frames(self) -> int:
        return int(self.video_meta["frames"])

    def read_frame(self, i: int) -> np.ndarray:
        return read_image(self.paths.frame(i))

    def read_labels(self, i: int) -> np.ndarray:
        return read_image(self.paths.label(i))

    def landmarks(self) -> Landmarks:
        return load_npz(Landmarks, self.paths.landmarks)

    def tracking(self) -> Tracking:
        return load_npz(Tracking, self.paths.tracking)


# ---------------------------------------------------------------- 1. decode
def run_decode(ctx: StageContext) -> None:
    """Frames at the working fps and size as JPEG, audio as 16 kHz mono wav, video.json."""
    from preprocess import decode

    cfg = ctx.cfg.decode
    info = decode.probe_video(ctx.video, cfg)
    crop = decode.choose_crop(ctx.video, info, cfg)
    tmp = fresh_dir(ctx.paths.frames)
    n = 0
    for frame in decode.iter_frames(ctx.video, info, crop, cfg, desc="decode"):
        write_image(tmp / FRAME_PATTERN.format(n), frame, jpeg_quality=ctx.cfg.jpeg_quality)
        n += 1
    if n == 0:
        raise UserError(f"no frames could be decoded from {ctx.video}",
                        "check that the file plays in a video player; re-encode it with ffmpeg if not")
    commit_dir(tmp, ctx.paths.frames)

    audio_source = ctx.audio or ctx.video
    wav = decode.decode_audio(audio_source, cfg.audio_sample_rate)
    if wav is not None and cfg.max_duration_s is not None:
        wav = wav[: int(round(n / cfg.fps * cfg.audio_sample_rate))]
    if ctx.paths.audio.exists():
        ctx.paths.audio.unlink()
    if wav is None:
        log.warning("%s has no audio track: fitting works, but audio features (and lip-sync "
                    "training later) are skipped. Pass --audio FILE if the sound is in a separate file.",
                    audio_source)
    else:
        with atomic_path(ctx.paths.audio) as tmp_wav:
            sf.write(tmp_wav, wav, cfg.audio_sample_rate, subtype="FLOAT")
    write_json(ctx.paths.video_info, {
        "source": str(Path(ctx.video).resolve()),
        "audio_source": str(Path(audio_source).resolve()) if wav is not None else None,
        "source_info": info.to_dict(),
        "crop": crop.to_dict(),
        "frames": n,
        "fps": cfg.fps,
        "size": cfg.size,
        "has_audio": wav is not None,
        "audio_sample_rate": cfg.audio_sample_rate if wav is not None else None,
        "audio_duration_s": (len(wav) / cfg.audio_sample_rate) if wav is not None else None,
    })


# ---------------------------------------------------------------- 2. landmarks
def run_landmarks(ctx: StageContext) -> None:
    """MediaPipe FaceMesh on every frame; fails only when too few usable frames remain."""
    from preprocess.landmarks import detect_landmarks

    n = ctx.n_frames
    lm = detect_landmarks((ctx.read_frame(i) for i in range(n)), n, ctx.cfg.landmarks)
    check_usable_frames(lm.valid, lm.n_faces, ctx.cfg.min_usable_fraction, ctx.cfg.min_usable_frames)
    write_npz(ctx.paths.landmarks, **lm.arrays())


def check_usable_frames(valid: np.ndarray, n_faces: np.ndarray, min_fraction: float,
                        min_frames: int) -> None:
    """Raise a UserError naming the cause when too few frames show exactly one face."""
    n = len(valid)
    usable = int(valid.sum())
    if usable >= min_frames and usable >= min_fraction * n:
        skipped = n - usable
        if skipped:
            log.warning("%d of %d frames have no face or more than one face; they are "
                        "excluded from training.", skipped, n)
        return
    several = int((n_faces > 1).sum())
    none = int((n_faces == 0).sum())
    if several >= none:
        raise UserError(
            f"{several} of {n} frames show more than one face; only {usable} frames are usable",
            "use a video of one person alone in the frame (crop it, or cut the parts with others)")
    raise UserError(
        f"no face was found in {none} of {n} frames; only {usable} frames are usable "
        f"(need at least {max(min_frames, int(np.ceil(min_fraction * n)))})",
        "use a video where your face is visible, lit and facing the camera most of the time")


# ---------------------------------------------------------------- 3. tracking
def run_tracking(ctx: StageContext) -> None:
    """Person-specific face model, focal length, stabilised pose and expressions."""
    from preprocess.tracking import fit_tracking

    lm = ctx.landmarks()
    size = int(ctx.video_meta["size"])
    tracking = fit_tracking(lm.points, lm.valid, size, size, ctx.cfg.tracking)
    write_npz(ctx.paths.tracking, **tracking.arrays())


# ---------------------------------------------------------------- 4. segmentation
def run_segmentation(ctx: StageContext) -> None:
    """Per-frame label maps (background, head, neck/torso, mouth interior, eyes) as PNG."""
    from preprocess.segmentation import Segmenter

    lm = ctx.landmarks()
    n = ctx.n_frames
    tmp = fresh_dir(ctx.paths.labels)
    with Segmenter(ctx.cfg.segmentation) as segment:
        for i in progress(range(n), total=n, desc="segmentation", unit="frame"):
            points = lm.points[i, :, :2] if lm.valid[i] else None
            write_image(tmp / LABEL_PATTERN.format(i), segment(ctx.read_frame(i), points))
    commit_dir(tmp, ctx.paths.labels)


# ---------------------------------------------------------------- 5. background
def run_background(ctx: StageContext) -> None:
    """One static background plate, holes inpainted."""
    from preprocess.background import estimate_background

    plate, observed = estimate_background(ctx.read_frame, ctx.read_labels, ctx.n_frames,
                                          ctx.cfg.background)
    write_image(ctx.paths.background, plate)
    write_image(ctx.paths.background_observed, observed.astype(np.uint8) * 255)


# ---------------------------------------------------------------- 6. torso
def run_torso(ctx: StageContext) -> None:
    """torso.npz: the shoulders' motion in the image per frame (an affine map)."""
    from preprocess.subject_data import TorsoTrack
    from preprocess.torso import neck_column, shoulder_region, track_shoulders

    cfg, tr = ctx.cfg.torso, ctx.tracking()
    valid = np.flatnonzero(tr.valid)
    sample = valid[np.unique(np.linspace(0, len(valid) - 1, cfg.region_frames).round().astype(int))]
    region = shoulder_region(ctx.read_labels, sample, neck_column(tr.landmarks2d, tr.valid), cfg)
    reference = int(valid[len(valid) // 2])
    affine, measured = track_shoulders(ctx.read_frame, ctx.n_frames, region, reference, cfg)
    if not measured.all():
        log.info("torso: the shoulders were matched in %d of %d frames; the others are interpolated",
                 int(measured.sum()), len(measured))
    write_npz(ctx.paths.torso, **TorsoTrack(affine, measured).arrays())


# ---------------------------------------------------------------- 7. audio features
def run_audio(ctx: StageContext) -> None:
    """Audio features at the video frame rate (and 100 Hz), or nothing without audio."""
    from preprocess.audio_features import compute_audio_features

    if not ctx.paths.audio.exists():
        log.warning("no audio: audio features skipped")
        if ctx.paths.audio_features.exists():
            ctx.paths.audio_features.unlink()
        return
    wav, sr = sf.read(ctx.paths.audio, dtype="float32")
    feats = compute_audio_features(wav, sr, ctx.n_frames, ctx.cfg.audio, fps=ctx.cfg.decode.fps)
    write_npz(ctx.paths.audio_features, **{k: np.asarray(v) for k, v in feats.items()})


# ---------------------------------------------------------------- 8. preview
def run_preview(ctx: StageContext) -> None:
    """preview.mp4: landmarks, fitted mesh, pose axes and masks over the frames, with sound."""
    from preprocess.preview import write_preview

    lm = ctx.landmarks()
    tr = ctx.tracking()
    size = int(ctx.video_meta["size"])
    wav = None
    if ctx.paths.audio.exists():
        wav, _ = sf.read(ctx.paths.audio, dtype="float32")
    write_preview(ctx.paths.preview, ctx.read_frame, ctx.read_labels, ctx.n_frames,
                  fps=float(ctx.video_meta["fps"]), landmarks2d=lm.points[..., :2],
                  mesh2d=tr.landmarks2d, viewmats=tr.viewmats, K=tr.K(size), valid=lm.valid,
                  audio_wav=wav, audio_sr=ctx.cfg.decode.audio_sample_rate)


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline and the earlier steps whose outputs it reads."""

    name: str
    """Its name in logs, records and ``--force``."""
    run: Callable[[StageContext], None]
    """Reads the earlier stages' files and writes this stage's outputs atomically."""
    deps: tuple[str, ...]
    """Stages whose outputs it reads: redoing one of them redoes this one."""
    config_sections: tuple[str, ...]
    """Parts of PreprocessConfig that change this stage's result."""
    outputs: Callable[[SubjectPaths], list[Path]]
    """Files and folders it writes; their sizes are recorded so later runs and ``Subject`` can tell they are whole."""


STAGES: tuple[Stage, ...] = (
    Stage("decode", run_decode, (), ("decode", "jpeg_quality"),
          lambda p: [p.frames, p.audio, p.video_info]),
    Stage("landmarks", run_landmarks, ("decode",),
          ("landmarks", "min_usable_fraction", "min_usable_frames"), lambda p: [p.landmarks]),
    Stage("tracking", run_tracking, ("landmarks",), ("tracking",), lambda p: [p.tracking]),
    Stage("segmentation", run_segmentation, ("landmarks",), ("segmentation",),
          lambda p: [p.labels]),
    Stage("background", run_background, ("segmentation",), ("background",),
          lambda p: [p.background, p.background_observed]),
    Stage("torso", run_torso, ("decode", "tracking", "segmentation"), ("torso",), lambda p: [p.torso]),
    Stage("audio", run_audio, ("decode",), ("audio",), lambda p: [p.audio_features]),
    Stage("preview", run_preview, ("tracking", "segmentation"), (), lambda p: [p.preview]),
)
if tuple(s.name for s in STAGES) != STAGE_NAMES:
    raise RuntimeError("preprocess.config.STAGE_NAMES must list the STAGES in their order")
