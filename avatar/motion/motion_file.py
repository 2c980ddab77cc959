"""Motion files: per-frame expression, channels and head pose, as ``.json``, ``.csv`` or ``.npz``.

What ``avatar motion`` writes and ``avatar render --motion`` reads back, and
what other tools can use (named ARKit-style channels). Every format carries:

- ``fps`` and the frame count;
- the channels of :data:`avatar.motion.face.CHANNELS`, 0-1 on the subject's own range;
- head pose: ``head_pitch_deg, head_yaw_deg, head_roll_deg`` (extrinsic x-y-z
  Euler angles of the camera-from-head rotation, degrees) and ``head_x_m,
  head_y_m, head_z_m`` (the head's origin in camera coordinates, metres; the
  camera convention of :mod:`avatar.core.camera`);
- ``expr_0 .. expr_{K-1}``: the raw expression coefficients of the subject's
  face model (what rendering uses; the channels are derived from them).

``.json`` and ``.npz`` also keep ``meta`` (subject, audio, settings); ``.npz``
keeps the per-frame mesh ``verts`` (F, 478, 3) metres, head frame. A ``.csv``
has one header row and one row per frame (``frame, time_s``, then the columns
above), nothing else, so spreadsheets and pandas read it as is.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from avatar.core.errors import UserError
from avatar.core.files import read_npz, write_json, write_npz, write_text
from avatar.motion.face import CHANNELS

FORMAT = "talking-avatar-motion"
VERSION = 1
SUFFIXES = (".json", ".csv", ".npz")
HEAD = ("head_pitch_deg", "head_yaw_deg", "head_roll_deg", "head_x_m", "head_y_m", "head_z_m")


@dataclass
class Motion:
    """Per-frame motion of one clip (F frames, K expression coefficients)."""

    fps: float
    expr: np.ndarray
    """(F, K) float32 expression coefficients."""
    viewmats: np.ndarray
    """(F, 4, 4) float32 camera-from-head."""
    channels: np.ndarray
    """(F, len(CHANNELS)) float32 in [0, 1]."""
    verts: np.ndarray | None = None
    """(F, 478, 3) float32 head-frame mesh, metres (kept by .npz only)."""
    meta: dict = field(default_factory=dict)
    """Where it came from: subject, audio, pose mode, controls, look-ahead (JSON-able)."""

    def __len__(self) -> int:
        return len(self.expr)

    @property
    def head(self) -> np.ndarray:
        """(F, 6) float64 the head columns of :data:`HEAD`."""
        euler = Rotation.from_matrix(self.viewmats[:, :3, :3].astype(np.float64)).as_euler("xyz", degrees=True)
        return np.c_[euler, self.viewmats[:, :3, 3].astype(np.float64)]

    def columns(self) -> dict[str, np.ndarray]:
        """Every per-frame scalar column by name, in file order."""
        cols = {name: self.channels[:, i] for i, name in enumerate(CHANNELS)}
        cols |= {name: self.head[:, i] for i, name in enumerate(HEAD)}
        cols |= {f"expr_{k}": self.expr[:, k] for k in range(self.expr.shape[1])}
        return cols


def _viewmats_from_head(head: np.ndarray) -> np.ndarray:
    out = np.tile(np.eye(4, dtype=np.float64), (len(head), 1, 1))
    out[:, :3, :3] = Rotation.from_euler("xyz", head[:, :3], degrees=True).as_matrix()
    out[:, :3, 3] = head[:, 3:]
    return out.astype(np.float32)


def save_motion(motion: Motion, path: str | Path) -> Path:
    """Write ``motion`` atomically in the format of ``path``'s suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"cannot write a motion file ending in {path.suffix or '(nothing)'}: {path}",
                        f"end the output name in one of {', '.join(SUFFIXES)}")
    cols = motion.columns()
    if suffix == ".json":
        write_json(path, {"format": FORMAT, "version": VERSION, "fps": motion.fps, "frames": len(motion),
                          "meta": motion.meta, "channels": {n: cols[n].tolist() for n in CHANNELS},
                          "head": {n: cols[n].tolist() for n in HEAD}, "expr": motion.expr.tolist()})
    elif suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        names = list(cols)
        writer.writerow(["frame", "time_s", *names])
        table = np.stack([cols[n] for n in names], axis=1)
        for i, row in enumerate(table):
            writer.writerow([i, repr(round(i / motion.fps, 6)), *(repr(float(v)) for v in row)])
        write_text(path, buf.getvalue())
    else:
        arrays = {"fps": np.float64(motion.fps), "expr": motion.expr, "viewmats": motion.viewmats,
                  "channels": motion.channels, "head": motion.head,
                  "channel_names": np.array(CHANNELS), "meta": np.array(json.dumps(motion.meta))}
        if motion.verts is not None:
            arrays["verts"] = motion.verts
        write_npz(path, **arrays)
    return path


def load_motion(path: str | Path) -> Motion:
    """Read a motion file written by :func:`save_motion` (or by hand in its format); UserError when it is not one."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise UserError(f"motion file {path} does not exist", "give the path of a file from `avatar motion`")
    if suffix not in SUFFIXES:
        raise UserError(f"{path} is not a motion file (it does not end in {', '.join(SUFFIXES)})",
                        "give a .json, .csv or .npz file from `avatar motion`")
    try:
        if suffix == ".json":
            return _from_json(json.loads(path.read_text()))
        if suffix == ".csv":
            return _from_csv(path.read_text())
        return _from_npz(read_npz(path))
    except UserError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable motion file ({e.__class__.__name__}: {e})",
                        "write it again with `avatar motion`") from None


def _from_json(d: dict) -> Motion:
    if d.get("format") != FORMAT:
        raise ValueError(f"format is {d.get('format')!r}, not {FORMAT!r}")
    if d.get("version") != VERSION:
        raise ValueError(f"version {d.get('version')} (this program reads {VERSION})")
    expr = np.asarray(d["expr"], np.float32).reshape(int(d["frames"]), -1)
    head = np.stack([np.asarray(d["head"][n], np.float64) for n in HEAD], axis=1)
    channels = np.stack([np.asarray(d["channels"][n], np.float32) for n in CHANNELS], axis=1)
    return Motion(float(d["fps"]), expr, _viewmats_from_head(head), channels, None, dict(d.get("meta") or {}))


def _from_csv(text: str) -> Motion:
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], np.asarray(rows[1:], np.float64)
    col = {n: i for i, n in enumerate(header)}
    missing = [n for n in ("time_s", *CHANNELS, *HEAD, "expr_0") if n not in col]
    if missing:
        raise ValueError(f"columns missing: {', '.join(missing)}")
    times = body[:, col["time_s"]]
    fps = 1.0 / float(np.median(np.diff(times))) if len(times) > 1 else 25.0
    n_expr = sum(1 for n in header if n.startswith("expr_"))
    expr = body[:, [col[f"expr_{k}"] for k in range(n_expr)]].astype(np.float32)
    head = body[:, [col[n] for n in HEAD]]
    channels = body[:, [col[n] for n in CHANNELS]].astype(np.float32)
    return Motion(round(fps, 3), expr, _viewmats_from_head(head), channels)


def _from_npz(arrays: dict) -> Motion:
    verts = arrays.get("verts")
    return Motion(float(arrays["fps"]), arrays["expr"].astype(np.float32), arrays["viewmats"].astype(np.float32),
                  arrays["channels"].astype(np.float32), None if verts is None else verts.astype(np.float32),
                  json.loads(str(arrays["meta"])))
