"""Densification: clone narrow, split wide, prune faint, never orphan a triangle; the optimiser follows."""

from __future__ import annotations

import numpy as np
import torch

from avatar.fit.config import DensifyConfig, FitConfig
from avatar.fit.strategy import SPLIT_SHRINK, DensifyStrategy
from avatar.fit.trainer import _param_groups
from avatar.model.gaussians import GROUPS, AvatarGaussians, GaussianGroup


def _group(n: int, parent=None, jaw=None, seed: int = 0) -> GaussianGroup:
    g = torch.Generator().manual_seed(seed)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    return GaussianGroup(torch.randn(n, 3, generator=g), quats, torch.full((n, 3), -3.0), torch.full((n,), 2.0),
                         torch.randn(n, 3, generator=g), parent=parent, jaw=jaw)


def _model() -> AvatarGaussians:
    face = _group(6, parent=torch.tensor([0, 0, 1, 1, 2, 2]))
    mouth = _group(2, jaw=torch.tensor([0.0, 1.0]), seed=1)
    return AvatarGaussians(face, mouth, _group(3, seed=2), _group(2, seed=3), faces=torch.zeros((3, 3)),
                           mean_shape=torch.zeros((5, 3)), jaw_vertices=torch.tensor([0]), rest_viewmat=torch.eye(4))


def _stepped(model):
    opt = torch.optim.Adam(_param_groups(model, FitConfig()))
    loss = sum((p ** 2).sum() for p in model.parameters())
    loss.backward()
    opt.step()
    return opt


def test_refine_clones_splits_and_prunes():
    model = _model()
    opt = _stepped(model)
    cfg = DensifyConfig(grad_threshold=0.5, split_scale_px=2.0, prune_opacity=0.5)
    strategy = DensifyStrategy(cfg, iterations=100, n_gaussians=len(model))
    # face 0: steep and narrow -> cloned; face 2: steep and wide -> split; face 4, 5: faint (triangle 2 keeps one)
    strategy.grad_sum[[0, 2]] = 1.0
    strategy.count[:] = 1
    strategy.max_radius[:] = 3.0  # 1 px standard deviation: narrow
    strategy.max_radius[2] = 30.0
    with torch.no_grad():
        model.face.opacity_logits[[4, 5]] = torch.tensor([-5.0, -4.0])
        model.head.opacity_logits[0] = -5.0
        model.face.color_basis.copy_(torch.randn(model.face.color_basis.shape))
    before = {k: v.clone() for k, v in model.face.state_dict().items()}
    exp_avg_before = opt.state[model.face.means]["exp_avg"].clone()
    strategy.refine(model, opt, np.random.default_rng(0))
    face = model.face
    # kept: 0, 1, 3, 5 (5 is triangle 2's most opaque), then the clone of 0, then two children of 2
    assert len(face) == 4 + 1 + 2
    assert face.parent.tolist() == [0, 0, 1, 2, 0, 1, 1]
    assert torch.equal(face.means[4], before["means"][0])
    assert torch.allclose(face.log_scales[5:], before["log_scales"][2] - np.log(SPLIT_SHRINK))
    # clones and children shade with the pose as their parent did
    assert torch.equal(face.color_basis[4], before["color_basis"][0])
    assert all(torch.equal(face.color_basis[k], before["color_basis"][2]) for k in (5, 6))
    assert len(model.head) == 2 and len(model.mouth) == 2 and len(model.torso) == 2
    # optimiser: the kept rows keep their moments, the new rows start at zero; it still steps
    state = opt.state[face.means]
    assert torch.equal(state["exp_avg"][:4], exp_avg_before[[0, 1, 3, 5]])
    assert torch.all(state["exp_avg"][4:] == 0)
    assert all(any(p is q for g in opt.param_groups for q in g["params"]) for p in model.parameters())
    sum((p ** 2).sum() for p in model.parameters()).backward()
    opt.step()
    assert len(strategy.grad_sum) == len(model)


def test_a_triangle_never_loses_its_last_gaussian():
    model = _model()
    opt = _stepped(model)
    with torch.no_grad():
        model.face.opacity_logits[:] = -8.0  # every face Gaussian faint
    strategy = DensifyStrategy(DensifyConfig(prune_opacity=0.5), iterations=100, n_gaussians=len(model))
    strategy.refine(model, opt, np.random.default_rng(0))
    assert sorted(model.face.parent.tolist()) == [0, 1, 2]


def test_densification_stops_at_max_gaussians():
    model = _model()
    opt = _stepped(model)
    n = len(model)
    strategy = DensifyStrategy(DensifyConfig(grad_threshold=0.0, max_gaussians=n + 2, prune_opacity=0.0),
                               iterations=100, n_gaussians=n)
    strategy.grad_sum[:] = torch.arange(n, dtype=torch.float32) + 1
    strategy.count[:] = 1
    strategy.max_radius[:] = 1.0
    strategy.refine(model, opt, np.random.default_rng(0))
    assert len(model) == n + 2
    assert [len(getattr(model, g)) for g in GROUPS] == [6, 2, 3, 4]  # the two steepest are the torso's


def test_the_face_and_mouth_can_keep_their_colours_off_the_pose():
    """`fit.lr.color_basis_face` steps the face's and the mouth's colour basis apart from hair, ears and torso."""
    from avatar.fit.config import LearningRates

    cfg = FitConfig(lr=LearningRates(color_basis=2e-3, color_basis_face=0.0))
    rates = {g["name"]: g["lr"] for g in _param_groups(_model(), cfg)}
    assert rates["face.color_basis"] == 0.0 and rates["mouth.color_basis"] == 0.0
    assert rates["head.color_basis"] == 2e-3 and rates["torso.color_basis"] == 2e-3
