"""Multi-resolution hash-grid encoding (Instant-NGP), the input encoding of the
per-Gaussian deformation field.

A point x in the unit cube is looked up in L grids of growing resolution; each
grid stores F features per vertex and the encoding is the concatenation of the
trilinearly interpolated features of every level, (N, L*F).

Table layout (one parameter, all levels stacked): level l owns rows
``[offsets[l], offsets[l+1])``. As in Instant-NGP a level stores
``min((res+1)^3, 2^T)`` rows: coarse levels whose whole vertex grid fits are
indexed densely (``x + (res+1) * (y + (res+1) * z)``, no collisions), finer levels
get exactly ``2^T`` rows addressed by the spatial hash
``(x * 1 ^ y * 2654435761 ^ z * 805459861) mod 2^T``. With the defaults
(L=16, T=19, 16 -> 2048) five levels are dense and the table holds 6.1 M rows
instead of 16 * 2^19 = 8.4 M, which is also 27% less gradient to zero every step.

Grid alignment: ``p = clamp(x, 0, 1) * res``, vertices at integer p (0..res),
cell ``min(floor(p), res - 1)``. This is the paper's convention, not tiny-cuda-nn's
(which shifts by half a cell and pads each level to a multiple of 8 rows).

One layout for every backend, so a table trained on one runs on any other
(``state_dict`` moves as it is): ``"cpu"`` the compiled kernel
(``cuda_ext/csrc/hashgrid.cpp``), ``"torch"`` the PyTorch reference (any device,
float64 too), ``"cuda"`` the same reference on CUDA tensors (vectorised gathers;
tiny-cuda-nn is not used because its layout and alignment cannot be matched),
``"auto"`` the kernel for CPU tensors and the reference elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from avatar.core.errors import UserError
from .config import FEATURE_WIDTHS, HashGridConfig  # noqa: F401  (HashGridConfig re-exported)
from .hashgrid_reference import hash_grid_encode_reference

BACKENDS = ("auto", "cpu", "torch", "cuda")
TABLE_INIT_RANGE = 1e-4  # Instant-NGP initialises the table uniformly in +-1e-4
MAX_RESOLUTION = 2 ** 19  # cells per axis the kernel indexes exactly (float32 positions)




@dataclass(frozen=True)
class HashGridLayout:
    """Where each level lives in the stacked table (plain ints, shared by all backends)."""

    resolutions: tuple[int, ...]
    """(L,) cells per axis of each level."""
    offsets: tuple[int, ...]
    """(L+1,) first table row of each level, then the total row count."""
    hashed: tuple[bool, ...]
    """(L,) True where the level is addressed by the spatial hash."""

    @property
    def n_rows(self) -> int:
        """Total table rows over all levels."""
        return self.offsets[-1]

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(resolutions int64, offsets int64, hashed uint8) CPU tensors, as the kernel wants."""
        return (torch.tensor(self.resolutions, dtype=torch.int64),
                torch.tensor(self.offsets, dtype=torch.int64),
                torch.tensor(self.hashed, dtype=torch.uint8))


def hash_grid_layout(cfg: HashGridConfig) -> HashGridLayout:
    """Level resolutions ``floor(base * b^l)`` and the row layout of the table."""
    scale = cfg.level_scale()
    hashed_rows = 2 ** cfg.log2_hashmap_size
    resolutions, offsets, hashed = [], [0], []
    for level in range(cfg.n_levels):
        # The epsilon keeps e.g. 16 * b^15 == 2047.9999999 from flooring to 2047.
        res = max(1, math.floor(cfg.base_resolution * scale ** level + 1e-6))
        if res > MAX_RESOLUTION:
            raise UserError(f"hash grid level {level} would have {res} cells per axis",
                            f"keep the finest resolution at most {MAX_RESOLUTION} "
                            "(lower per_level_scale or max_resolution)")
        dense_rows = (res + 1) ** 3
        resolutions.append(res)
        hashed.append(dense_rows > hashed_rows)
        offsets.append(offsets[-1] + min(dense_rows, hashed_rows))
    return HashGridLayout(tuple(resolutions), tuple(offsets), tuple(hashed))


def _kernel():
    import cuda_ext  # deferred: importing this module must not compile anything

    return cuda_ext.load("hashgrid")


