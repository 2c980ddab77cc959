"""Atomic file writing and the matching readers.

Every output of the project is written to a temporary sibling and renamed onto
its final name only once it is complete, so an interrupted run never leaves a
file that looks finished. The temporary name keeps the suffix
(``tracking.tmp.npz``), because OpenCV, soundfile and NumPy pick the format
from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from avatar.core.errors import UserError

if TYPE_CHECKING:
    import numpy as np


def temporary_sibling(path: Path) -> Path:
    """``dir/name.tmp.ext`` for ``dir/name.ext`` (the suffix stays last)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` only when the block succeeds.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (created if missing) for the block; waits for other holders.

    For a file that processes make on demand and share, such as a subject's motion
    model: two renders of one subject at once (``avatar batch``) must not both write
    it. An advisory ``flock``, released by the kernel when the holder dies, so a
    killed process never leaves it locked.
    """
    import fcntl

    fd = os.open(lock_file, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON (indented) atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write an uncompressed .npz atomically."""
    import numpy as np  # deferred, like OpenCV below: config loading writes text only

    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def write_image(path: str | os.PathLike, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an (H, W, 3) uint8 RGB or (H, W) uint8 image atomically; format from the suffix."""
    import cv2  # deferred: config loading must not import OpenCV
    import numpy as np

    path = Path(path)
    bgr = image[..., ::-1] if image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix == ".jpg" else \
        [cv2.IMWRITE_PNG_COMPRESSION, 1]
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(bgr), params):
            raise OSError(f"could not write {path}")


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an .npz file, loaded (the file is closed again)."""
    import numpy as np

    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB for colour files, (H, W) uint8 for single-channel ones."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"cannot read {path}: missing or corrupt",
                        "re-run `avatar preprocess` on this folder to rebuild it")
    return img[..., ::-1].copy() if img.ndim == 3 else img


def fresh_dir(path: str | os.PathLike) -> Path:
    """An empty ``<path>.tmp`` folder to fill and then :func:`commit_dir` onto ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit_dir(tmp: Path, path: Path) -> None:
    """Replace folder ``path`` by the finished folder ``tmp``."""
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
