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


def damaged_outputs(root: Path, recorded: object, limit: int = 3) -> list[str]:
    """Problems of recorded outputs that are no longer as written, each naming the file (empty: whole).

    At most ``limit`` problems are listed per folder, then how many more there are.
    ``recorded`` comes from a JSON file a user may have edited: any other shape
    than :func:`describe_outputs` writes is itself reported as a problem.
    """
    if not _well_formed(recorded):
        return ["the stage's record of its outputs is damaged"]
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


def output_snapshot(outputs: list[Path]) -> dict[str, tuple]:
    """Identity of each output right now: (inode, mtime ns, size) of a file or folder; missing ones absent.

    Taken before a stage runs and compared after it failed: equal means it
    replaced nothing (every output is written to a new file and renamed, so a
    replaced one has a new inode), and its old record still holds.
    """
    snap = {}
    for path in outputs:
        try:
            st = Path(path).stat()
        except FileNotFoundError:
            continue
        snap[str(path)] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return snap


def _well_formed(recorded: object) -> bool:
    if not isinstance(recorded, dict):
        return False
    for want in recorded.values():
        if not isinstance(want, dict):
            return False
        if "files" in want and not (isinstance(want["files"], dict)
                                    and all(isinstance(v, int) for v in want["files"].values())):
            return False
        if "files" not in want and not isinstance(want.get("size"), int):
            return False
    return True


def _file_sizes(folder: Path) -> dict[str, int]:
    with os.scandir(folder) as it:
        return {e.name: e.stat().st_size for e in sorted(it, key=lambda e: e.name) if e.is_file()}
