"""Train the audio-to-expression predictor on a subject's own video: its tracked expressions are the targets.

The loss is the weighted mean squared *vertex* error of the predicted
expression (lower face 1, upper face 0.3, eyes 0: blinks do not come from
audio; :func:`avatar.motion.face.vertex_weights`), in mm^2, with the inner-lip gap's
error added to it (:func:`avatar.motion.face.opening_metric`; both live in the metric), plus the same on
frame-to-frame changes (so the mouth keeps its speed instead of a smoothed
average). Augmentations make other voices look like the subject's: a random
vocal-tract-length warp of the mel axis, a random spectral tilt, pitch and
level offsets, and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avatar.core.progress import progress
from avatar.motion.config import PredictorConfig
from avatar.motion.predictor import LINEAR_REACH, AudioToExpression, predict_clip


@dataclass
class TrainingData:
    """One subject's features and targets."""

    features: np.ndarray
    """(F, D) float32 normalised audio features."""
    expr: np.ndarray
    """(F, K) float32 tracked expressions."""
    usable: np.ndarray
    """(F,) bool frames whose targets count (tracked face, in the training part)."""
    metric: np.ndarray
    """(K, K) float32 weighted vertex metric (:func:`avatar.motion.face.weighted_metric`)."""
    n_mels: int
    rows_per_frame: int


