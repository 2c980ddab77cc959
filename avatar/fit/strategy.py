"""Adaptive density control: where the fit adds and removes Gaussians.

A swappable strategy object, as gsplat's ``DefaultStrategy``: the trainer calls
:meth:`DensifyStrategy.step_pre_backward` before and
:meth:`DensifyStrategy.step_post_backward` after each backward pass, and the
strategy edits the model and the optimiser in place. This one follows 3DGS:

- statistics: the mean norm of each centre's screen-space gradient (in units
  of half the image side, as gsplat's) over the steps where it was visible;
- every ``every`` steps in the densification window, Gaussians whose mean
  gradient exceeds ``grad_threshold`` are *cloned* when narrow and *split* into
  two smaller ones sampled from their own density when wide (over
  ``split_scale_px``), up to ``max_gaussians``;
- Gaussians fainter than ``prune_opacity`` are removed, except that a face
  triangle never loses its last Gaussian (an expression would open a hole).

Children copy their parent's carrier (face triangle, jaw weight) and start
with a fresh optimiser state. Everything happens in each group's own parameter
space (triangle-local units for the face, metres otherwise): the triangle frame
is a rotation and a uniform scale, so sampling a child there is sampling it in
the world.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from avatar.core.rotations import quat_to_rotmat
from avatar.fit.config import DensifyConfig
from avatar.model.gaussians import BUFFERS, GROUPS, PARAMS, AvatarGaussians, GaussianGroup

SPLIT_SHRINK = 1.6
"""A split Gaussian's two children are this much narrower (3DGS's factor)."""
RADIUS_SIGMAS = 3.0
"""The rasteriser's footprint radius is this many standard deviations."""


class DensifyStrategy:
    """Clone, split and prune by screen-space gradient (see the module docstring)."""

    def __init__(self, cfg: DensifyConfig, iterations: int, n_gaussians: int):
        self.cfg, self.iterations = cfg, iterations
        self._reset(n_gaussians)

    def _reset(self, n: int) -> None:
        self.grad_sum = torch.zeros(n)
        self.count = torch.zeros(n)
        self.max_radius = torch.zeros(n)

    def state_dict(self) -> dict:
        return {"grad_sum": self.grad_sum, "count": self.count, "max_radius": self.max_radius}

    def load_state_dict(self, state: dict) -> None:
        self.grad_sum, self.count, self.max_radius = state["grad_sum"], state["count"], state["max_radius"]

    def active(self, step: int) -> bool:
        """Whether statistics are gathered at ``step`` (0-based, before it is taken)."""
        return self.cfg.enabled and step < self.cfg.stop_fraction * self.iterations

    def step_pre_backward(self, meta: dict, step: int) -> None:
        if self.active(step):
            meta["means2d"].retain_grad()

    def step_post_backward(self, model: AvatarGaussians, optimizer: torch.optim.Optimizer, meta: dict,
                           step: int, size: int, rng: np.random.Generator) -> bool:
        """Gather statistics of ``step`` and refine after it when due; True when the model changed."""
        if not self.active(step):
            return False
        grad = meta["means2d"].grad[0] * (size / 2.0)  # pixels -> half image sides
        radii = meta["radii"][0].float()
        seen = radii > 0
        self.grad_sum[seen] += grad[seen].norm(dim=-1)
        self.count[seen] += 1
        self.max_radius = torch.maximum(self.max_radius, radii)
        done = step + 1
        if done < self.cfg.start or done % self.cfg.every:
            return False
        self.refine(model, optimizer, rng)
        return True

    @torch.no_grad()
    def refine(self, model: AvatarGaussians, optimizer: torch.optim.Optimizer, rng: np.random.Generator) -> None:
        """Clone, split and prune once from the statistics so far, then start them over."""
        cfg = self.cfg
        mean_grad = self.grad_sum / self.count.clamp_min(1)
        wanted = mean_grad > cfg.grad_threshold
        room = max(0, cfg.max_gaussians - len(model))
        if int(wanted.sum()) > room:  # keep the steepest
            order = torch.argsort(mean_grad, descending=True, stable=True)
            wanted = torch.zeros_like(wanted)
            wanted[order[:room]] = True
        wide = self.max_radius / RADIUS_SIGMAS > cfg.split_scale_px
        split, clone = wanted & wide, wanted & ~wide
        gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        start = 0
        for name in GROUPS:
            group = getattr(model, name)
            sl = slice(start, start + len(group))
            start += len(group)
            faint = torch.sigmoid(group.opacity_logits) < cfg.prune_opacity
            if name == "face":
                faint &= ~_last_of_their_triangle(group, faint)
            _edit_group(group, optimizer, keep=~faint & ~split[sl], clone=clone[sl] & ~faint,
                        split=split[sl] & ~faint, gen=gen)
        self._reset(len(model))


