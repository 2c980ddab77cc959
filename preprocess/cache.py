"""What a finished stage wrote, recorded so a later run can tell whether it is still whole.

A stage's record (``.stages/<name>.json``) lists its outputs as they were when
it finished: a file by its size in bytes, a folder by the size of each file in
it. A file that is missing, or whose size changed (truncated, overwritten,
emptied), makes the stage count as not done. Sizes are cheap to check (one
``stat`` per file, a few milliseconds for thousands of frames) and catch what
actually happens to folders: deleted files, half-copied folders, disks that
filled up. (A same-size overwrite is not caught; hashing every frame on every
run would cost seconds.)
"""

from __future__ import annotations

import os
from pathlib import Path


def describe_outputs(root: Path, outputs: list[Path]) -> dict[str, dict]:
    """``{name relative to root: {"size": bytes} | {"files": {name: bytes}}}`` of the outputs that exist."""
    found: dict[str, dict] = {}
    for path in outputs:
        rel = Path(path).relative_to(root).as_posix()
        if path.is_dir():
            found[rel] = {"files": _file_sizes(path)}
        elif path.is_file():
            found[rel] = {"size": path.stat().st_size}
    return found


def damaged_outputs(root: Path, recorded: dict[str, dict], limit: int = 3) -> list[str]:
    """Problems of recorded outputs that are no longer as written, each naming the file (empty: whole).

    At most ``limit`` problems are listed per folder, then how many more there are.
    """
    problems = []
    for rel, want in recorded.items():
        path = root / rel
        if "files" in want:
            if not path.is_dir():
                problems.append(f"{rel}/ is missing")
                continue
            have = _file_sizes(path)
            bad = [f"{rel}/{name} is missing" if name not in have else
                   f"{rel}/{name} is damaged ({have[name]} bytes, {size} were written)"
                   for name, size in want["files"].items() if have.get(name) != size]
            problems += bad[:limit] + ([f"... and {len(bad) - limit} more in {rel}/"] if len(bad) > limit else [])
        elif not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.stat().st_size != want["size"]:
            problems.append(f"{rel} is damaged ({path.stat().st_size} bytes, {want['size']} were written)")
    return problems


def _file_sizes(folder: Path) -> dict[str, int]:
    with os.scandir(folder) as it:
        return {e.name: e.stat().st_size for e in sorted(it, key=lambda e: e.name) if e.is_file()}