def train_predictor(data: TrainingData, cfg: PredictorConfig, seed: int = 0, desc: str = "motion",
                    init: AudioToExpression | None = None) -> AudioToExpression:
    """A trained :class:`AudioToExpression` (deterministic for a given seed and thread count).

    ``init``: start from this network (its shapes must match; it is not changed).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AudioToExpression(data.features.shape[1], data.expr.shape[1], cfg.width, cfg.dropout)
    if init is not None:
        model.load_state_dict(init.state_dict())
    if cfg.steps == 0:
        return model.eval()
    model.blend.zero_()  # the net is trained alone; the linear part is fitted to the same targets after it
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    x_all = torch.from_numpy(data.features)
    y_all = torch.from_numpy(data.expr)
    usable = torch.from_numpy(data.usable).float()
    metric = torch.from_numpy(data.metric)
    margin = model.context + model.lookahead
    starts = _window_starts(data.usable, cfg.window)
    if len(starts) == 0:
        raise ValueError("no training window: the clip is shorter than one window of tracked frames")
    model.train()
    bar = progress(range(cfg.steps), desc=desc, unit="step")
    for _ in bar:
        idx = rng.choice(starts, size=cfg.batch)
        rates = (rng.uniform(1.0 - cfg.aug_rate, 1.0 + cfg.aug_rate, size=cfg.batch) if cfg.aug_rate > 0
                 else np.ones(cfg.batch))  # no draw when off: the same stream of windows as without the option
        x, y, mask = _windows(x_all, y_all, usable, idx, rates, cfg.window, model.context, model.lookahead)
        x = _augment(x, data.n_mels, data.rows_per_frame, cfg, rng)
        pred = model(x)[:, model.context:model.context + cfg.window]
        loss = _vertex_loss(pred - y, metric, mask, cfg.velocity_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    del margin
    model.eval()
    if cfg.linear_blend > 0:
        fit_linear(model, data, cfg.linear_ridge, cfg.linear_blend)
    return model


def fit_linear(model: AudioToExpression, data: TrainingData, ridge_per_frame: float, blend: float,
               chunk: int = 2048) -> None:
    """Set ``model``'s linear part: the ridge regression of the usable frames' expressions on the features of
    frames ``t - LINEAR_REACH .. t + LINEAR_REACH`` (edges repeated, as inference pads them), in closed form.

    The features are standardised over the usable frames first (so one penalty suits every column) and
    the scaling is folded into the convolution's weights; the penalty is ``ridge_per_frame`` times the
    number of frames, so a short clip is not fitted more loosely than a long one.
    """
    x = np.asarray(data.features, np.float64)
    frames = np.flatnonzero(data.usable)
    reach = LINEAR_REACH
    padded = np.concatenate([np.repeat(x[:1], reach, 0), x, np.repeat(x[-1:], reach, 0)])

    def stacked(idx: np.ndarray) -> np.ndarray:  # (n, taps * D), tap-major: column tap * D + d
        return np.concatenate([padded[idx + k] for k in range(2 * reach + 1)], axis=1)

    dim = (2 * reach + 1) * x.shape[1]
    y = np.asarray(data.expr, np.float64)[frames]
    y_mean = y.mean(0)
    total, gram, rhs = np.zeros(dim), np.zeros((dim, dim)), np.zeros((dim, y.shape[1]))
    for i in range(0, len(frames), chunk):  # one pass, bounded memory for long clips
        rows = stacked(frames[i:i + chunk])
        total += rows.sum(0)
        gram += rows.T @ rows
        rhs += rows.T @ (y[i:i + chunk] - y_mean)
    n = len(frames)
    mean = total / n
    std = np.maximum(np.sqrt(np.maximum(np.diag(gram) / n - mean ** 2, 0.0)), 1e-3)  # constant columns: no blow-up
    gram_std = (gram - n * np.outer(mean, mean)) / np.outer(std, std)
    rhs /= std[:, None]  # the centring of the features drops out: the targets are centred
    w = np.linalg.solve(gram_std + ridge_per_frame * n * np.eye(dim), rhs) / std[:, None]  # on raw features
    bias = y_mean - mean @ w
    with torch.no_grad():
        # Conv1d weight (K, D, taps): output t = sum_k weight[:, :, k] . x[t + k - reach]
        model.linear.weight.copy_(torch.from_numpy(w.reshape(2 * reach + 1, x.shape[1], -1).transpose(2, 1, 0).copy()))
        model.linear.bias.copy_(torch.from_numpy(bias))
        model.blend.fill_(blend)


def vertex_error(model: AudioToExpression, data: TrainingData, frames: np.ndarray) -> float:
    """Weighted RMS vertex error, mm, of the predictions on ``frames`` (int indices)."""
    pred = predict_clip(model, data.features)
    d = (pred - data.expr)[frames]
    return float(np.sqrt(np.einsum("fk,kl,fl->f", d, data.metric, d).mean()))


def _window_starts(usable: np.ndarray, window: int) -> np.ndarray:
    """Window start frames whose window is mostly usable (at least 80 %)."""
    if len(usable) < window:
        return np.zeros(0, int)
    counts = np.convolve(usable.astype(float), np.ones(window), mode="valid")
    return np.flatnonzero(counts >= 0.8 * window)


def _windows(x: torch.Tensor, y: torch.Tensor, usable: torch.Tensor, starts: np.ndarray, rates: np.ndarray,
             window: int, before: int, after: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of training windows: features (B, before + window + after, D), targets (B, window, K) and
    their mask (B, window), frame ``k`` of window ``b`` taken at clip time ``starts[b] + rates[b] * k``
    (linear interpolation between frames; edges repeated, as whole-clip inference pads them).

    A rate above 1 plays the window faster: the same speech and lip motion, said quicker.
    """
    if np.all(rates == 1.0):  # the plain windows: no interpolation
        x_b = torch.stack([_padded_window(x, s, window, before, after) for s in starts])
        y_b = torch.stack([y[s:s + window] for s in starts])
        return x_b, y_b, torch.stack([usable[s:s + window] for s in starts])
    k = torch.arange(-before, window + after, dtype=torch.float64)
    pos = torch.from_numpy(starts.astype(np.float64))[:, None] + torch.from_numpy(rates)[:, None] * k
    pos = pos.clamp(0, len(x) - 1)
    lo = pos.floor().long().clamp(max=len(x) - 2) if len(x) > 1 else pos.floor().long()
    hi = (lo + 1).clamp(max=len(x) - 1)
    frac = (pos - lo).float()[..., None]

    def sample(a: torch.Tensor) -> torch.Tensor:
        return a[lo] * (1 - frac) + a[hi] * frac

    inner = slice(before, before + window)
    mask = torch.minimum(usable[lo[:, inner]], usable[hi[:, inner]])  # both neighbours must count
    return sample(x), sample(y)[:, inner], mask


