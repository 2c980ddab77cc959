"""Audio features -> expression coefficients: a dilated temporal convolution net with bounded look-ahead,
optionally blended with a linear map of the features of the frames around each one.

The linear part (ridge regression on frames ``t - 4 .. t + 4``, fitted in closed form after the net,
:func:`avatar.motion.train.fit_linear`; ``motion.predictor.linear_blend``) is off by default. On cnn2, in
three contiguous folds of the training frames, the tracked mouth opening correlated 0.634 with the net's,
0.652 with the ridge's and 0.674 with their average, and the held-out vertex error fell from 1.77 to 1.68 mm,
but the *rendered* lips (dlib ``mouth_corr``) did not follow: 0.272 -> 0.281 over the folds, 0.431 -> 0.335
on the validation frames (docs/benchmarks.md, "Audio to motion").

Non-autoregressive: every output frame is a function of the input frames from
``t - context`` to ``t + lookahead`` only (:attr:`AudioToExpression.context`,
:attr:`AudioToExpression.lookahead`), so a clip of any length runs in windows
that overlap by that receptive field and the outputs are *identical* to one
pass over the whole clip (no seams), and a stream can emit frame ``t`` as soon
as frame ``t + lookahead`` has been heard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ConvSpec:
    """One temporal convolution: kernel taps, dilation and how many of its taps look ahead."""

    kernel: int
    dilation: int
    ahead: int
    """Taps after the current frame (0 = causal)."""

    @property
    def lookahead(self) -> int:
        return self.ahead * self.dilation

    @property
    def context(self) -> int:
        return (self.kernel - 1 - self.ahead) * self.dilation


LAYERS: tuple[ConvSpec, ...] = (ConvSpec(5, 1, 2), ConvSpec(3, 2, 1), ConvSpec(3, 4, 0), ConvSpec(3, 8, 0),
                                ConvSpec(3, 1, 1))
"""The stack: look-ahead 2 + 2 + 0 + 0 + 1 = 5 frames (200 ms at 25 fps), context 2 + 2 + 8 + 16 + 1 = 29 frames."""
LINEAR_REACH = 4
"""The linear part sees frames ``t - LINEAR_REACH .. t + LINEAR_REACH`` (inside the net's look-ahead and context)."""


class _Block(nn.Module):
    def __init__(self, width: int, spec: ConvSpec, dropout: float):
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv1d(width, width, spec.kernel, dilation=spec.dilation)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        padded = nn.functional.pad(x, (self.spec.context, self.spec.lookahead), mode="replicate")
        h = self.norm(self.conv(padded).transpose(1, 2)).transpose(1, 2)  # per frame, over channels
        return x + self.drop(nn.functional.gelu(h))


class AudioToExpression(nn.Module):
    """(B, F, D) normalised audio features -> (B, F, K) expression coefficients:
    ``(1 - blend) * net(x) + blend * linear(x)``.

    Each frame is normalised over its channels only (LayerNorm), so nothing
    mixes frames beyond the convolutions' receptive field. ``blend`` is 0 (the
    net alone) until :func:`avatar.motion.train.fit_linear` sets the linear part.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 128, dropout: float = 0.1,
                 layers: tuple[ConvSpec, ...] = LAYERS):
        super().__init__()
        self.in_dim, self.out_dim, self.width = in_dim, out_dim, width
        self.inp = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Dropout(dropout))
        self.blocks = nn.ModuleList(_Block(width, s, dropout) for s in layers)
        self.out = nn.Linear(width, out_dim)
        self.linear = nn.Conv1d(in_dim, out_dim, 2 * LINEAR_REACH + 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("blend", torch.zeros(()))

    def load_weights(self, state: dict) -> None:
        """``load_state_dict``, also for weights saved before the linear part existed (it stays off)."""
        own = self.state_dict()
        state = dict(state)
        for k in own:
            if k not in state and (k.startswith("linear.") or k == "blend"):
                state[k] = torch.zeros_like(own[k])
        self.load_state_dict(state)

    @property
    def lookahead(self) -> int:
        """Frames of future input each output frame needs."""
        return sum(b.spec.lookahead for b in self.blocks)

    @property
    def context(self) -> int:
        """Frames of past input each output frame needs."""
        return sum(b.spec.context for b in self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x).transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        y = self.out(h.transpose(1, 2))
        if float(self.blend) == 0.0:
            return y
        padded = nn.functional.pad(x.transpose(1, 2), (LINEAR_REACH, LINEAR_REACH), mode="replicate")
        return (1 - self.blend) * y + self.blend * self.linear(padded).transpose(1, 2)


@torch.no_grad()
def predict_clip(model: AudioToExpression, features: np.ndarray, window: int = 2000) -> np.ndarray:
    """(F, K) float32 coefficients for (F, D) features, in windows of ``window`` frames (bounded memory).

    Each window is run with ``context`` frames before and ``lookahead`` after
    it, so its outputs equal a single pass over the clip. The clip's own edges
    are padded by repeating the first / last frame, in both cases.
    """
    model.eval()
    n = len(features)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    edge_lo, edge_hi = _edge_margin(model), _edge_margin(model)
    padded = torch.cat([x[:1].expand(edge_lo, -1), x, x[-1:].expand(edge_hi, -1)])
    out = np.empty((n, model.out_dim), np.float32)
    for start in range(0, n, window):
        stop = min(n, start + window)
        lo, hi = start + edge_lo - model.context, stop + edge_lo + model.lookahead
        y = model(padded[lo:hi][None])[0]
        out[start:stop] = y[model.context:model.context + (stop - start)].numpy()
    return out


def _edge_margin(model: AudioToExpression) -> int:
    """Replicated frames added at each clip edge: enough for every layer's padding to see only them."""
    return model.context + model.lookahead
