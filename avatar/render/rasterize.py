"""The one entry point for drawing 3D Gaussians: :func:`rasterization`.

Three backends with the same semantics (documented in :mod:`avatar.render.reference`):

- ``"cpu"``: compiled C++/OpenMP tile rasteriser (:mod:`avatar.render.cpu`), the default;
- ``"cuda"``: gsplat's CUDA rasteriser (:mod:`avatar.render.cuda`), for CUDA tensors;
- ``"torch"``: the dense PyTorch reference (:mod:`avatar.render.reference`), for tests.

``"auto"`` picks ``"cuda"`` for CUDA tensors when gsplat imports, else ``"cpu"``.
Cameras follow :mod:`avatar.core.camera` (OpenCV, camera-from-world, pixels, metres).
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

BACKENDS = ("auto", "cpu", "cuda", "torch")


def rasterization(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                  viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
                  backgrounds: Tensor | None = None, near_plane: float = 0.01,
                  far_plane: float = 1e10, eps2d: float = 0.3, tile_size: int = 16,
                  backend: str = "auto") -> tuple[Tensor, Tensor, dict]:
    """Render N 3D Gaussians into C cameras (argument names mirror ``gsplat.rasterization``).

    Args:
        means: (N, 3) centres in world coordinates, metres.
        quats: (N, 4) rotations as wxyz quaternions (normalised here).
        scales: (N, 3) standard deviations along the rotated axes, metres (linear, not log).
        opacities: (N,) in [0, 1].
        colors: (N, D) or (C, N, D), any number of channels D >= 1.
        viewmats: (C, 4, 4) camera-from-world matrices.
        Ks: (C, 3, 3) intrinsics in pixels.
        width, height: image size in pixels.
        backgrounds: (C, D) colour behind the Gaussians; None = zeros.
        near_plane, far_plane: Gaussians with camera z <= near or >= far are culled, metres.
        eps2d: low-pass dilation added to the 2D covariance diagonal, px^2.
        tile_size: tile edge in pixels for the cuda backend (speed only: the image does not
            depend on it); the cpu backend always uses 16, one SIMD vector per tile row.
        backend: "auto", "cpu", "cuda" or "torch".

    Returns:
        render_colors: (C, H, W, D) float32, composited over the background.
        render_alphas: (C, H, W, 1) accumulated opacity, 1 - final transmittance.
        meta: dict with
            ``depths`` (C, H, W, 1): alpha-weighted camera z, sum_i w_i z_i, **not** divided
            by alpha; divide by ``render_alphas.clamp_min(1e-6)`` for the expected surface depth.
            ``means2d`` (C, N, 2): pixel coordinates of the centres. It is a node of the
            graph: call ``meta["means2d"].retain_grad()`` before ``backward()`` and read
            ``meta["means2d"].grad`` (pixels) for densification statistics.
            ``radii`` (C, N) int32: footprint radius in pixels, 0 = culled.
            ``depths_gauss`` (C, N): camera z of each centre, metres (0 when culled).
            ``conics`` (C, N, 3): inverse 2D covariances [Q00, Q01, Q11].

    Gradients flow to means, quats, scales, opacities, colors and backgrounds (camera
    gradients only with the "torch" backend).
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                  backgrounds, tile_size, backend)
    chosen = resolve_backend(backend, means)
    kwargs = dict(backgrounds=backgrounds, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d)
    if chosen == "torch":
        from .reference import rasterization_torch
        return rasterization_torch(means, quats, scales, opacities, colors, viewmats, Ks, width,
                                   height, **kwargs)
    if chosen == "cuda":
        from .cuda import rasterization_cuda
        return rasterization_cuda(means, quats, scales, opacities, colors, viewmats, Ks, width,
                                  height, tile_size=tile_size, **kwargs)
    if viewmats.requires_grad or Ks.requires_grad:
        raise ValueError("the cpu backend has no camera gradients: detach viewmats and Ks, "
                         "or use backend='torch'")
    from .cpu import rasterization_cpu
    return rasterization_cpu(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                             **kwargs)


