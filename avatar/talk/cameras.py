"""Where the camera of a rendered talk is, per frame: fixed, a slow orbit, or a keyframed path from a file.

A camera here is a (4, 4) float32 **new-camera-from-training-camera** matrix
(:mod:`avatar.core.camera` conventions): it moves the training camera about a
pivot at the head's centre (the mean head position of the motion, in training-
camera coordinates), so the avatar stays in frame. Angles, degrees:

- ``yaw_deg > 0`` moves the camera to the subject's left (image right): the face
  turns toward image left;
- ``pitch_deg > 0`` moves the camera up: the avatar is seen from above;
- ``roll_deg > 0`` turns the avatar clockwise in the picture, about the view axis;
- ``dolly_m > 0`` moves the camera toward the head, metres.

The background plate is a picture, not a scene: it stays where it is while
the avatar turns.

A camera file (``--camera path.json``) holds keyframes, interpolated linearly
and held after the last::

    {"keyframes": [{"time_s": 0, "yaw_deg": 0},
                   {"time_s": 3, "yaw_deg": 25, "pitch_deg": 5},
                   {"time_s": 6, "yaw_deg": -25, "dolly_m": 0.1}]}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from avatar.core.errors import UserError

KEYS = ("yaw_deg", "pitch_deg", "roll_deg", "dolly_m")
"""What a keyframe may set besides ``time_s`` (each 0 when left out)."""
LIMITS = {"yaw_deg": 90.0, "pitch_deg": 60.0, "roll_deg": 180.0, "dolly_m": 1.0}
"""Largest magnitude of each (beyond them the fit has never seen the head, or the camera is inside it)."""
ORBIT_DEG = 10.0
"""Default yaw amplitude of ``--camera orbit``, degrees."""
ORBIT_PERIOD_S = 8.0
"""Default time of one orbit (there and back), seconds."""


def camera_from_angles(yaw_deg: np.ndarray, pitch_deg: np.ndarray, roll_deg: np.ndarray, dolly_m: np.ndarray,
                       pivot: np.ndarray) -> np.ndarray:
    """(F, 4, 4) float32 new-camera-from-training-camera for (F,) angles and dolly about ``pivot`` (3,) metres."""
    # the scene turns the opposite way to the camera; x-y-z = pitch, yaw, roll about the camera's axes
    scene = Rotation.from_euler("ZXY", np.c_[roll_deg, pitch_deg, yaw_deg], degrees=True).as_matrix()
    n = len(scene)
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = scene
    pivot = np.asarray(pivot, np.float64)
    out[:, :3, 3] = pivot - scene @ pivot
    out[:, 2, 3] -= np.asarray(dolly_m, np.float64)
    return out.astype(np.float32)


def fixed(n_frames: int) -> np.ndarray:
    """(F, 4, 4) identities: the training view."""
    return np.tile(np.eye(4, dtype=np.float32), (n_frames, 1, 1))


def orbit(n_frames: int, fps: float, pivot: np.ndarray, amplitude_deg: float = ORBIT_DEG,
          period_s: float = ORBIT_PERIOD_S) -> np.ndarray:
    """(F, 4, 4): yaw = amplitude * sin(2 pi t / period), starting at the training view and turning right first."""
    if not 0 < abs(amplitude_deg) <= LIMITS["yaw_deg"]:
        raise UserError(f"--orbit-deg {amplitude_deg} is outside 0..{LIMITS['yaw_deg']:g}",
                        f"{ORBIT_DEG:g} degrees shows the avatar is 3D without leaving what the video showed")
    if not period_s > 0:
        raise UserError(f"--orbit-period {period_s} must be above 0 seconds", f"{ORBIT_PERIOD_S:g} is slow")
    yaw = amplitude_deg * np.sin(2 * np.pi * np.arange(n_frames) / fps / period_s)
    zero = np.zeros(n_frames)
    return camera_from_angles(yaw, zero, zero, zero, pivot)


def from_file(path: str | Path, n_frames: int, fps: float, pivot: np.ndarray) -> np.ndarray:
    """(F, 4, 4) cameras of a keyframe file (see the module's docstring); UserError naming what is wrong."""
    path = Path(path)
    fix = 'write {"keyframes": [{"time_s": 0, "yaw_deg": 0}, {"time_s": 4, "yaw_deg": 20}]}'
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"camera file {path} does not exist", "give fixed, orbit or the path of a camera .json"
                        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"camera file {path} is not readable JSON ({e.__class__.__name__}: {e})", fix) from None
    keys = data.get("keyframes") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise UserError(f"camera file {path} has no \"keyframes\" list", fix)
    table = np.zeros((len(keys), 1 + len(KEYS)))
    for i, key in enumerate(keys):
        table[i] = _keyframe(key, i, path)
    if np.any(np.diff(table[:, 0]) <= 0):
        raise UserError(f"camera file {path}: keyframe times must increase", "sort the keyframes by time_s")
    t = np.arange(n_frames) / fps
    values = [np.interp(t, table[:, 0], table[:, 1 + j]) for j in range(len(KEYS))]
    return camera_from_angles(*values, pivot=pivot)


def _keyframe(key, i: int, path: Path) -> np.ndarray:
    where = f"camera file {path}, keyframe {i}"
    if not isinstance(key, dict):
        raise UserError(f"{where} is not an object", 'write it as {"time_s": 0, "yaw_deg": 10}')
    unknown = sorted(set(key) - {"time_s", *KEYS})
    if unknown:
        raise UserError(f"{where} has unknown keys {', '.join(unknown)}",
                        f"use time_s and any of {', '.join(KEYS)}")
    if "time_s" not in key:
        raise UserError(f"{where} has no time_s", "give each keyframe its time in seconds")
    row = [key["time_s"], *(key.get(k, 0.0) for k in KEYS)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in row):
        raise UserError(f"{where} has a value that is not a number", "write plain numbers")
    if row[0] < 0:
        raise UserError(f"{where}: time_s {row[0]} is negative", "times start at 0")
    for name, value in zip(KEYS, row[1:]):
        if abs(value) > LIMITS[name]:
            raise UserError(f"{where}: {name} {value} is beyond +-{LIMITS[name]:g}", "keep the camera near the "
                            "views the video showed")
    return np.asarray(row, np.float64)


def camera_path(spec: str | Path, n_frames: int, fps: float, head_viewmats: np.ndarray, *,
                orbit_deg: float = ORBIT_DEG, orbit_period_s: float = ORBIT_PERIOD_S) -> np.ndarray | None:
    """The (F, 4, 4) cameras of ``--camera spec`` (fixed, orbit or a file), or None for fixed (nothing to do).

    ``head_viewmats``: (F, 4, 4) the motion's camera-from-head poses; their mean
    head position is the pivot.
    """
    spec = str(spec)
    pivot = head_viewmats[:, :3, 3].astype(np.float64).mean(0)
    if spec == "fixed":
        return None
    if spec == "orbit":
        return orbit(n_frames, fps, pivot, orbit_deg, orbit_period_s)
    return from_file(spec, n_frames, fps, pivot)
