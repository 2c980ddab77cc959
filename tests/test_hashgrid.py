"""Hash-grid encoder: the compiled CPU kernel against the PyTorch reference.

Everything here is synthetic (random points and tables), so no test data is needed.
The first test to touch the kernel compiles it (about 30 s, cached afterwards).
"""

from __future__ import annotations

import gc
import math

import psutil
import pytest
import torch

from avatar.core.errors import UserError
from avatar.render.hashgrid import (HashGrid, HashGridConfig, hash_grid_encode,
                                    hash_grid_layout)
from avatar.render.hashgrid_reference import hash_grid_encode_reference

# Small grids that still mix dense and hashed levels, one per feature width.
SMALL_CONFIGS = [
    HashGridConfig(n_levels=4, n_features_per_level=1, log2_hashmap_size=10, base_resolution=4,
                   max_resolution=64),
    HashGridConfig(n_levels=6, n_features_per_level=2, log2_hashmap_size=12, base_resolution=8,
                   max_resolution=512),
    HashGridConfig(n_levels=3, n_features_per_level=4, log2_hashmap_size=9, base_resolution=3,
                   per_level_scale=2.5),
    HashGridConfig(n_levels=2, n_features_per_level=8, log2_hashmap_size=8, base_resolution=2,
                   max_resolution=16),
]

ALL_CONFIGS = SMALL_CONFIGS + [HashGridConfig()]


def config_id(cfg: HashGridConfig) -> str:
    return f"F{cfg.n_features_per_level}L{cfg.n_levels}"


