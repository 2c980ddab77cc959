"""Benchmark of the compiled CPU hash-grid encoder.

Run ``python -m avatar.render.hashgrid_bench`` to print the numbers as JSON.
Target (2 cores): 65,536 points, 16 levels x 2 features, 2^19 rows per level,
forward + backward (table gradient) within 20 ms.
"""

from __future__ import annotations

import json
from typing import Callable

import torch

from .bench import median_ms
from .hashgrid import HashGrid, HashGridConfig


def bench_hashgrid(points: int = 65536, levels: int = 16, features: int = 2,
                   log2_table: int = 19, repeats: int = 20, warmup: int = 3,
                   seed: int = 0) -> dict:
    """Time the CPU kernel's forward, forward+backward, and forward+backward with x gradient.

    Returns:
        dict with ``hashgrid_fwd_ms``, ``hashgrid_fwdbwd_ms`` (table gradient only, as
        in training), ``hashgrid_fwdbwd_xgrad_ms`` (table and x gradients), each the
        median over ``repeats`` runs, plus ``threads``, ``table_rows`` and the settings.
    """
    gen = torch.Generator().manual_seed(seed)
    cfg = HashGridConfig(n_levels=levels, n_features_per_level=features,
                         log2_hashmap_size=log2_table)
    grid = HashGrid(cfg, backend="cpu")
    x = torch.rand(points, 3, generator=gen)
    x_grad = x.clone().requires_grad_(True)
    grad_out = torch.randn(points, cfg.output_dim, generator=gen)

    def forward() -> None:
        with torch.no_grad():
            grid(x)

    def forward_backward(inputs: torch.Tensor) -> Callable[[], None]:
        def step() -> None:
            grid.table.grad = None
            inputs.grad = None
            grid(inputs).backward(grad_out)
        return step

    return {
        "hashgrid_fwd_ms": round(median_ms(forward, repeats, warmup), 2),
        "hashgrid_fwdbwd_ms": round(median_ms(forward_backward(x), repeats, warmup), 2),
        "hashgrid_fwdbwd_xgrad_ms": round(median_ms(forward_backward(x_grad), repeats, warmup), 2),
        "threads": torch.get_num_threads(),
        "points": points, "levels": levels, "features": features, "log2_table": log2_table,
        "table_rows": grid.layout.n_rows, "repeats": repeats,
    }


if __name__ == "__main__":
    print(json.dumps(bench_hashgrid(), indent=2))
