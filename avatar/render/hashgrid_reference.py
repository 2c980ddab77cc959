"""Pure-PyTorch reference of the multi-resolution hash-grid encoding.

Slow and written to be obviously correct: one level at a time, one corner at a
time, autograd for every gradient. It is the specification the compiled kernel
(``cuda_ext/csrc/hashgrid.cpp``) is tested against, and it runs on any device
and in float64 (for ``torch.autograd.gradcheck``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # only for annotations; hashgrid.py imports this module
    from .hashgrid import HashGridLayout

#: Instant-NGP spatial-hash primes for the x, y, z vertex coordinates.
HASH_PRIMES = (1, 2654435761, 805459861)


def vertex_rows(vertex: torch.Tensor, resolution: int, rows: int, hashed: bool) -> torch.Tensor:
    """Table rows (within one level) of integer grid vertices.

    Args:
        vertex: (N, 3) int64, vertex coordinates in ``[0, resolution]``.
        resolution: cells per axis of the level.
        rows: table rows of the level (``2**T`` when hashed, ``(resolution+1)**3`` when dense).
        hashed: use the spatial hash instead of dense x-fastest indexing.

    Returns:
        (N,) int64 row indices in ``[0, rows)``.
    """
    if hashed:
        # The kernel hashes in uint32; the low T bits of the int64 products and
        # XORs are the same, so masking gives identical rows.
        h = vertex[:, 0] * HASH_PRIMES[0]
        h = h ^ (vertex[:, 1] * HASH_PRIMES[1])
        h = h ^ (vertex[:, 2] * HASH_PRIMES[2])
        return h & (rows - 1)
    side = resolution + 1
    return vertex[:, 0] + side * (vertex[:, 1] + side * vertex[:, 2])


def encode_level(x: torch.Tensor, level_table: torch.Tensor, resolution: int,
                 hashed: bool) -> torch.Tensor:
    """Trilinear interpolation of one level's table at clamped points.

    Args:
        x: (N, 3) float, points in the unit cube (already clamped to [0, 1]).
        level_table: (rows, F) float, this level's slice of the table.
        resolution: cells per axis.
        hashed: whether the level uses the spatial hash.

    Returns:
        (N, F) interpolated features, differentiable w.r.t. x and level_table.
    """
    pos = x * resolution
    cell = pos.detach().floor().clamp(max=resolution - 1).long()  # x == 1 uses the last cell
    frac = pos - cell.to(pos.dtype)
    out = torch.zeros(x.shape[0], level_table.shape[1], dtype=level_table.dtype, device=x.device)
    for corner in range(8):
        bits = torch.tensor([(corner >> d) & 1 for d in range(3)], device=x.device)
        rows = vertex_rows(cell + bits, resolution, level_table.shape[0], hashed)
        weight = torch.where(bits.bool(), frac, 1 - frac).prod(dim=1, keepdim=True)
        out = out + weight * level_table[rows]
    return out


def hash_grid_encode_reference(x: torch.Tensor, table: torch.Tensor,
                               layout: "HashGridLayout") -> torch.Tensor:
    """Encode points with the hash grid, in plain PyTorch.

    Args:
        x: (N, 3) float32 or float64, points in [0, 1]; points outside are clamped
            (and get no gradient along the clamped axis).
        table: (layout.n_rows, F) same dtype, all levels' rows stacked (see
            :class:`~avatar.render.hashgrid.HashGridLayout`).
        layout: level resolutions, row offsets and hashing flags.

    Returns:
        (N, L*F) features, level-major (level 0's F features first).
    """
    xc = x.clamp(0.0, 1.0)
    levels = []
    for level, resolution in enumerate(layout.resolutions):
        start, end = layout.offsets[level], layout.offsets[level + 1]
        levels.append(encode_level(xc, table[start:end], resolution, layout.hashed[level]))
    return torch.cat(levels, dim=1)
