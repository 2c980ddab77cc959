"""Gaussians to and from the standard 3D Gaussian Splatting PLY file.

The layout is the one the original 3DGS code writes and common splat viewers
(SuperSplat, antimatter15/splat, ...) read, so a fitted avatar frame can be
opened in any of them: binary little-endian PLY, one ``vertex`` element, 62
float32 properties in this order:

    x y z                 mean, metres
    nx ny nz              zeros (unused by splatting, kept for the layout)
    f_dc_0..2             SH degree-0 colour: (rgb - 0.5) / C0
    f_rest_0..44          zeros: degree-3 layout with all higher bands off
    opacity               logit (inverse sigmoid) of the opacity
    scale_0..2            natural log of the standard deviations, metres
    rot_0..3              unit quaternion w, x, y, z

Viewers apply ``sigmoid``, ``exp``, ``0.5 + C0 * f_dc`` and normalise the
quaternion, so :func:`read_ply` applies the same to give back what
:func:`write_ply` took. Colours here are view-independent (degree 0 only), so
the higher SH bands are written as zeros and ignored on reading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from plyfile import PlyData, PlyElement, PlyParseError

from avatar.core.errors import UserError
from avatar.core.files import atomic_path

SH_C0 = 0.28209479177387814
"""Spherical-harmonics degree-0 constant, 1 / (2 sqrt(pi))."""

N_REST = 45
"""Higher-band SH coefficients of a degree-3 file: 15 per colour channel."""

PROPERTIES: tuple[str, ...] = (
    "x", "y", "z", "nx", "ny", "nz",
    "f_dc_0", "f_dc_1", "f_dc_2",
    *(f"f_rest_{i}" for i in range(N_REST)),
    "opacity",
    "scale_0", "scale_1", "scale_2",
    "rot_0", "rot_1", "rot_2", "rot_3",
)
"""The 62 vertex properties of a 3DGS PLY, in file order."""

REQUIRED: tuple[str, ...] = (
    "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)
"""What :func:`read_ply` needs; normals and f_rest are optional (some exporters drop them)."""

OPACITY_EPS = 1e-6
"""Opacities are clamped to [eps, 1 - eps] so the stored logit is finite (|logit| <= 13.8)."""

MIN_SCALE = 1e-30
"""Smallest standard deviation written, metres: keeps log(scale) finite for a collapsed Gaussian."""


def write_ply(path: str | os.PathLike, means: Any, quats: Any, scales: Any, opacities: Any,
              colors: Any) -> None:
    """Write N Gaussians as a standard 3DGS PLY file, atomically.

    Inputs are torch tensors or NumPy arrays:

    - ``means`` (N, 3), metres
    - ``quats`` (N, 4) w, x, y, z, any norm > 0 (normalised here)
    - ``scales`` (N, 3) standard deviations, metres, > 0
    - ``opacities`` (N,) in (0, 1); clamped by :data:`OPACITY_EPS`
    - ``colors`` (N, 3) RGB in [0, 1]; clipped to it, as a viewer would show it

    Wrong shapes or a zero quaternion raise ValueError: they are bugs of the
    caller, not something a user can fix.
    """
    means, quats, scales, colors = (_array(a, name, (-1, k)) for a, name, k in
                                    ((means, "means", 3), (quats, "quats", 4),
                                     (scales, "scales", 3), (colors, "colors", 3)))
    opacities = _array(opacities, "opacities", (-1,))
    n = len(means)
    for a, name in ((quats, "quats"), (scales, "scales"), (opacities, "opacities"), (colors, "colors")):
        if len(a) != n:
            raise ValueError(f"{name} has {len(a)} rows, means has {n}")

    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    if not np.all(norms > 0):
        raise ValueError("quats contains a zero quaternion (no rotation can be read from it)")

    # float64 for the encoding, so rounding happens once, in the final float32 cast
    p = np.clip(opacities, OPACITY_EPS, 1.0 - OPACITY_EPS)
    columns = {
        "x": means[:, 0], "y": means[:, 1], "z": means[:, 2],
        **{f"f_dc_{i}": (np.clip(colors[:, i], 0.0, 1.0) - 0.5) / SH_C0 for i in range(3)},
        "opacity": np.log(p) - np.log1p(-p),
        **{f"scale_{i}": np.log(np.maximum(scales[:, i], MIN_SCALE)) for i in range(3)},
        **{f"rot_{i}": (quats / norms)[:, i] for i in range(4)},
    }
    vertices = np.zeros(n, dtype=[(name, "<f4") for name in PROPERTIES])  # normals, f_rest stay 0
    for name, values in columns.items():
        vertices[name] = values

    ply = PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<")
    with atomic_path(path) as tmp:
        ply.write(str(tmp))


def read_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a 3DGS PLY file back into what :func:`write_ply` takes, as float32 NumPy arrays.

    Returns ``means`` (N, 3) metres, ``quats`` (N, 4) unit w, x, y, z,
    ``scales`` (N, 3) standard deviations in metres, ``opacities`` (N,) in
    (0, 1) and ``colors`` (N, 3) RGB (in [0, 1] for files this module wrote;
    other exporters may store colours outside it, which are returned as is).

    Raises UserError naming the file when it is missing, unreadable or not a
    3DGS PLY (no ``vertex`` element with the required properties).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"PLY file not found: {path}", "check the path (and its spelling)")
    vertex = _vertex_element(path)
    missing = [name for name in REQUIRED if name not in vertex.dtype.names]
    if missing:
        raise UserError(f"{path} is not a 3D Gaussian Splatting PLY: it has no {', '.join(missing)}",
                        "give a .ply written by `avatar` or by 3DGS training, "
                        "not a mesh or point-cloud PLY")

    def col(*names: str) -> np.ndarray:
        return np.stack([np.asarray(vertex[name], dtype=np.float64) for name in names], axis=1)

    quats = col("rot_0", "rot_1", "rot_2", "rot_3")
    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    quats = np.divide(quats, norms, out=np.tile([1.0, 0.0, 0.0, 0.0], (len(quats), 1)), where=norms > 0)
    out = {
        "means": col("x", "y", "z"),
        "quats": quats,
        "scales": np.exp(col("scale_0", "scale_1", "scale_2")),
        "opacities": 1.0 / (1.0 + np.exp(-col("opacity")[:, 0])),
        "colors": 0.5 + SH_C0 * col("f_dc_0", "f_dc_1", "f_dc_2"),
    }
    return {k: v.astype(np.float32) for k, v in out.items()}


def _vertex_element(path: Path) -> np.ndarray:
    """The ``vertex`` element's data of a PLY file, loaded into memory (the file is closed again)."""
    fix = "the file is damaged or not a PLY; export it again"
    try:
        # mmap=False: the data is copied, so no open map keeps the file busy after returning
        ply = PlyData.read(str(path), mmap=False)
    except (PlyParseError, ValueError, EOFError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable PLY file ({e})", fix) from None
    if "vertex" not in [el.name for el in ply.elements]:
        raise UserError(f"{path} is not a 3D Gaussian Splatting PLY: it has no vertex element", fix)
    return ply["vertex"].data


def _array(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` (a torch tensor or array-like) as a float64 NumPy array of ``shape`` (-1: any length)."""
    if hasattr(x, "detach"):  # a torch tensor; duck-typed so this module does not import torch
        x = x.detach().cpu()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, a.shape)):
        want = "(N" + "".join(f", {k}" for k in shape[1:]) + (",)" if len(shape) == 1 else ")")
        raise ValueError(f"{name} must have shape {want}, got {tuple(a.shape)}")
    return a