def random_table(cfg: HashGridConfig, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """A table with O(1) entries, so that errors are not hidden by the 1e-4 init scale."""
    rows = hash_grid_layout(cfg).n_rows
    return torch.rand(rows, cfg.n_features_per_level, generator=gen, dtype=dtype) * 2 - 1


def points_in_and_around_cube(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) float32, mostly inside [0, 1]^3, some outside on each axis."""
    return torch.rand(n, 3, generator=gen) * 1.2 - 0.1


def grads(out: torch.Tensor, inputs: tuple[torch.Tensor, ...], grad_out: torch.Tensor):
    return torch.autograd.grad(out, inputs, grad_out)


def test_default_layout_follows_instant_ngp():
    cfg = HashGridConfig()
    layout = hash_grid_layout(cfg)
    assert math.isclose(cfg.level_scale(), 2 ** (7 / 15))  # (2048 / 16) ^ (1 / 15)
    assert layout.resolutions[0] == 16 and layout.resolutions[-1] == 2048
    assert layout.hashed == (False,) * 5 + (True,) * 11  # (res+1)^3 <= 2^19 up to res 58
    expected = sum(min((r + 1) ** 3, 2 ** 19) for r in layout.resolutions)
    assert layout.n_rows == expected == 6_098_925
    assert layout.offsets[6] - layout.offsets[5] == 2 ** 19


@pytest.mark.parametrize("cfg", ALL_CONFIGS, ids=config_id)
def test_forward_matches_reference(cfg):
    gen = torch.Generator().manual_seed(0)
    table = random_table(cfg, gen)
    x = points_in_and_around_cube(3000, gen)
    out = hash_grid_encode(x, table, cfg, backend="cpu")
    ref = hash_grid_encode_reference(x, table, hash_grid_layout(cfg))
    assert out.shape == (3000, cfg.output_dim) and out.dtype == torch.float32
    assert (out - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("cfg", ALL_CONFIGS, ids=config_id)
def test_gradients_match_reference(cfg):
    gen = torch.Generator().manual_seed(1)
    table = random_table(cfg, gen).requires_grad_()
    x = points_in_and_around_cube(2000, gen).requires_grad_()
    grad_out = torch.randn(2000, cfg.output_dim, generator=gen)
    g_x, g_table = grads(hash_grid_encode(x, table, cfg, backend="cpu"), (x, table), grad_out)
    r_x, r_table = grads(hash_grid_encode(x, table, cfg, backend="torch"), (x, table), grad_out)
    assert (g_table - r_table).abs().max().item() <= 1e-4
    # d out / dx scales with the finest resolution: compare relative to its size.
    assert (g_x - r_x).abs().max().item() <= 1e-5 * r_x.abs().max().item()
    assert r_x.abs().max().item() > 0


def test_reference_passes_gradcheck_in_float64():
    cfg = HashGridConfig(n_levels=3, n_features_per_level=2, log2_hashmap_size=6, base_resolution=2,
                         max_resolution=8)
    gen = torch.Generator().manual_seed(2)
    layout = hash_grid_layout(cfg)
    assert any(layout.hashed) and not all(layout.hashed)
    table = random_table(cfg, gen, torch.float64).requires_grad_()
    # Points whose cells at every level are at least 0.1 cell from a face, so the
    # finite differences never straddle a kink of the piecewise-linear encoding.
    x = torch.rand(400, 3, generator=gen, dtype=torch.float64)
    frac_ok = torch.ones(400, dtype=torch.bool)
    for res in layout.resolutions:
        frac = (x * res) % 1
        frac_ok &= ((frac > 0.1) & (frac < 0.9)).all(dim=1)
    x = x[frac_ok][:12].clone().requires_grad_()
    assert x.shape[0] == 12
    assert torch.autograd.gradcheck(lambda x_, t_: hash_grid_encode_reference(x_, t_, layout),
                                    (x, table), eps=1e-6, atol=1e-6)


def test_compiled_backward_matches_finite_differences():
    cfg = HashGridConfig(n_levels=3, n_features_per_level=2, log2_hashmap_size=8, base_resolution=4,
                         max_resolution=16)
    layout = hash_grid_layout(cfg)
    gen = torch.Generator().manual_seed(3)
    table = random_table(cfg, gen).requires_grad_()
    x = torch.rand(500, 3, generator=gen)
    # Keep x +- step inside one cell at every level (step * res = 0.016 of a cell).
    step = 1e-3
    frac_ok = torch.ones(500, dtype=torch.bool)
    for res in layout.resolutions:
        frac = (x * res) % 1
        frac_ok &= ((frac > 0.05) & (frac < 0.95)).all(dim=1)
    x = x[frac_ok].contiguous().requires_grad_()
    weights = torch.randn(x.shape[0], cfg.output_dim, generator=gen)

    def loss(x_: torch.Tensor, table_: torch.Tensor) -> float:
        with torch.no_grad():
            out = hash_grid_encode(x_, table_, cfg, backend="cpu")
        return (out.double() * weights.double()).sum().item()

    g_x, g_table = grads(hash_grid_encode(x, table, cfg, backend="cpu"), (x, table), weights)
    # The encoding is linear in the table: a central difference along a random
    # direction is exact up to float32 rounding of the outputs.
    direction = torch.randn(table.shape, generator=gen)
    h = 1e-2
    fd = (loss(x, table + h * direction) - loss(x, table - h * direction)) / (2 * h)
    assert fd == pytest.approx((g_table * direction).sum().item(), rel=1e-3)
    # Per axis: move each point along d, uphill, so the per-point terms cannot cancel.
    for d in range(3):
        shift = torch.zeros_like(x)
        shift[:, d] = step * g_x[:, d].sign()
        fd = (loss(x + shift, table) - loss(x - shift, table)) / (2 * step)
        assert fd == pytest.approx(g_x[:, d].abs().sum().item(), rel=1e-2)


def test_boundary_and_outside_points():
    cfg = SMALL_CONFIGS[1]
    gen = torch.Generator().manual_seed(4)
    table = random_table(cfg, gen).requires_grad_()
    corners = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.5], [1.0, 0.25, 0.0]])
    outside = torch.tensor([[-0.5, 0.3, 0.7], [1.5, 2.0, -3.0], [0.2, 1.0 + 1e-6, 0.4]])
    x = torch.cat([corners, outside]).requires_grad_()
    grad_out = torch.randn(x.shape[0], cfg.output_dim, generator=gen)
    out = hash_grid_encode(x, table, cfg, backend="cpu")
    ref = hash_grid_encode(x, table, cfg, backend="torch")
    assert (out - ref).abs().max().item() <= 1e-5
    # Outside points encode exactly as their clamped copies.
    clamped = hash_grid_encode(outside.clamp(0, 1), table, cfg, backend="cpu")
    assert torch.equal(out[len(corners):], clamped)
    g_x, g_table = grads(out, (x, table), grad_out)
    r_x, r_table = grads(ref, (x, table), grad_out)
    assert (g_table - r_table).abs().max().item() <= 1e-4
    assert (g_x - r_x).abs().max().item() <= 1e-5 * r_x.abs().max().item()
    # No gradient along a clamped axis, some along the others.
    assert g_x[4, 0] == 0 and g_x[5].abs().sum() == 0 and g_x[6, 1] == 0
    assert g_x[4, 1] != 0 and g_x[6, 0] != 0


def test_deterministic_across_runs_and_thread_counts():
    cfg = HashGridConfig(log2_hashmap_size=14)
    gen = torch.Generator().manual_seed(5)
    table = random_table(cfg, gen).requires_grad_()
    x = torch.rand(20000, 3, generator=gen).requires_grad_()
    grad_out = torch.randn(20000, cfg.output_dim, generator=gen)
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (1, 2, 2):
            torch.set_num_threads(n_threads)
            out = hash_grid_encode(x, table, cfg, backend="cpu")
            results.append((out.detach(), *grads(out, (x, table), grad_out)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_empty_input():
    cfg = SMALL_CONFIGS[1]
    table = torch.zeros(hash_grid_layout(cfg).n_rows, cfg.n_features_per_level, requires_grad=True)
    x = torch.zeros(0, 3, requires_grad=True)
    out = hash_grid_encode(x, table, cfg, backend="cpu")
    assert out.shape == (0, cfg.output_dim)
    out.sum().backward()
    assert table.grad is not None and table.grad.abs().sum() == 0
    assert x.grad.shape == (0, 3)


def test_memory_stays_flat_across_calls():
    grid = HashGrid(HashGridConfig(), backend="cpu")  # 49 MB table, 49 MB gradient per step
    x = torch.rand(20000, 3)
    process = psutil.Process()

    def step():
        grid.table.grad = None
        grid(x).square().mean().backward()

    for _ in range(3):
        step()
    gc.collect()
    before = process.memory_info().rss
    for _ in range(30):
        step()
    gc.collect()
    growth = process.memory_info().rss - before
    assert growth < 30 * 2 ** 20, f"RSS grew by {growth / 2 ** 20:.1f} MiB over 30 steps"


def test_recycled_gradient_buffers_are_zeroed_and_never_aliased():
    # The kernel reuses the memory of the last freed table gradient (>= 1 MiB):
    # a gradient still held must keep its values, and a recycled one must start at zero.
    cfg = HashGridConfig(n_levels=8, log2_hashmap_size=16)
    gen = torch.Generator().manual_seed(11)
    table = random_table(cfg, gen).requires_grad_()
    assert table.numel() * 4 >= 2 ** 20

    def table_grad(n_points: int, backend: str) -> torch.Tensor:
        x = torch.rand(n_points, 3, generator=torch.Generator().manual_seed(n_points))
        out = hash_grid_encode(x, table, cfg, backend=backend)
        return torch.autograd.grad(out, table, torch.ones_like(out))[0]

    expected = {n: table_grad(n, "torch") for n in (5000, 50, 7)}
    held = table_grad(5000, "cpu")
    for n in (50, 7, 50):  # few points: stale rows from the 5000-point step would show
        assert torch.allclose(table_grad(n, "cpu"), expected[n], atol=1e-5)
    assert torch.allclose(held, expected[5000], atol=1e-5)

    # Two grids of different sizes, alternating, each recycle their own buffers.
    other_cfg = HashGridConfig(n_levels=6, log2_hashmap_size=16)
    other_table = random_table(other_cfg, gen).requires_grad_()
    x = torch.rand(40, 3, generator=gen)
    for _ in range(3):
        for c, t in ((cfg, table), (other_cfg, other_table)):
            got = torch.autograd.grad(hash_grid_encode(x, t, c, backend="cpu").sum(), t)[0]
            want = torch.autograd.grad(hash_grid_encode(x, t, c, backend="torch").sum(), t)[0]
            assert torch.allclose(got, want, atol=1e-5)

    grid = HashGrid(cfg, backend="cpu")
    x = torch.rand(300, 3, generator=gen)
    grid(x).sum().backward()
    once = grid.table.grad.clone()
    grid(x).sum().backward()  # accumulates into the gradient kept from the first step
    assert torch.allclose(grid.table.grad, 2 * once, atol=1e-6)


def test_large_batches_match_reference_through_recycled_scratch():
    # Batches whose level-major scratch is >= 1 MiB take it from the recycled mappings,
    # which hold the previous call's values: every output must still be this call's.
    cfg = HashGridConfig(n_levels=8, log2_hashmap_size=12, base_resolution=4, max_resolution=256)
    layout = hash_grid_layout(cfg)
    gen = torch.Generator().manual_seed(13)
    table = random_table(cfg, gen).requires_grad_()
    n = 20001  # scratch 1.3 MB; odd, so that the scalar tail after the 8-point blocks runs
    for _ in range(3):
        x = points_in_and_around_cube(n, gen)
        grad_out = torch.randn(n, cfg.output_dim, generator=gen)
        out = hash_grid_encode(x, table, cfg, backend="cpu")
        ref = hash_grid_encode_reference(x, table, layout)
        assert (out - ref).abs().max().item() <= 1e-5
        (got,) = grads(out, (table,), grad_out)
        (want,) = grads(ref, (table,), grad_out)
        assert torch.allclose(got, want, atol=1e-4)


def test_module_init_shape_and_backends_agree():
    cfg = SMALL_CONFIGS[1]
    grid = HashGrid(cfg, backend="cpu")
    assert grid.table.shape == (hash_grid_layout(cfg).n_rows, 2)
    assert grid.table.abs().max().item() <= 1e-4 and grid.table.std().item() > 1e-5
    assert grid.output_dim == cfg.output_dim == 12
    x = torch.rand(100, 3)
    out = grid(x)
    assert out.shape == (100, 12) and out.dtype == torch.float32
    assert torch.allclose(out, hash_grid_encode(x, grid.table, cfg, backend="torch"), atol=1e-8)
    assert torch.equal(out, hash_grid_encode(x, grid.table, cfg))  # auto picks the kernel on CPU


def test_bad_configs_and_backends_are_user_errors():
    with pytest.raises(UserError, match="n_features_per_level"):
        HashGridConfig(n_features_per_level=3)
    with pytest.raises(UserError, match="log2_hashmap_size"):
        HashGridConfig(log2_hashmap_size=40)
    with pytest.raises(UserError, match="backend"):
        HashGrid(SMALL_CONFIGS[0], backend="gpu")
    table = torch.zeros(hash_grid_layout(SMALL_CONFIGS[0]).n_rows, SMALL_CONFIGS[0].n_features_per_level)
    with pytest.raises(UserError, match="CUDA tensors"):
        hash_grid_encode(torch.rand(4, 3), table, SMALL_CONFIGS[0], backend="cuda")


def test_cuda_backend_keeps_the_cpu_layout_and_names_the_device_it_needs():
    cfg = SMALL_CONFIGS[1]
    cpu, cuda = HashGrid(cfg, backend="cpu"), HashGrid(cfg, backend="cuda")
    assert {k: v.shape for k, v in cpu.state_dict().items()} == \
        {k: v.shape for k, v in cuda.state_dict().items()}
    cuda.load_state_dict(cpu.state_dict())  # the same parameters move between backends
    with pytest.raises(UserError, match="CUDA tensors"):
        cuda(torch.rand(4, 3))


CUDA_ABSENT = not torch.cuda.is_available()


@pytest.mark.skipif(CUDA_ABSENT, reason="no CUDA device: the cross-backend parity runs on a GPU only")
def test_a_field_trained_on_one_backend_encodes_the_same_on_the_other():
    cfg = SMALL_CONFIGS[1]
    torch.manual_seed(0)
    x = torch.rand(4096, 3)
    target = torch.randn(4096, cfg.output_dim) * 1e-2
    for first, second in (("cpu", "cuda"), ("cuda", "cpu")):
        device = lambda b: "cuda" if b == "cuda" else "cpu"  # noqa: E731
        grid = HashGrid(cfg, backend=first).to(device(first))
        opt = torch.optim.Adam(grid.parameters(), lr=1e-2)
        for _ in range(5):  # a trained table, not just its initialisation
            opt.zero_grad()
            (grid(x.to(device(first))) - target.to(device(first))).square().mean().backward()
            opt.step()
        other = HashGrid(cfg, backend=second).to(device(second))
        other.load_state_dict({k: v.to(device(second)) for k, v in grid.state_dict().items()})
        a = grid(x.to(device(first))).cpu()
        b = other(x.to(device(second))).cpu()
        assert (a - b).abs().max().item() <= 1e-5, f"{first} -> {second}"
        for g in (grid, other):
            g.zero_grad()
            g(x.to(next(g.parameters()).device)).square().sum().backward()
        assert torch.allclose(grid.table.grad.cpu(), other.table.grad.cpu(), atol=1e-4), f"{first} -> {second}"
