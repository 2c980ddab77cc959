"""The residual deformation field: what the tracked mesh cannot explain, per face Gaussian and expression.

A multi-resolution hash grid (:class:`avatar.render.HashGrid`) encodes each face
Gaussian's canonical position (where it sits on the neutral mesh, scaled into
the unit cube of the mesh's bounding box), the frame's expression code is
appended, and a small MLP predicts offsets of its local parameters: centre
(triangle sizes), rotation (a quaternion delta), log-scale, colour and opacity
logits. The last layer starts at zero, so a new field changes nothing, and the
fit's regulariser keeps the offsets small: the mesh stays the explanation, the
field adds lips rolling, wrinkles and teeth showing.

The canonical positions enter without gradient: the grid needs no point
gradients (cheaper) and a Gaussian's identity in the field stays put while its
centre is refined.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from avatar.model.config import DeformConfig
from avatar.render import HashGrid

OUTPUTS = 3 + 4 + 3 + 3 + 1
"""Per Gaussian: centre, rotation delta, log-scale, colour logits, opacity logit."""
BOX_MARGIN = 0.1
"""The unit cube spans the neutral mesh's bounding box grown by this fraction per side."""


class Offsets(NamedTuple):
    """Additive offsets to a face group's raw parameters (shapes as the group's)."""

    means: Tensor  #: (N, 3) triangle sizes
    quats: Tensor  #: (N, 4) added to the unit local quaternion
    log_scales: Tensor  #: (N, 3)
    color_logits: Tensor  #: (N, 3)
    opacity_logits: Tensor  #: (N,)


class DeformationField(nn.Module):
    """Hash grid on canonical position + expression -> MLP -> :class:`Offsets`."""

    def __init__(self, cfg: DeformConfig, n_expr: int, mean_shape: Tensor):
        super().__init__()
        self.cfg, self.n_expr = cfg, n_expr
        self.last_output: Tensor | None = None
        self.grid = HashGrid(cfg.grid)
        width = cfg.hidden
        self.mlp = nn.Sequential(nn.Linear(self.grid.output_dim + n_expr, width), nn.ReLU(),
                                 nn.Linear(width, width), nn.ReLU(), nn.Linear(width, OUTPUTS))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        lo, hi = mean_shape.min(0).values, mean_shape.max(0).values
        pad = BOX_MARGIN * (hi - lo)
        self.register_buffer("box_lo", lo - pad)
        self.register_buffer("box_size", (hi - lo) + 2 * pad)

    def encode(self, canonical: Tensor) -> Tensor:
        """(N, L*F) hash-grid features of N Gaussians at ``canonical`` (N, 3) metres, neutral head frame."""
        x = ((canonical.detach() - self.box_lo) / self.box_size).clamp(0.0, 1.0)
        return self.grid(x)

    def offsets(self, encoded: Tensor, expr: Tensor) -> Offsets:
        """:class:`Offsets` from :meth:`encode`'s features and the frame's expression code ``expr`` (E,)."""
        features = torch.cat([encoded, expr.to(encoded.dtype).expand(len(encoded), -1)], dim=-1)
        out = self.mlp(features)
        self.last_output = out  # the fit's regulariser reads the last frame's offsets (graph kept)
        return Offsets(out[:, 0:3], out[:, 3:7], out[:, 7:10], out[:, 10:13], out[:, 13])

    def forward(self, canonical: Tensor, expr: Tensor) -> Offsets:
        """Offsets for N Gaussians at ``canonical`` (N, 3) metres, neutral head frame, and ``expr`` (E,)."""
        return self.offsets(self.encode(canonical), expr)


def make_deformation_field(cfg: DeformConfig, n_expr: int, mean_shape: Tensor, seed: int) -> DeformationField:
    """A new field, its random table and weights drawn from ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeformationField(cfg, n_expr, mean_shape)
