"""The typed contents of a subject folder: what fitting, evaluation and rendering read.

Each class is one file of the folder (``docs/subject-format.md`` is the
reference), with shapes and units per field. F = frames, K = expression
components, H = F * r high-rate audio rows. Coordinates follow
:mod:`avatar.core.camera`. The same classes are what the preprocessing stages
produce, so a field is named and described once.
"""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from avatar.core.camera import intrinsics
from avatar.core.errors import UserError
from avatar.core.files import read_npz

T = TypeVar("T")


def _arrays_of(obj: Any) -> dict[str, np.ndarray]:
    return {f.name: np.asarray(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def load_npz(cls: type[T], path: Path, **extra: Any) -> T:
    """Build dataclass ``cls`` from an .npz whose keys are its fields; UserError when damaged."""
    try:
        arrays = read_npz(path)
    except FileNotFoundError:
        raise UserError(f"{path} is missing", "re-run `avatar preprocess` on this folder to rebuild it") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path} is damaged ({e.__class__.__name__})",
                        "re-run `avatar preprocess` on this folder to rebuild it") from None
    names = [f.name for f in dataclasses.fields(cls) if f.name not in extra]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)} (made by another version?)",
                        "re-run `avatar preprocess` on this folder to rebuild it")
    return cls(**{n: arrays[n] for n in names}, **extra)


@dataclass(frozen=True)
class Landmarks:
    """MediaPipe FaceMesh landmarks of a whole clip (``landmarks.npz``)."""

    points: np.ndarray
    """(F, 478, 3) float32: x, y working-frame pixels (centres at +0.5), z = MediaPipe depth x S (pixels, larger = farther); NaN where no face."""
    n_faces: np.ndarray
    """(F,) int8 distinct faces seen in each frame."""
    valid: np.ndarray
    """(F,) bool: exactly one face seen, the frames usable for training."""

    def __len__(self) -> int:
        return len(self.points)

    def arrays(self) -> dict[str, np.ndarray]:
        return _arrays_of(self)


@dataclass(frozen=True)
class Tracking:
    """Face model, camera and per-frame head pose and expression (``tracking.npz``)."""

    focal_px: float
    """Focal length, pixels; the principal point is the image centre (see :meth:`K`)."""
    viewmats: np.ndarray
    """(F, 4, 4) float32 camera-from-head (OpenCV), stabilised."""
    pnp_viewmats: np.ndarray
    """(F, 4, 4) float32 raw per-frame PnP baseline (mean shape, all landmarks)."""
    expr: np.ndarray
    """(F, K) float32 expression coefficients (1 unit = 1 RMS of the clip's motion)."""
    mean_shape: np.ndarray
    """(478, 3) float32 metres, head frame."""
    expr_basis: np.ndarray
    """(K, 478, 3) float32 metres per unit coefficient."""
    verts: np.ndarray
    """(F, 478, 3) float32 head-frame mesh per frame (mean + expr), metres."""
    landmarks2d: np.ndarray
    """(F, 478, 2) float32 reprojection of verts, pixels."""
    reproj_px: np.ndarray
    """(F,) float32 mean 2D error vs the detected landmarks, pixels (NaN where invalid)."""
    eye_open: np.ndarray
    """(F, 2) float32 lid gap / eye width, [:, 0] the subject's left eye (blink signal)."""
    mouth_open: np.ndarray
    """(F,) float32 inner-lip gap / mouth width."""
    valid: np.ndarray
    """(F,) bool: frames with exactly one face (the others are interpolated)."""

    def __post_init__(self):
        object.__setattr__(self, "focal_px", float(self.focal_px))

    @property
    def n_frames(self) -> int:
        return len(self.viewmats)

    @property
    def n_expr(self) -> int:
        return int(self.expr.shape[1])

    def K(self, width: int, height: int | None = None) -> np.ndarray:
        """(3, 3) float32 intrinsics for frames of ``width`` x ``height`` pixels."""
        return intrinsics(self.focal_px, width, height or width)

    def arrays(self) -> dict[str, np.ndarray]:
        return _arrays_of(self)


@dataclass(frozen=True)
class TorsoTrack:
    """The shoulders' motion in the image per frame (``torso.npz``; see :mod:`preprocess.torso`)."""

    affine: np.ndarray
    """(F, 2, 3) float32 ``[L | b]``: a shoulder point at working-frame pixel ``x`` where the shoulders
    usually are (centres at +0.5) is at ``L x + b`` in the frame; the usual place is the clip's median."""
    measured: np.ndarray
    """(F,) bool: False where the alignment failed and the motion was filled in from the neighbours."""

    def arrays(self) -> dict[str, np.ndarray]:
        return _arrays_of(self)


