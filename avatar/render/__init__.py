"""Rendering: Gaussian rasterisation and hash-grid encoding.

Each has a compiled CPU backend (``cuda_ext``), a CUDA backend (gsplat,
tiny-cuda-nn) used when a GPU is present, and a readable PyTorch reference.
"""

from .hashgrid import HashGrid, HashGridConfig, hash_grid_encode
from .rasterize import rasterization

__all__ = ["rasterization", "HashGrid", "HashGridConfig", "hash_grid_encode"]
