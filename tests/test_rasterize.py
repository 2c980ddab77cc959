"""Gaussian rasteriser: compiled CPU kernels against the PyTorch reference, and their contracts.

The first test to touch the "cpu" backend compiles the kernel (about a minute, once).
"""

from __future__ import annotations

import math

import psutil
import pytest
import torch

from avatar.render import rasterization
from avatar.render.bench import head_scene
from avatar.render import reference
from avatar.render.reference import rasterization_torch

PARAMS = ("means", "quats", "scales", "opacities", "colors", "backgrounds")


def random_scene(n=40, cameras=1, width=37, height=29, channels=3, seed=0, dtype=torch.float32):
    """Random Gaussians 1.5-2.5 m in front of `cameras` slightly different pinhole cameras."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.4, 0.3, 0.3]) + torch.tensor([0.0, 0.0, 2.0])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.08 + 0.01
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, channels, generator=g)
    viewmats = torch.eye(4).repeat(cameras, 1, 1)
    for c in range(cameras):
        angle = 0.1 * c
        viewmats[c, 0, 0] = viewmats[c, 2, 2] = math.cos(angle)
        viewmats[c, 0, 2], viewmats[c, 2, 0] = math.sin(angle), -math.sin(angle)
        viewmats[c, 0, 3] = 0.05 * c
    focal = 0.9 * max(width, height)
    Ks = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]]).repeat(cameras, 1, 1)
    backgrounds = torch.rand(cameras, channels, generator=g)
    tensors = dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                   viewmats=viewmats, Ks=Ks, backgrounds=backgrounds)
    return {k: v.to(dtype) for k, v in tensors.items()} | dict(width=width, height=height)


def render(scene, backend, grad=False, **overrides):
    """Render `scene`; with grad, backpropagate fixed random weights of every output and
    return (colors, alphas, depths, meta, {param: grad})."""
    scene = scene | overrides
    leaves = {k: scene[k].detach().clone().requires_grad_(grad) for k in PARAMS}
    colors, alphas, meta = rasterization(
        leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], leaves["colors"],
        scene["viewmats"], scene["Ks"], scene["width"], scene["height"],
        backgrounds=leaves["backgrounds"], backend=backend)
    if not grad:
        return colors, alphas, meta["depths"], meta, {}
    meta["means2d"].retain_grad()
    g = torch.Generator().manual_seed(123)
    loss = sum((out * torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)).sum()
               for out in (colors, alphas, meta["depths"]))
    loss.backward()
    grads = {k: v.grad for k, v in leaves.items()} | {"means2d": meta["means2d"].grad}
    return colors, alphas, meta["depths"], meta, grads


def assert_close_scaled(actual, expected, rtol, name):
    """|actual - expected| <= rtol * max|expected| (+ a tiny floor), elementwise."""
    scale = expected.abs().max().item() + 1e-6
    err = (actual - expected).abs().max().item()
    assert err <= rtol * scale, f"{name}: max error {err:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("seed,cameras,channels", [(0, 1, 3), (1, 2, 3), (2, 1, 1), (3, 2, 5)])
def test_forward_matches_reference_on_random_scenes(seed, cameras, channels):
    scene = random_scene(n=60, cameras=cameras, channels=channels, seed=seed)
    ours = render(scene, "cpu")
    ref = render(scene, "torch")
    assert ours[1].max() > 0.5, "the scene should cover some pixels"
    for name, a, b in zip(("colors", "alphas"), ours[:2], ref[:2]):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-4, name
    assert (ours[2] - ref[2]).abs().max() <= 1e-4 * ref[2].abs().max()
    assert torch.equal(ours[3]["radii"], ref[3]["radii"])
    assert torch.allclose(ours[3]["means2d"], ref[3]["means2d"], atol=1e-4)
    assert torch.allclose(ours[3]["depths_gauss"], ref[3]["depths_gauss"], atol=1e-6)


def test_forward_matches_reference_on_a_head():
    s = head_scene(gaussians=3000, width=80, height=72, seed=4)
    scene = dict(means=s.means, quats=s.quats, scales=s.scales * 5, opacities=s.opacities,
                 colors=s.colors, viewmats=s.viewmats, Ks=s.Ks * torch.tensor([[0.15], [0.15], [1.0]]),
                 backgrounds=torch.tensor([[0.1, 0.2, 0.3]]), width=s.width, height=s.height)
    ours, ref = render(scene, "cpu"), render(scene, "torch")
    assert (ours[1] > 0.99).float().mean() > 0.1, "the head should be opaque over part of the image"
    assert (ours[0] - ref[0]).abs().max() <= 1e-4
    assert (ours[1] - ref[1]).abs().max() <= 1e-4
    assert (ours[2] - ref[2]).abs().max() <= 1e-4 * ref[2].abs().max()


@pytest.mark.parametrize("seed,cameras,channels", [(5, 1, 3), (6, 2, 2)])
def test_gradients_match_reference(seed, cameras, channels):
    scene = random_scene(n=30, cameras=cameras, channels=channels, seed=seed)
    ours = render(scene, "cpu", grad=True)[4]
    ref = render(scene, "torch", grad=True)[4]
    for name in PARAMS + ("means2d",):
        assert ours[name].abs().max() > 0, f"{name} gets no gradient"
        assert_close_scaled(ours[name], ref[name], 2e-4, name)


def test_reference_passes_gradcheck_in_float64():
    scene = random_scene(n=3, width=7, height=6, channels=2, seed=7, dtype=torch.float64)
    scene["opacities"] = torch.tensor([0.6, 0.5, 0.7], dtype=torch.float64)
    scene["scales"] = scene["scales"] + 0.05  # cover several pixels each

    def fn(means, quats, scales, opacities, colors, backgrounds):
        colors_img, alphas, meta = rasterization_torch(
            means, quats, scales, opacities, colors, scene["viewmats"], scene["Ks"],
            scene["width"], scene["height"], backgrounds=backgrounds)
        return colors_img, alphas, meta["depths"], meta["means2d"]

    inputs = tuple(scene[k].clone().requires_grad_(True) for k in PARAMS)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def smooth_pixel_mask(scene) -> torch.Tensor:
    """(C, H, W, 1) pixels where the rendering is smooth in every parameter: no Gaussian
    near the 1/255 alpha cut-off or the 0.99 clamp there, and far from saturation (finite
    differences across those jumps measure the jump, not the derivative)."""
    proj = reference.project(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                             scene["viewmats"], scene["Ks"], scene["width"], scene["height"])
    ys, xs = torch.meshgrid(torch.arange(scene["height"]) + 0.5, torch.arange(scene["width"]) + 0.5,
                            indexing="ij")
    dx = proj.means2d[:, None, None, :, 0] - xs[None, :, :, None]
    dy = proj.means2d[:, None, None, :, 1] - ys[None, :, :, None]
    q = proj.conics[:, None, None]
    sigma = 0.5 * (q[..., 0] * dx * dx + q[..., 2] * dy * dy) + q[..., 1] * dx * dy
    alpha = (scene["opacities"] * torch.exp(-sigma)).where(proj.radii[:, None, None] > 0, torch.tensor(0.0))
    near_cut = ((alpha > 0.3 / 255) & (alpha < 3 / 255)) | ((alpha > 0.97) & (alpha < 1.0))
    _, alphas, _ = rasterization_torch(*(scene[k] for k in PARAMS[:5]), scene["viewmats"], scene["Ks"],
                                       scene["width"], scene["height"])
    return (~near_cut.any(-1, keepdim=True)) & (alphas < 0.999)


def test_compiled_backward_matches_central_differences():
    """Directional derivatives of the compiled float32 forward vs its backward, on a loss
    restricted to pixels where the image is a smooth function of the parameters."""
    scene = random_scene(n=25, seed=8)
    mask = smooth_pixel_mask(scene).float()
    assert mask.mean() > 0.3
    g = torch.Generator().manual_seed(321)
    weights = [torch.randn(mask.shape[:3] + (k,), generator=g) * mask for k in (3, 1, 1)]

    def loss(leaves):
        colors, alphas, meta = rasterization(*(leaves[k] for k in PARAMS[:5]), scene["viewmats"],
                                             scene["Ks"], scene["width"], scene["height"],
                                             backgrounds=leaves["backgrounds"])
        return sum((out.double() * w).sum() for out, w in zip((colors, alphas, meta["depths"]), weights))

    leaves = {k: scene[k].clone().requires_grad_(True) for k in PARAMS}
    loss(leaves).backward()
    step = {"means": 1e-4, "quats": 1e-4, "scales": 1e-5, "opacities": 1e-4, "colors": 1e-2,
            "backgrounds": 1e-2}
    with torch.no_grad():
        for name, h in step.items():
            direction = torch.randn(scene[name].shape, generator=g)
            shifted = [leaves | {name: scene[name] + sign * h * direction} for sign in (1, -1)]
            numeric = (loss(shifted[0]) - loss(shifted[1])).item() / (2 * h)
            analytic = (leaves[name].grad * direction).sum().item()
            assert analytic == pytest.approx(numeric, rel=2e-2, abs=1e-2), name


@pytest.mark.parametrize("seed,cameras,width,height", [(7, 1, 37, 29), (8, 2, 40, 33), (9, 1, 16, 16)])
def test_picture_path_matches_the_reference_over_an_image(seed, cameras, width, height):
    from avatar.render import render_picture

    scene = random_scene(n=60, cameras=cameras, width=width, height=height, seed=seed)
    plate = torch.rand(cameras, height, width, 3, generator=torch.Generator().manual_seed(seed))
    args = [scene[k] for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
    rgb, alpha = render_picture(*args, width, height, plate, backend="cpu")
    ref_rgb, ref_alpha = render_picture(*args, width, height, plate, backend="torch")
    colours, alphas, _ = rasterization(*args, width, height, backend="torch")
    assert rgb.dtype == torch.uint8 and rgb.shape == (cameras, height, width, 3)
    assert (rgb.int() - ref_rgb.int()).abs().max() <= 1  # rounding of a value within 1e-5
    assert (alpha - ref_alpha).abs().max() <= 1e-5 and (alpha - alphas[..., 0]).abs().max() <= 1e-5
    assert (alphas > 0.5).any() and (alphas < 0.01).any(), "the scene should cover part of the image"
    over = (colours + (1 - alphas) * plate) * 255
    assert (rgb.float() - over).abs().max() <= 0.5 + 1e-3


def test_picture_path_refuses_what_it_cannot_draw():
    from avatar.render import render_picture

    scene = random_scene(channels=2)
    args = [scene[k] for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
    with pytest.raises(ValueError, match="colours"):
        render_picture(*args, scene["width"], scene["height"], torch.zeros(1, 29, 37, 3), backend="cpu")


def test_culled_gaussians_draw_nothing_and_get_no_gradient():
    scene = random_scene(n=6, seed=9)
    means = scene["means"].clone()
    means[0, 2] = -1.0          # behind the camera
    means[1, 2] = 0.005         # in front of the near plane
    means[2, 2] = 2e10          # beyond the far plane
    means[3] = torch.tensor([50.0, 0.0, 2.0])  # far off-screen
    opacities = scene["opacities"].clone()
    opacities[4] = 0.0           # fully transparent
    scene = scene | dict(means=means[:5], quats=scene["quats"][:5], scales=scene["scales"][:5],
                         opacities=opacities[:5], colors=scene["colors"][:5])
    colors, alphas, depths, meta, grads = render(scene, "cpu", grad=True)
    assert torch.equal(meta["radii"], torch.zeros(1, 5, dtype=torch.int32))
    assert torch.equal(alphas, torch.zeros_like(alphas))
    assert torch.equal(colors, scene["backgrounds"][:, None, None, :].expand_as(colors))
    for name in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(grads[name], torch.zeros_like(grads[name])), name


def test_degenerate_gaussians_match_reference():
    scene = random_scene(n=12, seed=10)
    scales, quats = scene["scales"].clone(), scene["quats"].clone()
    scales[:4] = 0.0             # points: only the eps2d dilation remains
    scales[4:6, 2] = 0.0         # flat discs
    quats[6] = 0.0               # no rotation given
    scene = scene | dict(scales=scales, quats=quats)
    ours, ref = render(scene, "cpu", grad=True), render(scene, "torch", grad=True)
    assert (ours[0] - ref[0]).abs().max() <= 1e-4
    assert (ours[1] - ref[1]).abs().max() <= 1e-4
    for name in PARAMS:
        assert torch.isfinite(ours[4][name]).all(), name
        assert_close_scaled(ours[4][name], ref[4][name], 2e-4, name)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_empty_scene_renders_the_background(backend):
    scene = random_scene(n=0, cameras=2, seed=11)
    colors, alphas, depths, meta, grads = render(scene, backend, grad=True)
    assert torch.equal(colors, scene["backgrounds"][:, None, None, :].expand(2, 29, 37, 3))
    assert torch.equal(alphas, torch.zeros(2, 29, 37, 1))
    assert torch.equal(depths, torch.zeros(2, 29, 37, 1))
    assert grads["means"].shape == (0, 3)
    assert grads["backgrounds"].abs().sum() > 0


@pytest.mark.parametrize("width,height", [(1, 1), (17, 1), (16, 33)])
def test_tiny_and_odd_images_match_reference(width, height):
    scene = random_scene(n=20, width=width, height=height, seed=12)
    scene["scales"] = scene["scales"] * 3
    ours, ref = render(scene, "cpu", grad=True), render(scene, "torch", grad=True)
    assert ours[0].shape == (1, height, width, 3)
    assert (ours[0] - ref[0]).abs().max() <= 1e-4
    assert (ours[1] - ref[1]).abs().max() <= 1e-4
    for name in PARAMS:
        assert_close_scaled(ours[4][name], ref[4][name], 2e-4, name)


def test_camera_batch_equals_separate_cameras():
    scene = random_scene(n=50, cameras=3, seed=13)
    batch = render(scene, "cpu", grad=True)
    summed = {name: torch.zeros_like(batch[4][name]) for name in PARAMS[:5]}
    for c in range(3):
        one = render(scene, "cpu", grad=True, viewmats=scene["viewmats"][c:c + 1], Ks=scene["Ks"][c:c + 1],
                     backgrounds=scene["backgrounds"][c:c + 1])
        # The cotangents differ per call, so compare the images, and gradients of a fixed loss below.
        assert torch.equal(one[0][0], batch[0][c])
        assert torch.equal(one[1][0], batch[1][c])
        assert torch.equal(one[3]["radii"][0], batch[3]["radii"][c])

    # Gradients of sum(colors): the batch gradient is the sum of the per-camera ones.
    def grads_of_sum(viewmats, Ks, backgrounds):
        leaves = {k: scene[k].clone().requires_grad_(True) for k in PARAMS if k != "backgrounds"}
        colors, _, _ = rasterization(*(leaves[k] for k in PARAMS[:5]), viewmats, Ks, scene["width"],
                                     scene["height"], backgrounds=backgrounds)
        colors.sum().backward()
        return {k: v.grad for k, v in leaves.items()}

    together = grads_of_sum(scene["viewmats"], scene["Ks"], scene["backgrounds"])
    for c in range(3):
        for name, value in grads_of_sum(scene["viewmats"][c:c + 1], scene["Ks"][c:c + 1],
                                        scene["backgrounds"][c:c + 1]).items():
            summed[name] += value
    for name, value in together.items():
        assert_close_scaled(value, summed[name], 1e-5, name)


def test_results_are_bitwise_deterministic_across_runs_and_threads():
    scene = random_scene(n=300, cameras=2, width=70, height=45, seed=14)
    scene["scales"] = scene["scales"] * 0.5
    threads = torch.get_num_threads()
    try:
        results = []
        for n_threads in (1, 2, 2):
            torch.set_num_threads(n_threads)
            results.append(render(scene, "cpu", grad=True))
    finally:
        torch.set_num_threads(threads)
    first = results[0]
    for other in results[1:]:
        for a, b in zip(first[:3], other[:3]):
            assert torch.equal(a, b)
        for name in PARAMS + ("means2d",):
            assert torch.equal(first[4][name], other[4][name]), name


def test_memory_stays_flat_over_many_calls():
    scene = random_scene(n=400, width=48, height=40, seed=15)
    process = psutil.Process()

    def step():
        render(scene, "cpu", grad=True)

    for _ in range(50):
        step()
    before = process.memory_info().rss
    for _ in range(1000):
        step()
    growth_mb = (process.memory_info().rss - before) / 2**20
    assert growth_mb < 20, f"RSS grew by {growth_mb:.1f} MiB over 1000 calls"


def test_invalid_inputs_raise_clear_errors():
    scene = random_scene(n=4, seed=16)
    with pytest.raises(ValueError, match="quats"):
        render(scene, "cpu", quats=scene["quats"][:, :3])
    with pytest.raises(ValueError, match="float32"):
        render(scene, "cpu", scales=scene["scales"].double())
    with pytest.raises(ValueError, match="backgrounds"):
        render(scene, "cpu", backgrounds=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="backend"):
        render(scene, "opengl")
    with pytest.raises(ValueError, match="camera gradients"):
        rasterization(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
                      scene["viewmats"].clone().requires_grad_(True), scene["Ks"], 37, 29)


def test_gsplat_backend_matches_reference():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the gsplat backend only runs on a GPU")
    pytest.importorskip("gsplat", reason="gsplat is not installed (pip install 'talking-avatar[cuda]')")
    scene = random_scene(n=60, cameras=2, seed=17)
    scene["opacities"] = scene["opacities"].clamp(max=0.9)  # gsplat clamps alpha at 0.999, we at 0.99
    ref = render(scene, "torch", grad=True)
    cuda_scene = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in scene.items()}
    ours = render(cuda_scene, "cuda", grad=True)
    assert (ours[0].cpu() - ref[0]).abs().max() <= 1e-3
    assert (ours[1].cpu() - ref[1]).abs().max() <= 1e-3
    for name in PARAMS:
        assert_close_scaled(ours[4][name].cpu(), ref[4][name], 5e-3, name)
