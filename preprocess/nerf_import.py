"""ER-NeRF / AD-NeRF / RAD-NeRF dataset folders as preprocessing input.

Those projects preprocess a video into a folder holding (among others)
``ori_imgs/<i>.jpg`` (every frame at 25 fps, numbered from 0), ``aud.wav``
(16 kHz speech), ``transforms_train.json`` / ``transforms_val.json`` (their
face tracking), ``parsing/``, ``bc.jpg`` and ``aud*.npy`` (audio features of
models we do not use). Users who already have such a folder often no longer
have the original video, so ``avatar preprocess FOLDER`` accepts it: the
original frames are packed, without re-encoding, into one video file inside
the subject folder and the audio is taken from ``aud.wav``; every stage then
runs as for a video. Their tracking, parsing and background are not reused:
ours is what the rest of the pipeline is tested against (their focal length is
kept in the manifest for comparison).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from avatar.core.errors import UserError
from avatar.core.files import atomic_path
from avatar.core.media import ffmpeg_reason, run_ffmpeg

log = logging.getLogger("avatar.preprocess")

NERF_FPS = 25.0  # every one of these projects resamples its video to 25 fps
FRAME_DIR = "ori_imgs"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class NerfFolder:
    """A validated ER-NeRF / AD-NeRF style dataset folder."""

    root: Path
    """The folder itself."""
    frames: list[Path]
    """(F,) original frames in time order: ori_imgs/<first>.<ext> ... contiguous numbers."""
    first_number: int
    """Number in the name of the first frame (0 in ER-NeRF and AD-NeRF)."""
    audio: Path | None
    """aud.wav, or None when the folder has none."""
    focal_px: float | None
    """Their tracker's focal length from transforms_train.json, pixels; None if absent."""

    @property
    def pattern(self) -> str:
        """ffmpeg image-sequence pattern of the frames, e.g. ".../ori_imgs/%d.jpg"."""
        return str(self.root / FRAME_DIR / f"%d{self.frames[0].suffix}")

    def fingerprint(self) -> str:
        """Identity of the dataset: frame names and sizes, first and last frame bytes, audio."""
        h = hashlib.sha1(str(len(self.frames)).encode())
        for f in self.frames:
            h.update(f"{f.name}:{f.stat().st_size};".encode())
        for f in (self.frames[0], self.frames[-1], self.audio):
            if f is not None:
                h.update(f.read_bytes()[: 1 << 20])
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """What the manifest records about the import."""
        return {"format": "nerf-dataset", "folder": str(self.root.resolve()),
                "frames": len(self.frames), "fps": NERF_FPS,
                "audio": str(self.audio.resolve()) if self.audio else None,
                "their_focal_px": self.focal_px}


def is_nerf_folder(path: Path) -> bool:
    """True for a folder that has an ``ori_imgs`` sub-folder."""
    return Path(path).is_dir() and (Path(path) / FRAME_DIR).is_dir()


def read_nerf_folder(path: Path) -> NerfFolder:
    """Validate a dataset folder and list its frames.

    Raises UserError for a folder without ``ori_imgs/``, without numbered
    images in it, with mixed image types, or with a gap in the numbering.
    """
    root = Path(path)
    if not is_nerf_folder(root):
        raise UserError(f"{root} is a folder, not a video, and has no {FRAME_DIR}/ sub-folder",
                        "give a video file, or an ER-NeRF / AD-NeRF dataset folder "
                        f"(with {FRAME_DIR}/0.jpg, 1.jpg, ... and aud.wav)")
    numbered: dict[int, Path] = {}
    for f in (root / FRAME_DIR).iterdir():
        m = re.fullmatch(r"(\d+)", f.stem)
        if m and f.suffix.lower() in IMAGE_SUFFIXES:
            numbered[int(m.group(1))] = f
    if not numbered:
        raise UserError(f"{root / FRAME_DIR} holds no numbered frames (0.jpg, 1.jpg, ...)",
                        "point at the dataset folder whose ori_imgs/ holds the original frames")
    suffixes = {f.suffix for f in numbered.values()}
    if len(suffixes) > 1:
        raise UserError(f"{root / FRAME_DIR} mixes image types {sorted(suffixes)}",
                        "keep one type of numbered frame in ori_imgs/")
    first, last = min(numbered), max(numbered)
    missing = [i for i in range(first, last + 1) if i not in numbered]
    if missing:
        raise UserError(f"{root / FRAME_DIR} is missing frame {missing[0]}"
                        + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
                        "restore the missing frames (the numbering must have no gaps)")
    audio = root / "aud.wav"
    return NerfFolder(root=root, frames=[numbered[i] for i in range(first, last + 1)],
                      first_number=first, audio=audio if audio.is_file() else None,
                      focal_px=_their_focal(root))


def _their_focal(root: Path) -> float | None:
    f = root / "transforms_train.json"
    try:
        value = json.loads(f.read_text()).get("focal_len")
        return float(value) if value is not None else None
    except (OSError, ValueError, AttributeError):
        return None


def pack_frames(folder: NerfFolder, out: Path) -> Path:
    """Pack the frames into ``out`` (.mkv) at 25 fps without re-encoding them.

    JPEG frames become an MJPEG stream and PNG frames a PNG stream by stream copy,
    so no pixel changes. Written to a temporary name and renamed, so an existing
    ``out`` is always complete; it is reused when present.
    """
    if out.exists():
        return out
    if folder.audio is None:
        log.warning("%s has no aud.wav: preprocessing runs without audio (pass --audio FILE "
                    "if the speech is elsewhere)", folder.root)
    with atomic_path(out) as tmp:
        result = run_ffmpeg(["-y", "-framerate", str(NERF_FPS), "-start_number", str(folder.first_number),
                             "-i", folder.pattern, "-frames:v", str(len(folder.frames)), "-c:v", "copy", tmp])
        if result.returncode != 0 or not tmp.exists():
            raise UserError(f"could not read the frames in {folder.root / FRAME_DIR}: {ffmpeg_reason(result.stderr)}",
                            "check that the images open in an image viewer and all have the same size")
    return out