@torch.no_grad()
def render_picture(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                   viewmats: Tensor, Ks: Tensor, width: int, height: int, plate: Tensor, *,
                   near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
                   backend: str = "auto") -> tuple[Tensor, Tensor]:
    """The Gaussians as a picture to look at: :func:`rasterization` of RGB, composited over an image.

    Args are those of :func:`rasterization` (colours (N, 3) RGB), with
    ``plate`` (C, H, W, 3) float32 in [0, 1], the image behind the Gaussians.

    Returns:
        rgb: (C, H, W, 3) uint8, ``round(255 * (colour + (1 - alpha) * plate))``, clamped.
        alphas: (C, H, W) float32 accumulated opacity.

    No gradients. On the cpu backend the kernel composites and rounds as it
    writes each pixel (no float image, no passes over one; it also skips the
    depths and last contributors a backward would need): a viewer's frames.
    Other backends composite the float image of :func:`rasterization`.
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, None, 16, backend)
    C = viewmats.shape[0]
    if colors.shape[-1] != 3 or not isinstance(plate, Tensor) or tuple(plate.shape) != (C, height, width, 3):
        raise ValueError(f"render_picture needs (N, 3) colours and a (C, H, W, 3) plate, got colours "
                         f"{tuple(colors.shape)} and plate {_describe(plate)}")
    if resolve_backend(backend, means) == "cpu":
        from .cpu import picture_cpu
        return picture_cpu(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                           plate.to(torch.float32), near_plane=near_plane, far_plane=far_plane, eps2d=eps2d)
    rgb, alpha, _ = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                  near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, backend=backend)
    out = torch.addcmul(rgb, 1.0 - alpha, plate.to(rgb)).mul_(255.0).add_(0.5).clamp_(0.0, 255.0)
    return out.to(torch.uint8), alpha[..., 0]


def resolve_backend(backend: str, means: Tensor) -> str:
    """The backend "auto" stands for with these tensors, or ``backend`` itself."""
    if backend != "auto":
        return backend
    if means.is_cuda:
        if importlib.util.find_spec("gsplat") is None:
            raise ValueError("CUDA tensors need gsplat for rendering: pip install "
                             "'talking-avatar[cuda]', or move the tensors to the CPU")
        return "cuda"
    return "cpu"


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                  backgrounds, tile_size, backend) -> None:
    """Raise ValueError naming the first argument with a wrong shape, dtype or device."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"width and height must be positive ints, got {width!r} x {height!r}")
    if not (isinstance(tile_size, int) and 1 <= tile_size <= 64):
        raise ValueError(f"tile_size must be an int in [1, 64], got {tile_size!r}")
    if not isinstance(means, Tensor) or means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be an (N, 3) tensor, got {_describe(means)}")
    if not isinstance(viewmats, Tensor) or viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must be a (C, 4, 4) tensor, got {_describe(viewmats)}")
    N, C = means.shape[0], viewmats.shape[0]
    expected = {"quats": (quats, (N, 4)), "scales": (scales, (N, 3)), "opacities": (opacities, (N,)),
                "Ks": (Ks, (C, 3, 3))}
    for name, (t, shape) in expected.items():
        if not isinstance(t, Tensor) or tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {_describe(t)}")
    if not isinstance(colors, Tensor) or not (
            (colors.dim() == 2 and colors.shape[0] == N)
            or (colors.dim() == 3 and colors.shape[:2] == (C, N))) or colors.shape[-1] < 1:
        raise ValueError(f"colors must be (N, D) or (C, N, D) with N={N}, C={C}, D>=1, "
                         f"got {_describe(colors)}")
    named = dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                 viewmats=viewmats, Ks=Ks)
    if backgrounds is not None:
        if not isinstance(backgrounds, Tensor) or tuple(backgrounds.shape) != (C, colors.shape[-1]):
            raise ValueError(f"backgrounds must have shape (C, D) = ({C}, {colors.shape[-1]}), "
                             f"got {_describe(backgrounds)}")
        named["backgrounds"] = backgrounds
    allowed = (torch.float32, torch.float64) if backend == "torch" else (torch.float32,)
    for name, t in named.items():
        if t.dtype not in allowed:
            raise ValueError(f"{name} must be float32, got {t.dtype}")
        if t.dtype != means.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but means has {means.dtype}")
        if t.device != means.device:
            raise ValueError(f"{name} is on {t.device} but means is on {means.device}")
    if backend in ("cpu", "torch") and means.device.type != "cpu":
        raise ValueError(f"backend {backend!r} needs CPU tensors, got {means.device}")
    if backend == "cuda" and not means.is_cuda:
        raise ValueError("backend 'cuda' needs CUDA tensors")


def _describe(t) -> str:
    return f"shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
