"""Rendering: Gaussian rasterisation (CPU kernels, gsplat on CUDA, PyTorch reference)."""

from .rasterize import rasterization

__all__ = ["rasterization"]
from .hashgrid import HashGrid, HashGridConfig, hash_grid_encode  # noqa: E402,F401