def _last_of_their_triangle(group: GaussianGroup, faint: Tensor) -> Tensor:
    """(N,) bool: the most opaque Gaussian of each triangle all of whose Gaussians are faint."""
    n_tri = int(group.parent.max()) + 1 if len(group) else 0
    survivors = torch.zeros(n_tri).index_add_(0, group.parent, (~faint).float())
    orphaned = survivors[group.parent] == 0
    opacity = group.opacity_logits.clone()
    best = torch.full((n_tri,), -torch.inf).scatter_reduce(0, group.parent, opacity, "amax")
    keep = orphaned & (opacity == best[group.parent])
    # one per triangle even when two tie: the first of them
    first = torch.full((n_tri,), len(group), dtype=torch.int64)
    idx = torch.arange(len(group))
    first.scatter_reduce_(0, group.parent[keep], idx[keep], "amin")
    return keep & (first[group.parent] == idx)


def _edit_group(group: GaussianGroup, optimizer: torch.optim.Optimizer, keep: Tensor, clone: Tensor,
                split: Tensor, gen: torch.Generator) -> None:
    """Rebuild ``group`` as [kept, clones, split children x 2]; optimiser state follows (zeros for the new)."""
    n_new = int(clone.sum()) + 2 * int(split.sum())
    if n_new == 0 and bool(keep.all()):
        return
    children = _split_children(group, split, gen)
    for name in PARAMS:
        old = getattr(group, name)
        rows = [old[keep], old[clone], children[name]]
        new = nn.Parameter(torch.cat(rows).contiguous())
        _swap_in_optimizer(optimizer, old, new, keep, n_new)
        setattr(group, name, new)
    for name in BUFFERS:
        b = getattr(group, name)
        if len(b):
            setattr(group, name, torch.cat([b[keep], b[clone], b[split], b[split]]))


def _split_children(group: GaussianGroup, split: Tensor, gen: torch.Generator) -> dict[str, Tensor]:
    """Two children per split Gaussian, centres drawn from its own density, SPLIT_SHRINK narrower."""
    means, quats, log_scales = group.means[split], group.quats[split], group.log_scales[split]
    rot = quat_to_rotmat(quats)
    samples = [means + (rot @ (torch.exp(log_scales) * torch.randn(means.shape, generator=gen))[..., None])[..., 0]
               for _ in range(2)]
    twice = lambda t: torch.cat([t, t])  # noqa: E731
    return {"means": torch.cat(samples), "quats": twice(quats),
            "log_scales": twice(log_scales - np.log(SPLIT_SHRINK)),
            "opacity_logits": twice(group.opacity_logits[split]), "color_logits": twice(group.color_logits[split]),
            "follow_logits": twice(group.follow_logits[split]), "color_basis": twice(group.color_basis[split])}


def _swap_in_optimizer(optimizer: torch.optim.Optimizer, old: nn.Parameter, new: nn.Parameter, keep: Tensor,
                       n_new: int) -> None:
    for pg in optimizer.param_groups:
        for k, p in enumerate(pg["params"]):
            if p is old:
                pg["params"][k] = new
                state = optimizer.state.pop(old, None)
                if state:
                    for key in ("exp_avg", "exp_avg_sq"):
                        v = state[key]
                        state[key] = torch.cat([v[keep], v.new_zeros((n_new, *v.shape[1:]))])
                    optimizer.state[new] = state
                return
    raise KeyError("parameter not in the optimiser")
