"""The projection step alone: compiled CPU kernel (cuda_ext/csrc/rasterize_project.cpp,
through ``avatar.render.cpu._Projection``) against the PyTorch reference
(``avatar.render.reference.project``), values and gradients.

tests/test_rasterize.py compares whole renders; a projection error can hide there
behind compositing (a Gaussian drawn half a pixel off changes few pixels). Here each
projected quantity is compared per Gaussian: means2d, conics, depths, extents, radii,
and the gradients of means, quats and scales. The scene has two cameras with an
off-centre principal point and fx != fy, Gaussians inside the view, off-centre ones
whose projection Jacobian is clamped (gsplat's 1.3x field of view), one just beyond the
near plane, and ones that must be culled (before the near plane, behind the camera,
beyond the far plane, transparent, far off-screen).

The tests named ``..._catches_a_broken_projection`` show that the tolerances are tight
enough: compared with a reference given a principal point half a pixel off, a focal
length 0.1% off, fx and fy swapped, the camera rotation transposed, no eps2d or an
unclamped Jacobian, the kernel's values (and, for most of these, its gradients) fail.
A kernel broken that way fails the same comparisons against the true reference.
"""

from __future__ import annotations

import math

import pytest
import torch

from avatar.render import rasterization, reference
from avatar.render.cpu import _Projection, _Settings

WIDTH, HEIGHT = 64, 48
EPS2D, NEAR, FAR = 0.3, 0.01, 1e10
FIELDS = ("means2d", "conics", "depths", "extents", "radii")

# Gaussians placed on purpose (index: role); the rest of the scene is random and in view.
CLAMPED = (0, 1, 2)       # far off-centre, big: visible, with a clamped Jacobian in camera 0
NEAR_VISIBLE = 3          # 2 cm in front of the camera: visible, huge
NEAR_CULLED = 4           # 5 mm in front of the camera: before the near plane
BEHIND = 5                # behind the camera
BEYOND_FAR = 6            # beyond the far plane
TRANSPARENT = 7           # opacity below 1/255
OFF_SCREEN = 8            # far to the side, small
NO_ROTATION = 9           # a zero quaternion (divided by the clamped norm)
CULLED = (NEAR_CULLED, BEHIND, BEYOND_FAR, TRANSPARENT, OFF_SCREEN)


def scene(n_random: int = 40, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = 10 + n_random
    means = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([0.3, 0.25, 0.3],
                                                                                dtype=torch.float64)
    means[:, 2] += 2.0
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.08 + 0.01
    opacities = torch.rand(n, generator=g, dtype=torch.float64) * 0.9 + 0.05

    # Placed Gaussians, in camera 0's coordinates (its rotation is the identity).
    t0 = torch.tensor([0.01, -0.01, 0.0], dtype=torch.float64)
    place = {CLAMPED[0]: [1.7, 0.1, 2.0],       # x/z = 0.85: right of the clamp (0.64)
             CLAMPED[1]: [-1.6, -0.2, 2.0],     # left of it
             CLAMPED[2]: [0.1, 1.5, 2.0],       # below it
             NEAR_VISIBLE: [0.002, -0.001, 0.02], NEAR_CULLED: [0.0, 0.0, 0.005],
             BEHIND: [0.1, 0.0, -1.0], BEYOND_FAR: [0.0, 0.0, 2e10], OFF_SCREEN: [50.0, 0.0, 2.0]}
    for i, xyz in place.items():
        means[i] = torch.tensor(xyz, dtype=torch.float64) - t0
    scales[list(CLAMPED)] = torch.tensor([0.45, 0.5, 0.4], dtype=torch.float64)
    opacities[list(CLAMPED)] = 0.9
    scales[NEAR_VISIBLE] = torch.tensor([0.004, 0.003, 0.002], dtype=torch.float64)
    opacities[TRANSPARENT] = 1e-3
    quats[NO_ROTATION] = 0.0

    # Camera 0 looks down +z from near the origin; camera 1 is turned and shifted. Both
    # have an off-centre principal point and fx != fy, so swapped or mis-indexed K
    # entries show.
    viewmats = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    viewmats[0, :3, 3] = t0
    a, b = 0.15, -0.1
    ry = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    viewmats[1, :3, :3] = (rx @ ry).double()
    viewmats[1, :3, 3] = torch.tensor([-0.05, 0.03, 0.0])
    Ks = torch.tensor([[[70.0, 0, 0.45 * WIDTH], [0, 64.0, 0.55 * HEIGHT], [0, 0, 1]],
                       [[58.0, 0, 0.52 * WIDTH], [0, 61.0, 0.47 * HEIGHT], [0, 0, 1]]],
                      dtype=torch.float64)
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, viewmats=viewmats,
                Ks=Ks)


def kernel_project(s: dict, threads: int | None = None) -> dict:
    settings = _Settings(width=WIDTH, height=HEIGHT, eps2d=EPS2D, near_plane=NEAR, far_plane=FAR,
                         threads=threads or torch.get_num_threads())
    args = [s[k].float().contiguous() for k in ("means", "quats", "scales", "opacities", "viewmats", "Ks")]
    return dict(zip(FIELDS, _Projection.apply(*args, settings)))