def _padded_window(x: torch.Tensor, start: int, window: int, before: int, after: int) -> torch.Tensor:
    """Rows ``start - before .. start + window + after`` of (F, D) x, edges repeated (as whole-clip inference)."""
    idx = torch.arange(start - before, start + window + after).clamp(0, len(x) - 1)
    return x[idx]


def _vertex_loss(d: torch.Tensor, metric: torch.Tensor, mask: torch.Tensor, velocity_weight: float) -> torch.Tensor:
    """Weighted vertex MSE (mm^2) of coefficient errors d (B, T, K), plus of their frame differences."""
    per_frame = torch.einsum("btk,kl,btl->bt", d, metric, d)
    loss = (per_frame * mask).sum() / mask.sum().clamp_min(1.0)
    dv = d[:, 1:] - d[:, :-1]
    mv = mask[:, 1:] * mask[:, :-1]
    vel = torch.einsum("btk,kl,btl->bt", dv, metric, dv)
    return loss + velocity_weight * (vel * mv).sum() / mv.sum().clamp_min(1.0)


def _augment(x: torch.Tensor, n_mels: int, r: int, cfg: PredictorConfig, rng: np.random.Generator) -> torch.Tensor:
    """Random speaker and channel changes on (B, T, D) normalised features (layout of avatar.motion.features)."""
    b, t, _ = x.shape
    hi_dim = r * (n_mels + 3)  # the high-rate rows come first; frame-level columns after them are left alone
    rows = x[..., :hi_dim].reshape(b, t, r, n_mels + 3).clone()
    mel = rows[..., :n_mels]
    warp = rng.uniform(1.0 - cfg.aug_vtlp, 1.0 + cfg.aug_vtlp, size=b)
    bands = np.arange(n_mels, dtype=np.float64)
    for i in range(b):  # vocal tract length: resample the band axis
        src = np.clip(bands * warp[i], 0, n_mels - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_mels - 1)
        frac = torch.from_numpy((src - lo).astype(np.float32))
        mel[i] = mel[i][..., lo] * (1 - frac) + mel[i][..., hi] * frac
    tilt = torch.from_numpy(rng.normal(0, cfg.aug_tilt, size=(b, 1, 1, 1)).astype(np.float32))
    mel += tilt * torch.linspace(-1, 1, n_mels)
    mel += torch.from_numpy(rng.normal(0, cfg.aug_noise, size=mel.shape).astype(np.float32))
    rows[..., n_mels] += torch.from_numpy(rng.normal(0, cfg.aug_level_db / 10.0, size=(b, 1, 1)).astype(np.float32))
    voiced = rows[..., n_mels + 2] > 0.5
    shift = torch.from_numpy(rng.normal(0, cfg.aug_pitch_st / 12.0, size=(b, 1, 1)).astype(np.float32))
    rows[..., n_mels + 1] = torch.where(voiced, rows[..., n_mels + 1] + shift, rows[..., n_mels + 1])
    for i in range(b):
        if cfg.aug_band_mask > 0:
            width = int(rng.integers(0, cfg.aug_band_mask + 1))
            lo = int(rng.integers(0, n_mels - width + 1))
            mel[i, ..., lo:lo + width] = 0.0
        if cfg.aug_time_mask > 0:
            width = int(rng.integers(0, cfg.aug_time_mask + 1))
            lo = int(rng.integers(0, t - width + 1))
            mel[i, lo:lo + width] = 0.0
    rows[..., :n_mels] = mel
    return torch.cat([rows.reshape(b, t, -1), x[..., hi_dim:]], dim=-1)
