"""The residual deformation field: starts as the identity, learns expression-dependent offsets, saves and loads."""

from __future__ import annotations

import torch

from avatar.model.config import DeformConfig
from avatar.model.deform import make_deformation_field
from avatar.model.store import deform_settings, model_from_state
from tests.test_strategy import _model


def _with_field(n_expr=4):
    model = _model()
    model.faces = torch.tensor([[0, 1, 2], [1, 3, 2], [2, 3, 4]])
    model.mean_shape = torch.tensor([[0, 0, 0], [0.02, 0, 0], [0, 0.02, 0], [0.02, 0.02, 0], [0.01, 0.04, 0.0]])
    verts = model.mean_shape + 0.001
    plain = [t.detach().clone() for t in model.place(verts, torch.eye(4))]
    model.deform = make_deformation_field(DeformConfig(), n_expr, model.mean_shape, seed=0)
    return model, verts, plain


def test_a_new_field_changes_nothing():
    model, verts, plain = _with_field()
    placed = model.place(verts, torch.eye(4), torch.randn(4))
    for a, b in zip(placed, plain):
        torch.testing.assert_close(a, b)


def test_the_field_learns_offsets_that_depend_on_the_expression():
    model, verts, _ = _with_field()
    opt = torch.optim.Adam(model.deform.parameters(), lr=1e-2)
    smile, neutral = torch.tensor([1.0, 0, 0, 0]), torch.zeros(4)
    rest = model.place(verts, torch.eye(4), neutral)[0][:6].detach()
    target = rest + 0.001  # the smile moves the face 1 mm; the neutral face stays
    for _ in range(200):
        loss = (model.place(verts, torch.eye(4), smile)[0][:6] - target).square().sum() + \
            (model.place(verts, torch.eye(4), neutral)[0][:6] - rest).square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = model.place(verts, torch.eye(4), smile)[0][:6]
    still = model.place(verts, torch.eye(4), neutral)[0][:6]
    assert (moved - target).abs().max() < 2e-4
    assert (still - rest).abs().max() < 2e-4  # the offsets follow the expression code


def test_a_model_with_a_field_round_trips_through_its_state():
    model, verts, _ = _with_field()
    with torch.no_grad():
        model.deform.mlp[-1].bias += 0.01
    again = model_from_state(model.state_dict(), deform_settings(model))
    code = torch.randn(4)
    for a, b in zip(model.place(verts, torch.eye(4), code), again.place(verts, torch.eye(4), code)):
        torch.testing.assert_close(a, b)
    assert deform_settings(_model()) is None


def test_the_inference_cache_follows_parameter_updates():
    model, verts, _ = _with_field()
    with torch.no_grad():
        model.deform.mlp[-1].bias += 0.01
        code = torch.randn(4)
        first = model.place(verts, torch.eye(4), code)[0].clone()
        assert torch.equal(model.place(verts, torch.eye(4), code)[0], first)  # cached, same answer
        model.face.means += 0.01  # an optimiser step does this in place
        model.deform.grid.table.mul_(2.0)
        moved = model.place(verts, torch.eye(4), code)[0]
        model._encoded = None
        torch.testing.assert_close(moved, model.place(verts, torch.eye(4), code)[0])
        assert not torch.allclose(moved, first)