def reference_project(s: dict, eps2d: float = EPS2D) -> dict:
    p = reference.project(s["means"], s["quats"], s["scales"], s["opacities"], s["viewmats"], s["Ks"],
                          WIDTH, HEIGHT, eps2d=eps2d, near_plane=NEAR, far_plane=FAR)
    return p._asdict()


def mismatches(ours: dict, ref: dict) -> list[str]:
    """The projected quantities of ``ours`` (float32 kernel) that differ from ``ref``
    (float64 reference) beyond float32 rounding, per Gaussian; [] when all agree."""
    bad = []
    if not torch.equal(ours["radii"] > 0, ref["radii"] > 0):
        bad.append("culling")
    if (ours["radii"] - ref["radii"]).abs().max() > 1:
        bad.append("radii")
    seen = (ours["radii"] > 0) & (ref["radii"] > 0)
    # Pixel positions to a thousandth of a pixel (float32 rounding is ~5e-6 px here).
    if (ours["means2d"].double() - ref["means2d"])[seen].abs().max() > 1e-3:
        bad.append("means2d")
    # Conics (1/px^2) and extents (px) relative to each Gaussian's own magnitude.
    for name in ("conics", "extents"):
        size = ref[name][seen].abs().amax(-1, keepdim=True)
        if ((ours[name].double() - ref[name])[seen].abs() / size).max() > 1e-4:
            bad.append(name)
    if ((ours["depths"].double() - ref["depths"])[seen].abs() / ref["depths"][seen]).max() > 1e-6:
        bad.append("depths")
    # What is culled is all zero.
    for name in ("means2d", "conics", "depths", "extents"):
        if ours[name][~(ours["radii"] > 0)].abs().sum() != 0:
            bad.append(f"{name} of culled")
    return bad


def test_projection_matches_reference_per_gaussian():
    s = scene()
    ours, ref = kernel_project(s), reference_project(s)
    assert ours["means2d"].shape == (2, 50, 2) and ours["radii"].dtype == torch.int32
    assert mismatches(ours, ref) == []
    # Float32 against float32 rounds the same way: the radii (ceil of the extents) agree exactly.
    ref32 = reference_project({k: v.float() for k, v in s.items()})
    assert torch.equal(ours["radii"], ref32["radii"])

    visible = ours["radii"] > 0
    # The scene exercises what it means to (in camera 0, where the Gaussians were placed):
    # the culled are culled, the other placed ones drawn; most random ones are drawn in both.
    assert not visible[0, list(CULLED)].any() and not visible[:, [TRANSPARENT, BEYOND_FAR]].any()
    assert visible[0, list(CLAMPED) + [NEAR_VISIBLE, NO_ROTATION]].all()
    assert visible[:, 10:].float().mean() > 0.9
    # ... and the clamped ones really are outside the clamp (their centres are off the image).
    m2d = ours["means2d"][0, list(CLAMPED)]
    assert ((m2d[:, 0] < 0) | (m2d[:, 0] > WIDTH) | (m2d[:, 1] < 0) | (m2d[:, 1] > HEIGHT)).all()
    # The one 2 cm away is huge on screen, as a pinhole camera makes it.
    assert ours["radii"][0, NEAR_VISIBLE] > 3 * ours["radii"][0, 10:].float().median()


def test_projection_is_what_rasterization_reports():
    """The public CPU path returns these very numbers in its meta dict."""
    s = {k: v.float() for k, v in scene(seed=1).items()}
    n = len(s["means"])
    _, _, meta = rasterization(s["means"], s["quats"], s["scales"], s["opacities"], torch.rand(n, 3),
                               s["viewmats"], s["Ks"], WIDTH, HEIGHT, eps2d=EPS2D, near_plane=NEAR,
                               far_plane=FAR, backend="cpu")
    ours = kernel_project(s)
    for ours_name, meta_name in (("means2d", "means2d"), ("conics", "conics"), ("depths", "depths_gauss"),
                                 ("extents", "extents"), ("radii", "radii")):
        assert torch.equal(ours[ours_name], meta[meta_name]), meta_name


def _unclamped_jacobian(mean_c, Ks, width, height):
    """The perspective Jacobian without gsplat's 1.3x field-of-view clamp (a broken reference)."""
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    x, y, z = mean_c.unbind(-1)
    zero = torch.zeros_like(z)
    return torch.stack([torch.stack([fx / z, zero, -fx * x / (z * z)], dim=-1),
                        torch.stack([zero, fy / z, -fy * y / (z * z)], dim=-1)], dim=-2)


BROKEN = ["principal point +0.5 px", "focal +0.1%", "fx and fy swapped", "rotation transposed",
          "no eps2d", "Jacobian not clamped"]


