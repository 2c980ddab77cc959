"""Rendering: Gaussian rasterisation (CPU kernels, gsplat on CUDA, PyTorch reference)."""

from .rasterize import rasterization

__all__ = ["rasterization"]
