"""Rendering: Gaussian rasterisation and hash-grid encoding.

Each has a compiled CPU backend (``cuda_ext``), a CUDA backend (gsplat for the
rasteriser, PyTorch on CUDA tensors for the hash grid) and a readable PyTorch
reference. The heavy modules load on first use, so ``avatar.render.config``
(settings other configs embed) imports no torch.
"""

from __future__ import annotations

import importlib

from .config import HashGridConfig

_LAZY = {"rasterization": ".rasterize", "render_picture": ".rasterize", "HashGrid": ".hashgrid", "hash_grid_encode": ".hashgrid"}

__all__ = ["rasterization", "render_picture", "HashGrid", "HashGridConfig", "hash_grid_encode"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
