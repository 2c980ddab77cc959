"""Where the project's real test and benchmark data lives.

The data is never part of the repository or the package: it sits in
``../shared/data`` beside the checkout (see SOURCES.md there). Tests and
benchmarks read it from there and skip, or say so, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout this package runs from (meaningful for a source checkout, not for a wheel)."""


def shared_data_dir() -> Path:
    """``$AVATAR_DATA`` if set, else ``../shared/data`` beside the checkout (it may not exist)."""
    env = os.environ.get("AVATAR_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path of one file or folder of the shared data (it may not exist)."""
    return shared_data_dir().joinpath(*parts)
