"""The subject folder: layout, manifest, and a loader that training streams from.

The layout is documented in ``docs/subject-format.md``; this module is the one
place that knows the file names, and :class:`Subject` the one way fitting,
evaluation and rendering read a folder (the typed contents are in
:mod:`preprocess.subject_data`). ``manifest.json`` is written last, only when
every stage has finished, so a folder without it is never mistaken for a
complete subject.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from avatar.core.errors import UserError
from avatar.core.files import read_image
from preprocess.cache import damaged_outputs
from preprocess.subject_data import AudioFeatures, Landmarks, Manifest, Split, TorsoTrack, Tracking, load_npz

FORMAT_VERSION = 3
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
    def torso(self) -> Path:
        return self.root / "torso.npz"

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

    def stage_record(self, name: str) -> Path:
        """The record a finished stage leaves: its cache key and what it wrote."""
        return self.stages / f"{name}.json"

    def frame(self, i: int) -> Path:
        return self.frames / FRAME_PATTERN.format(i)

    def label(self, i: int) -> Path:
        return self.labels / LABEL_PATTERN.format(i)


# ---------------------------------------------------------------- loader
REBUILD = "re-run `avatar preprocess VIDEO --out {root}` to rebuild it (finished stages are kept)"


class Subject:
    """A finished subject folder, opened for reading.

    Opening checks that the folder is complete and whole: ``manifest.json``
    exists and parses, its format version is this one, and every file a stage
    recorded is still there at the size it was written (a missing or truncated
    file raises a UserError naming it). Frames and label maps are read from disk
    one at a time (``frame(i)``, ``labels(i)``), so minutes of 512x512 video never
    sit in RAM; the per-frame arrays (tracking, landmarks, audio features) are
    small and loaded on first use.
    """

    def __init__(self, root: str | Path):
        self.paths = SubjectPaths(Path(root))
        self.manifest: Manifest = self._read_manifest()
        problems = self.damage()
        if problems:
            raise UserError(f"{root} is damaged: {'; '.join(problems)}", REBUILD.format(root=root))

    def _read_manifest(self) -> Manifest:
        root, path = self.paths.root, self.paths.manifest
        if not path.exists():
            hint = "its preprocessing did not finish: run `avatar preprocess VIDEO --out " \
                f"{root}` again to resume" if self.paths.stages.exists() else \
                "run `avatar preprocess VIDEO --out FOLDER` to make one"
            raise UserError(f"{root} is not a finished subject folder (no manifest.json)", hint)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path} is damaged ({e.__class__.__name__}: {e})", REBUILD.format(root=root)) from None
        if not isinstance(data, dict):
            raise UserError(f"{path} is damaged (not a JSON object)", REBUILD.format(root=root))
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise UserError(f"{root} uses subject format {version}, this version reads {FORMAT_VERSION}",
                            REBUILD.format(root=root))
        return Manifest.from_dict(data, where=str(path))

    def damage(self) -> list[str]:
        """Problems that make the folder unusable, each naming a file (empty: the folder is whole).

        Every stage the manifest was built from must still have its record with the
        same run id (else it was redone or interrupted since), and every file that
        record lists must be there at its written size.
        """
        problems = []
        for name, run in self.manifest.stage_runs.items():
            path = self.paths.stage_record(name)
            try:
                rec = json.loads(path.read_text())
            except FileNotFoundError:
                problems.append(f"stage {name} was started again and did not finish (.stages/{name}.json is missing)")
                continue
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                problems.append(f".stages/{name}.json is damaged")
                continue
            if not isinstance(rec, dict) or rec.get("run") != run:
                problems.append(f"stage {name} was redone after manifest.json was written")
                continue
            problems += damaged_outputs(self.paths.root, rec.get("outputs", {}))
        return problems

    @property
    def n_frames(self) -> int:
        """F, working frames."""
        return self.manifest.frames

    @property
    def size(self) -> int:
        """S, side of the square working frames, pixels."""
        return self.manifest.width

    @property
    def fps(self) -> float:
        """Working frame rate, frames per second."""
        return self.manifest.fps

    def frame(self, i: int) -> np.ndarray:
        """(S, S, 3) uint8 RGB working frame ``i``."""
        return read_image(self.paths.frame(i))

    def labels(self, i: int) -> np.ndarray:
        """(S, S) uint8 label map of frame ``i`` (see preprocess.segmentation)."""
        return read_image(self.paths.label(i))

    def background(self) -> np.ndarray:
        """(S, S, 3) uint8 RGB static background plate."""
        return read_image(self.paths.background)

    def audio(self) -> tuple[np.ndarray, int] | None:
        """(T,) float32 mono waveform in [-1, 1] and its rate (Hz), or None without audio."""
        if not self.manifest.has_audio:
            return None
        import soundfile as sf

        wav, rate = sf.read(self.paths.audio, dtype="float32")
        return wav, int(rate)

    @cached_property
    def tracking(self) -> Tracking:
        return load_npz(Tracking, self.paths.tracking)

    @cached_property
    def torso(self) -> TorsoTrack:
        return load_npz(TorsoTrack, self.paths.torso)

    @cached_property
    def landmarks(self) -> Landmarks:
        return load_npz(Landmarks, self.paths.landmarks)

    @cached_property
    def audio_features(self) -> AudioFeatures | None:
        if self.manifest.audio_feature_fps is None:
            return None
        return load_npz(AudioFeatures, self.paths.audio_features)

    @property
    def split(self) -> Split:
        return self.manifest.split

    @property
    def train_frames(self) -> np.ndarray:
        """(N,) int64 indices of usable training frames (valid face, in the train split)."""
        return np.asarray(self.split.train, dtype=np.int64)

    @property
    def val_frames(self) -> np.ndarray:
        """(N,) int64 indices of usable validation frames (the end of the clip)."""
        return np.asarray(self.split.val, dtype=np.int64)
