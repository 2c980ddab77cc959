"""The subject folder: layout, manifest, and a loader that training streams from.

The layout is documented in ``docs/subject-format.md``; this module is the one
place that knows the file names. ``manifest.json`` is written last, only when
every stage has finished, so a folder without it is never mistaken for a
complete subject.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from avatar.errors import UserError

FORMAT_VERSION = 1
"""Bumped whenever a loader could misread an older folder."""

FRAME_PATTERN = "{:06d}.jpg"
LABEL_PATTERN = "{:06d}.png"


@dataclass(frozen=True)
class SubjectPaths:
    """Every file of a subject folder, by role."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def stages(self) -> Path:
        return self.root / ".stages"

    @property
    def imported_frames(self) -> Path:
        """The frames of an imported ER-NeRF / AD-NeRF dataset packed as one video (a cache)."""
        return self.stages / "imported_frames.mkv"

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    @property
    def audio(self) -> Path:
        return self.root / "audio.wav"

    @property
    def video_info(self) -> Path:
        return self.root / "video.json"

    @property
    def landmarks(self) -> Path:
        return self.root / "landmarks.npz"

    @property
    def tracking(self) -> Path:
        return self.root / "tracking.npz"

    @property
    def audio_features(self) -> Path:
        return self.root / "audio_features.npz"

    @property
    def background(self) -> Path:
        return self.root / "background.png"

    @property
    def background_observed(self) -> Path:
        return self.root / "background_observed.png"

    @property
    def preview(self) -> Path:
        return self.root / "preview.mp4"

    def frame(self, i: int) -> Path:
        return self.frames / FRAME_PATTERN.format(i)

    def label(self, i: int) -> Path:
        return self.labels / LABEL_PATTERN.format(i)


# ---------------------------------------------------------------- small I/O helpers
def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (tmp file + rename), so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed .npz atomically."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def write_image(path: Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an (H, W, 3) uint8 RGB or (H, W) uint8 image; format from the suffix."""
    bgr = image[..., ::-1] if image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix == ".jpg" else \
        [cv2.IMWRITE_PNG_COMPRESSION, 1]
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr), params):
        raise OSError(f"could not write {path}")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz file, loaded (the file is closed again)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB for colour files, (H, W) uint8 for single-channel ones."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"cannot read {path}: missing or corrupt",
                        "re-run `avatar preprocess` on this folder to rebuild it")
    return img[..., ::-1].copy() if img.ndim == 3 else img


# ---------------------------------------------------------------- loader
class Subject:
    """A finished subject folder, opened for reading.

    Frames and label maps are read from disk one at a time (``frame(i)``,
    ``labels(i)``), so a few minutes of 512x512 video never sit in RAM at once;
    the per-frame arrays (tracking, landmarks, audio features) are small and
    loaded on first use.
    """

    def __init__(self, root: str | Path):
        self.paths = SubjectPaths(Path(root))
        if not self.paths.manifest.exists():
            hint = "its preprocessing did not finish: run `avatar preprocess VIDEO --out " \
                f"{root}` again to resume" if self.paths.stages.exists() else \
                "run `avatar preprocess VIDEO --out FOLDER` to make one"
            raise UserError(f"{root} is not a finished subject folder (no manifest.json)", hint)
        self.manifest: dict[str, Any] = json.loads(self.paths.manifest.read_text())
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise UserError(f"{root} uses subject format {version}, this version reads {FORMAT_VERSION}",
                            "re-run `avatar preprocess` to rebuild it")

    @property
    def n_frames(self) -> int:
        return int(self.manifest["frames"])

    @property
    def size(self) -> int:
        return int(self.manifest["width"])

    def frame(self, i: int) -> np.ndarray:
        """(S, S, 3) uint8 RGB working frame ``i``."""
        return read_image(self.paths.frame(i))

    def labels(self, i: int) -> np.ndarray:
        """(S, S) uint8 label map of frame ``i`` (see preprocess.segmentation)."""
        return read_image(self.paths.label(i))

    def background(self) -> np.ndarray:
        """(S, S, 3) uint8 RGB static background plate."""
        return read_image(self.paths.background)

    @cached_property
    def tracking(self) -> dict[str, np.ndarray]:
        return read_npz(self.paths.tracking)

    @cached_property
    def landmarks(self) -> dict[str, np.ndarray]:
        return read_npz(self.paths.landmarks)

    @cached_property
    def audio_features(self) -> dict[str, np.ndarray] | None:
        if not self.paths.audio_features.exists():
            return None
        return read_npz(self.paths.audio_features)

    @property
    def train_frames(self) -> np.ndarray:
        """(N,) int64 indices of usable training frames (valid face, in the train split)."""
        return np.asarray(self.manifest["split"]["train"], dtype=np.int64)

    @property
    def val_frames(self) -> np.ndarray:
        """(N,) int64 indices of usable validation frames (the end of the clip)."""
        return np.asarray(self.manifest["split"]["val"], dtype=np.int64)