class _HashGridFunction(torch.autograd.Function):
    """Autograd wrapper of the compiled kernel (first-order gradients only)."""

    @staticmethod
    def forward(ctx, x, table, resolutions, offsets, hashed):
        ctx.save_for_backward(x, table, resolutions, offsets, hashed)
        return _kernel().forward(x, table, resolutions, offsets, hashed)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, table, resolutions, offsets, hashed = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_x or need_table):
            return None, None, None, None, None
        grad_table, grad_x = _kernel().backward(grad_out, x, table, resolutions, offsets, hashed,
                                                need_table, need_x)
        return (grad_x if need_x else None, grad_table if need_table else None, None, None, None)


def _check_shapes(x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig,
                  layout: HashGridLayout) -> None:
    if x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"hash grid input must be (N, 3), got {tuple(x.shape)}")
    expected = (layout.n_rows, cfg.n_features_per_level)
    if tuple(table.shape) != expected:
        raise ValueError(f"hash grid table must be {expected}, got {tuple(table.shape)}")


def hash_grid_encode(x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig,
                     backend: str = "auto") -> torch.Tensor:
    """Encode points with a hash grid whose table is given.

    Args:
        x: (N, 3) float32, points in the unit cube [0, 1]^3. Points outside are
            clamped to the cube and get no gradient along a clamped axis.
        table: (hash_grid_layout(cfg).n_rows, F) float32, the stacked level tables.
        cfg: grid shape.
        backend: "auto", "cpu" (compiled kernel, CPU tensors), "cuda" (CUDA tensors)
            or "torch" (reference, any device). All share one table layout.

    Returns:
        (N, L*F) float32, level-major. Differentiable w.r.t. x and table
        (first order; the compiled backward is not itself differentiable).
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown hash grid backend {backend!r}", f"use one of {BACKENDS}")
    layout = hash_grid_layout(cfg)
    _check_shapes(x, table, cfg, layout)
    on_cpu = x.device.type == "cpu" and table.device.type == "cpu"
    if backend == "auto":
        backend = "cpu" if on_cpu else "torch"
    if backend == "cuda" and (x.device.type != "cuda" or table.device.type != "cuda"):
        raise UserError(f"the cuda hash-grid backend needs CUDA tensors, got points on {x.device} "
                        f"and the table on {table.device}",
                        'move both with .cuda() (HashGrid(...).cuda()), or use backend="cpu" or "auto"')
    if backend == "cpu" and not on_cpu:
        raise UserError("the cpu hash-grid backend needs CPU tensors",
                        'move them with .cpu(), or use backend="auto"')
    if backend in ("torch", "cuda"):
        return hash_grid_encode_reference(x, table, layout)
    return _HashGridFunction.apply(x.float().contiguous(), table, *layout.as_tensors())


class HashGrid(torch.nn.Module):
    """Trainable multi-resolution hash-grid encoding of points in the unit cube.

    ``forward(x)``: x (N, 3) float32 in [0, 1] (outside is clamped) -> (N, L*F) float32.
    The table parameter is (layout.n_rows, F) float32, uniform in +-1e-4 as in
    Instant-NGP, in the same layout for every backend: a grid trained on the CPU
    loads into a ``backend="cuda"`` grid with ``load_state_dict`` and encodes the
    same (and the reverse).
    """

    def __init__(self, cfg: HashGridConfig | None = None, backend: str = "auto"):
        super().__init__()
        if backend not in BACKENDS:
            raise UserError(f"unknown hash grid backend {backend!r}", f"use one of {BACKENDS}")
        self.cfg = cfg or HashGridConfig()
        self.backend = backend
        self.layout = hash_grid_layout(self.cfg)
        table = torch.empty(self.layout.n_rows, self.cfg.n_features_per_level)
        self.table = torch.nn.Parameter(table.uniform_(-TABLE_INIT_RANGE, TABLE_INIT_RANGE))

    @property
    def output_dim(self) -> int:
        """Width L*F of the encoding."""
        return self.cfg.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hash_grid_encode(x, self.table, self.cfg, self.backend)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"levels={c.n_levels}, features={c.n_features_per_level}, "
                f"log2_table={c.log2_hashmap_size}, res={self.layout.resolutions[0]}.."
                f"{self.layout.resolutions[-1]}, rows={self.layout.n_rows}, backend={self.backend}")