def break_projection(broken: str, s: dict, monkeypatch) -> tuple[dict, float]:
    """The scene changed as a broken projection would see it, and the eps2d it would use."""
    wrong = {k: v.clone() for k, v in s.items()}
    eps2d = EPS2D
    if broken == "principal point +0.5 px":
        wrong["Ks"][:, 0, 2] += 0.5
    elif broken == "focal +0.1%":
        wrong["Ks"][:, 0, 0] *= 1.001
        wrong["Ks"][:, 1, 1] *= 1.001
    elif broken == "fx and fy swapped":
        wrong["Ks"][:, 0, 0], wrong["Ks"][:, 1, 1] = s["Ks"][:, 1, 1], s["Ks"][:, 0, 0]
    elif broken == "rotation transposed":
        wrong["viewmats"][:, :3, :3] = s["viewmats"][:, :3, :3].transpose(-1, -2)
    elif broken == "no eps2d":
        eps2d = 0.0
    elif broken == "Jacobian not clamped":
        monkeypatch.setattr(reference, "_jacobian", _unclamped_jacobian)
    return wrong, eps2d


@pytest.mark.parametrize("broken", BROKEN)
def test_the_comparison_catches_a_broken_projection(broken, monkeypatch):
    s = scene()
    ours = kernel_project(s)
    wrong, eps2d = break_projection(broken, s, monkeypatch)
    assert mismatches(ours, reference_project(wrong, eps2d=eps2d)) != []


def _weighted_sum(out: dict, weights: dict) -> torch.Tensor:
    return sum((out[k].double() * weights[k]).sum() for k in ("means2d", "conics", "depths"))


def gradient_errors(s: dict, eps2d: float = EPS2D, truth: dict | None = None) -> dict[str, float]:
    """Backward of a fixed random linear loss of means2d, conics and depths (each term
    weighted to its own scale): the kernel's gradients of means, quats and scales against
    autograd through the reference on ``truth`` (default ``s``), as the worst per-Gaussian
    error relative to that Gaussian's largest gradient entry. Also checks what must hold
    exactly: finite, nothing for the culled, nothing for opacity."""
    truth = s if truth is None else truth
    ref_out = reference_project(truth, eps2d)
    g = torch.Generator().manual_seed(7)
    weights = {}
    for k in ("means2d", "conics", "depths"):
        scale = ref_out[k].abs().amax(-1, keepdim=True) if k != "depths" else ref_out[k].abs()
        weights[k] = torch.randn(ref_out[k].shape, generator=g, dtype=torch.float64) / scale.clamp_min(1e-12)

    names = ("means", "quats", "scales", "opacities")
    ref_leaves = {k: truth[k].clone().requires_grad_(True) for k in names}
    _weighted_sum(reference_project(truth | ref_leaves, eps2d), weights).backward()
    our_leaves = {k: s[k].float().requires_grad_(True) for k in names}
    _weighted_sum(kernel_project(s | our_leaves), weights).backward()

    # Opacity only decides culling: no gradient in either.
    assert ref_leaves["opacities"].grad is None and our_leaves["opacities"].grad is None
    visible = kernel_project(s)["radii"].amax(0) > 0
    errors = {}
    for k in ("means", "quats", "scales"):
        ours, ref = our_leaves[k].grad.double(), ref_leaves[k].grad
        assert torch.isfinite(ours).all(), k
        # Culled in every camera: exactly no gradient.
        assert torch.equal(ours[~visible], torch.zeros_like(ours[~visible])), k
        # The zero quaternion sits where the rotation is flat (quadratic in q): no gradient.
        compared = visible.clone()
        if k == "quats":
            assert torch.equal(ours[NO_ROTATION], torch.zeros(4, dtype=ours.dtype))
            compared[NO_ROTATION] = False
        size = ref[compared].abs().amax(-1, keepdim=True)
        assert (size > 0).all(), f"{k}: some visible Gaussian gets no gradient"
        errors[k] = ((ours - ref)[compared].abs() / size).max().item()
    # Off-centre (clamped Jacobian) and very near Gaussians are among those compared.
    assert visible[list(CLAMPED)].all() and visible[NEAR_VISIBLE]
    return errors


GRAD_RTOL = 1e-4  # float32 rounding gives ~4e-6 here




def test_projection_gradients_match_reference():
    errors = gradient_errors(scene(seed=2))
    assert max(errors.values()) < GRAD_RTOL, errors


@pytest.mark.parametrize("broken", ["principal point +0.5 px", "rotation transposed", "no eps2d",
                                    "Jacobian not clamped"])
def test_the_gradient_comparison_catches_a_broken_projection(broken, monkeypatch):
    s = scene(seed=2)
    wrong, eps2d = break_projection(broken, s, monkeypatch)
    errors = gradient_errors(s, eps2d, truth=wrong)
    assert max(errors.values()) > GRAD_RTOL, errors


def test_projection_is_deterministic_across_thread_counts():
    s = scene(seed=3)
    one, two = kernel_project(s, threads=1), kernel_project(s, threads=2)
    for name in FIELDS:
        assert torch.equal(one[name], two[name]), name
