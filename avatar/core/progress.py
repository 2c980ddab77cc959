"""Progress bars shared by every long step.

One switch (set from ``--quiet`` by the CLI, or ``AVATAR_QUIET=1``) turns them
off; they also stay off when stderr is not a terminal unless forced, so logs in
CI stay readable.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _enabled() -> bool:
    if os.environ.get("AVATAR_QUIET") == "1":
        return False
    if os.environ.get("AVATAR_PROGRESS") == "1":
        return True
    return sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it") -> Iterator[T] | tqdm:
    """A tqdm bar on stderr, disabled when quiet. Use like ``tqdm``."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not _enabled(),
                dynamic_ncols=True, leave=False, file=sys.stderr)