@dataclass(frozen=True)
class AudioFeatures:
    """Frame-aligned audio features (``audio_features.npz``; see :mod:`preprocess.audio_features`).

    Frame ``k`` covers ``[k / fps, (k + 1) / fps)`` s; high-rate row ``j`` is
    centred on ``(j + 0.5) / (fps * rows_per_frame)`` s.
    """

    mel: np.ndarray
    """(F, n_mels) float32 natural log of mel power."""
    mel_hi: np.ndarray
    """(H, n_mels) float32 the same at the high rate."""
    f0_hz: np.ndarray
    """(F,) float32 pitch, Hz, 0 where unvoiced."""
    f0_hi_hz: np.ndarray
    """(H,) float32 pitch at the high rate, Hz."""
    voicing: np.ndarray
    """(F,) float32 fraction of the frame's rows that are voiced, [0, 1]."""
    energy_db: np.ndarray
    """(F,) float32 RMS level, dB re full scale (floored at -100)."""
    energy_hi_db: np.ndarray
    """(H,) float32 RMS level at the high rate, dBFS."""
    vad: np.ndarray
    """(F,) float32 1 where someone speaks, else 0."""
    phone_post: np.ndarray
    """(F, P) float32 phone posteriors over ``preprocess.audio_features.PHONES``; rows sum to 1."""
    phone_post_hi: np.ndarray
    """(H, P) float32 the same at the high rate."""

    @property
    def n_frames(self) -> int:
        return len(self.mel)

    @property
    def rows_per_frame(self) -> int:
        return len(self.mel_hi) // max(1, len(self.mel))

    def arrays(self) -> dict[str, np.ndarray]:
        return _arrays_of(self)


@dataclass(frozen=True)
class Split:
    """Which frames train and which validate: validation is the end of the clip."""

    val_fraction: float
    """Share of the clip held out, from its end."""
    train: tuple[int, ...]
    """Indices of usable training frames (valid face, in the train part)."""
    val: tuple[int, ...]
    """Indices of usable validation frames."""

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        return cls(float(d["val_fraction"]), tuple(int(i) for i in d["train"]),
                   tuple(int(i) for i in d["val"]))

    def to_dict(self) -> dict:
        return {"val_fraction": self.val_fraction, "train": list(self.train), "val": list(self.val)}


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: the summary every later stage (and ``avatar inspect``) reads first.

    Written last by ``avatar preprocess``; its presence marks a finished folder.
    """

    format_version: int
    """Subject format; a loader refuses other versions."""
    created: str
    """When the manifest was written, ISO 8601 UTC."""
    source: str
    """Absolute path of the input video (or the packed frames of an imported dataset)."""
    audio_source: str | None
    """Absolute path of the file the audio came from; None without audio."""
    imported_from: dict | None
    """For an ER-NeRF / AD-NeRF dataset folder: {format, folder, frames, fps, audio, their_focal_px}."""
    frames: int
    """F, working frames."""
    fps: float
    """Working frame rate, frames per second."""
    duration_s: float
    """F / fps, seconds."""
    width: int
    """S, working frame width, pixels."""
    height: int
    """S, working frame height, pixels."""
    crop: dict
    """{x0, y0, side}: the square of the source, in its pixels, resized to S x S."""
    source_info: dict
    """The probe of the source video (see preprocess.decode.VideoInfo)."""
    tracked_fraction: float
    """Frames with exactly one face / all frames."""
    frames_no_face: int
    """Frames without a face (excluded from training)."""
    frames_several_faces: int
    """Frames with more than one face (excluded from training)."""
    reprojection_px: float | None
    """Mean landmark reprojection error of the fitted face over valid frames, pixels."""
    pose_jitter_deg: float
    """Mean frame-to-frame change of head angular velocity, stabilised, degrees."""
    pnp_pose_jitter_deg: float
    """The same for raw per-frame PnP, degrees."""
    focal_px: float
    """Focal length, pixels."""
    n_expr: int
    """K, expression components."""
    has_audio: bool
    """Whether the clip has sound (audio.wav and audio_features.npz exist)."""
    audio_sample_rate: int | None
    """Rate of audio.wav, Hz."""
    audio_feature_fps: float | None
    """Frame rate of the audio features (= fps), None without audio."""
    split: Split
    """Train / validation frame indices."""
    train_frames: int
    """len(split.train)."""
    val_frames: int
    """len(split.val)."""
    timings_s: dict
    """Seconds per stage, in the run that made each stage."""
    stage_runs: dict
    """{stage: run id} of the stage results this manifest describes; a stage redone since makes it stale."""

    SUMMARY = ("frames", "fps", "duration_s", "width", "height", "tracked_fraction",
               "reprojection_px", "pose_jitter_deg", "pnp_pose_jitter_deg", "focal_px",
               "train_frames", "val_frames", "audio_sample_rate", "audio_feature_fps",
               "frames_no_face", "frames_several_faces", "n_expr", "has_audio", "source",
               "imported_from", "format_version", "timings_s")
    """The fields ``avatar inspect`` reports, in order."""

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest.json") -> "Manifest":
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise UserError(f"{where} lacks {', '.join(missing)} (damaged, or made by another version)",
                            "re-run `avatar preprocess` on this folder to rebuild it")
        values = {n: d[n] for n in names}
        try:
            values["split"] = Split.from_dict(d["split"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where} is damaged (its split is not a {{val_fraction, train, val}} mapping)",
                            "re-run `avatar preprocess` on this folder to rebuild it") from None
        if not isinstance(values["stage_runs"], dict):
            raise UserError(f"{where} is damaged (stage_runs is not a mapping)",
                            "re-run `avatar preprocess` on this folder to rebuild it")
        return cls(**values)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["split"] = self.split.to_dict()
        return d

    def summary(self) -> dict:
        """The :data:`SUMMARY` fields as a plain dict."""
        return {k: getattr(self, k) for k in self.SUMMARY}
