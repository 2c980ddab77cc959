"""Shared test helpers: where the real data lives, and skipping when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def data_file(*parts: str) -> Path:
    """Path of a file in ../shared/data, or skip the test with the reason."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test data {path} is absent (it lives in ../shared/data beside the repo)")
    return path


def read_frames(*parts: str, step: int = 1, limit: int | None = None) -> list:
    """RGB frames (H, W, 3) uint8 of a video in ../shared/data: every ``step``-th, at most ``limit``."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(data_file(*parts))
    frames = []
    try:
        for i, frame in enumerate(reader):
            if limit is not None and len(frames) >= limit:
                break
            if i % step == 0:
                frames.append(frame)
    finally:
        reader.close()
    return frames
