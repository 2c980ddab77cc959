"""Benchmark of the CPU rasteriser against the PyTorch reference (``avatar bench raster``).

The default scene is a synthetic head: Gaussians lying flat on an ellipsoid of about
0.16 x 0.22 x 0.20 m (tangent standard deviations of about 2 mm, 0.3 mm thick, opacities
uniform in [0.5, 0.99] so the surface is opaque as after training), seen from 0.62 m with
a 1200 px focal length so that it covers about 40% of a 512 x 512 image, the working
point of a talking-head avatar. A covered pixel saturates after about 140 Gaussians of
its tile's list (``tile_list_depth``), which is what the compositing time scales with.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from avatar.core.rotations import rotmat_to_quat

from . import reference
from .rasterize import rasterization

HEAD_SEMI_AXES_M = (0.08, 0.11, 0.10)
"""Ellipsoid half-sizes (x, y, z) of the synthetic head, metres."""
HEAD_DISTANCE_M = 0.62
"""Camera to head centre, metres."""
FOCAL_PX = 1200.0
"""Focal length of the benchmark camera, pixels."""


class Scene(NamedTuple):
    """Inputs of :func:`avatar.render.rasterization` for one camera."""

    means: Tensor  #: (N, 3) metres
    quats: Tensor  #: (N, 4) wxyz
    scales: Tensor  #: (N, 3) metres
    opacities: Tensor  #: (N,)
    colors: Tensor  #: (N, 3)
    viewmats: Tensor  #: (1, 4, 4)
    Ks: Tensor  #: (1, 3, 3)
    width: int
    height: int


def head_scene(gaussians: int = 50_000, width: int = 512, height: int = 512, seed: int = 0,
               tangent_scale_m: float = 0.002) -> Scene:
    """Gaussians on the surface of an ellipsoidal head in front of one camera (float32)."""
    g = torch.Generator().manual_seed(seed)
    axes = torch.tensor(HEAD_SEMI_AXES_M)
    direction = torch.nn.functional.normalize(torch.randn(gaussians, 3, generator=g), dim=-1)
    surface = direction * axes
    normal = torch.nn.functional.normalize(direction / axes, dim=-1)
    helper = torch.where(normal[:, :1].abs() < 0.9, torch.tensor([[1.0, 0, 0]]), torch.tensor([[0, 1.0, 0]]))
    tangent = torch.nn.functional.normalize(torch.cross(normal, helper, dim=-1), dim=-1)
    # Random spin of the tangent frame around the normal.
    angle = torch.rand(gaussians, 1, generator=g) * 2 * math.pi
    bitangent = torch.cross(normal, tangent, dim=-1)
    t1 = tangent * torch.cos(angle) + bitangent * torch.sin(angle)
    t2 = torch.cross(normal, t1, dim=-1)
    quats = rotmat_to_quat(torch.stack([t1, t2, normal], dim=-1))
    log_spread = 0.4 * torch.randn(gaussians, 2, generator=g)
    scales = torch.cat([tangent_scale_m * torch.exp(log_spread),
                        torch.full((gaussians, 1), 0.0003)], dim=-1)
    opacities = 0.5 + 0.49 * torch.rand(gaussians, generator=g)
    colors = torch.tensor([0.8, 0.6, 0.5]) * (0.6 + 0.4 * torch.rand(gaussians, 3, generator=g))
    viewmat = torch.eye(4)
    viewmat[2, 3] = HEAD_DISTANCE_M
    K = torch.tensor([[FOCAL_PX, 0, width / 2], [0, FOCAL_PX, height / 2], [0, 0, 1]])
    return Scene(surface.float(), quats.float(), scales.float(), opacities.float(), colors.float(),
                 viewmat[None], K[None], width, height)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _forward_backward(scene: Scene, backend: str) -> Callable[[], None]:
    """One training-like step: render, then backpropagate fixed random image gradients."""
    params = [t.clone().requires_grad_(True) for t in scene[:5]]
    g = torch.Generator().manual_seed(1)
    C = scene.viewmats.shape[0]
    g_colors = torch.randn(C, scene.height, scene.width, 3, generator=g)
    g_alphas = torch.randn(C, scene.height, scene.width, 1, generator=g)

    def step() -> None:
        for p in params:
            p.grad = None
        colors, alphas, _ = rasterization(*params, scene.viewmats, scene.Ks, scene.width,
                                          scene.height, backend=backend)
        torch.autograd.backward([colors, alphas], [g_colors, g_alphas])

    return step


def _tile_list_depth(scene: Scene, alphas: Tensor) -> float:
    """Mean position, in its tile's front-to-back list, of the last Gaussian a covered pixel
    (alpha > 0.5) blended: how deep compositing goes, what its time scales with."""
    from .cpu import kernel

    ext = kernel()
    threads = torch.get_num_threads()
    means2d, conics, depths, extents, _ = ext.project_forward(
        *scene[:4], scene.viewmats, scene.Ks, scene.width, scene.height, 0.3, 0.01, 1e10, threads)
    out = ext.rasterize_forward(means2d, conics, depths, extents, scene.opacities, scene.colors,
                                torch.zeros(1, 3), scene.width, scene.height, threads)
    last = out[4]  # index of the last Gaussian each pixel used, in its tile's list
    covered = alphas[..., 0] > 0.5
    return float((last[covered] + 1).float().mean()) if covered.any() else 0.0


def reference_fwdbwd_ms(scene: Scene, strip_rows: int = 4, strips: int = 16) -> tuple[float, str]:
    """Estimated forward+backward time of the dense torch reference on the whole image.

    The reference needs memory ~ pixels x visible Gaussians, so it cannot run on the whole
    image at once: the projection is timed once, and compositing on ``strips`` bands of
    ``strip_rows`` rows spread evenly over the image (each with the Gaussians whose
    footprint reaches it), scaled linearly to all rows.
    """
    params = [t.clone().requires_grad_(True) for t in scene[:4]]

    def projection() -> reference.Projection:
        return reference.project(*params, scene.viewmats, scene.Ks, scene.width, scene.height)

    def project_step() -> None:
        proj = projection()
        (proj.means2d.sum() + proj.conics.sum() + proj.depths.sum()).backward()

    project_ms = median_ms(project_step, repeats=3)
    with torch.no_grad():
        proj = projection()
    step = scene.height // strips
    composite_ms = 0.0
    for k, top in enumerate(range(step // 2, scene.height - strip_rows + 1, step)[:strips]):
        ext_y = proj.extents[0, :, 1]
        my = proj.means2d[0, :, 1]
        reach = (proj.radii[0] > 0) & (my + ext_y >= top) & (my - ext_y <= top + strip_rows)
        inputs = [t.detach().clone().requires_grad_(True) for t in (
            proj.means2d[0][reach] - torch.tensor([0.0, top]), proj.conics[0][reach],
            proj.depths[0][reach], params[3].detach()[reach], scene.colors[reach])]
        visible = torch.ones(int(reach.sum()), dtype=torch.bool)

        def composite_step() -> None:
            color, alpha, _ = reference.composite_camera(*inputs, torch.zeros(3), visible,
                                                         scene.width, strip_rows)
            (color.sum() + alpha.sum()).backward()

        # One untimed call before the first band: a first call pages in buffers and code.
        composite_ms += median_ms(composite_step, repeats=1, warmup=1 if k == 0 else 0)
    measured_rows = strips * strip_rows
    total = project_ms + composite_ms * scene.height / measured_rows
    note = (f"dense torch reference cannot hold {scene.height}x{scene.width} x visible Gaussians: "
            f"projection timed on the full scene ({project_ms:.0f} ms), compositing on {strips} "
            f"bands of {strip_rows} rows evenly spread ({composite_ms:.0f} ms), scaled x"
            f"{scene.height / measured_rows:g} to all rows")
    return total, note


def bench_raster(gaussians: int = 50_000, width: int = 512, height: int = 512, repeats: int = 10,
                 seed: int = 0, with_reference: bool = True) -> dict:
    """Time the compiled CPU rasteriser (median of ``repeats`` after a warm-up) on a head scene.

    Returns gaussians, width, height, threads, load_average (1 min, of the whole machine:
    other processes slow the timings down), coverage (fraction of pixels with alpha > 0.5),
    tile_list_depth, fwd_ms, fwdbwd_ms, and (with_reference) torch_ref_fwdbwd_ms,
    speedup_vs_torch and torch_ref_note.
    """
    scene = head_scene(gaussians, width, height, seed)
    with torch.no_grad():
        _, alphas, _ = rasterization(*scene, backend="cpu")  # compiles on first use
        list_depth = _tile_list_depth(scene, alphas)

        def forward() -> None:
            rasterization(*scene, backend="cpu")

        fwd_ms = median_ms(forward, repeats)
    fwdbwd_ms = median_ms(_forward_backward(scene, "cpu"), repeats)
    result = {
        "gaussians": gaussians, "width": width, "height": height,
        "threads": torch.get_num_threads(), "load_average": round(os.getloadavg()[0], 2),
        "coverage": round(float((alphas > 0.5).float().mean()), 4),
        "tile_list_depth": round(list_depth, 1),
        "fwd_ms": round(fwd_ms, 2), "fwdbwd_ms": round(fwdbwd_ms, 2),
    }
    if with_reference:
        ref_ms, note = reference_fwdbwd_ms(scene)
        result.update(torch_ref_fwdbwd_ms=round(ref_ms, 1),
                      speedup_vs_torch=round(ref_ms / fwdbwd_ms, 1), torch_ref_note=note)
    return result
