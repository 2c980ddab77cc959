"""The training loop: deterministic, checkpointed, resumable to the same bits, within a time budget.

One step renders one training frame (chosen by a seeded generator whose state
is checkpointed), takes the loss of :mod:`avatar.fit.losses`, an Adam step and
lets the densification strategy (:mod:`avatar.fit.strategy`) edit the model. A
checkpoint holds the model, the optimiser, the strategy's statistics, the
generator, the step count and the training time spent, so a resumed fit takes
exactly the steps an uninterrupted one would have taken; it also records the
subject's stage runs and the settings, and refuses to resume onto another
subject or other settings.
"""

from __future__ import annotations

import pickle
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from avatar.core import config as config_io
from avatar.core.errors import UserError
from avatar.core.files import atomic_path
from avatar.fit.config import FitConfig
from avatar.fit.data import TrainingFrames
from avatar.fit.losses import LossTerms, frame_loss, patch_origin
from avatar.fit.strategy import DensifyStrategy
from avatar.model.frame import RenderedFrame, render_frame
from avatar.model.gaussians import GROUPS, PARAMS, AvatarGaussians
from avatar.model.init import init_avatar
from avatar.model.lip_edge import LipEdges
from avatar.model.store import deform_settings, model_from_state
from preprocess.subject import Subject

CHECKPOINT_FORMAT = 3
"""Bumped whenever a checkpoint of an older layout could be misread."""
RESUMABLE_CHANGES = ("iterations", "minutes", "checkpoint_every", "preview_every")
"""Settings a fit may be resumed with changed (training longer, checkpointing or previewing more often)."""


class Trainer:
    """Fits an :class:`AvatarGaussians` to one subject, a step at a time."""

    def __init__(self, subject: Subject, cfg: FitConfig, model: AvatarGaussians | None = None):
        self.subject, self.cfg = subject, cfg
        self.model = model if model is not None else \
            init_avatar(subject, cfg.init, cfg.deform if cfg.deform.enabled else None)
        # fused: one pass over each tensor instead of several, half the time of the default on 2 cores
        self.optimizer = torch.optim.Adam(_param_groups(self.model, cfg), eps=1e-15, fused=True)
        self.strategy = DensifyStrategy(cfg.densify, cfg.iterations, len(self.model))
        self.rng = np.random.default_rng(cfg.seed)
        self.iteration = 0
        self.elapsed_s = 0.0
        """Training time spent so far, over all runs of this fit, seconds."""
        t = subject.tracking
        self._verts = torch.from_numpy(t.verts)
        self._viewmats = torch.from_numpy(t.viewmats)
        self._expr = torch.from_numpy(t.expr.astype(np.float32))
        self._K = torch.from_numpy(t.K(subject.size))
        self._torso = torch.from_numpy(subject.torso.affine)
        self.plate = torch.from_numpy(subject.background().astype(np.float32) / 255.0)
        self.frames = TrainingFrames(subject)
        self._lip_edges = LipEdges(self.model.mean_shape, self.model.faces) if cfg.loss.lip_edge > 0 else None

    def render(self, i: int) -> RenderedFrame:
        """Frame ``i`` at its tracked mesh and pose, over the background plate."""
        return render_frame(self.model, self._verts[i], self._viewmats[i], self._K, self.subject.size, self.plate,
                            expr=self._expr[i], torso_affine=self._torso[i])

    def step(self) -> LossTerms:
        """One training step on a random training frame; returns its loss terms."""
        cfg, size = self.cfg, self.subject.size
        i = int(self.rng.choice(self.subject.train_frames))
        frame = self.frames[i]
        real, person, weight = frame.tensors(cfg.loss)
        patch = patch_origin(frame.head_box, min(cfg.loss.ssim_patch_px, size), size, self.rng)
        out = self.render(i)
        offsets = self.model.deform.last_output if self.model.deform is not None else None
        terms = frame_loss(out.rgb, out.alpha, real, person, weight, out.scales, patch, cfg.loss, offsets)
        if self._lip_edges is not None:
            f = self.model.face
            terms = terms._replace(total=terms.total + cfg.loss.lip_edge * self._lip_edges.penalty(
                f.means, f.quats, f.log_scales, f.parent))
        self.optimizer.zero_grad(set_to_none=True)
        self.strategy.step_pre_backward(out.meta, self.iteration)
        terms.total.backward()
        self._schedule()
        self.optimizer.step()
        self.strategy.step_post_backward(self.model, self.optimizer, out.meta, self.iteration, size, self.rng)
        self.iteration += 1
        return terms

    def _schedule(self) -> None:
        """Centres' step sizes decay exponentially to ``means_final`` of their start over the iterations."""
        lr = self.cfg.lr
        decay = lr.means_final ** min(1.0, self.iteration / max(1, self.cfg.iterations))
        for pg in self.optimizer.param_groups:
            if pg["name"].endswith(".means"):
                pg["lr"] = (lr.face_means if pg["name"] == "face.means" else lr.rigid_means) * decay

    @torch.no_grad()
    def psnr(self, frames) -> float:
        """Mean full-frame PSNR, dB, of ``frames``."""
        values = []
        for i in frames:
            real = torch.from_numpy(self.frames[int(i)].image).float() / 255.0
            values.append(float(-10 * torch.log10(((self.render(int(i)).rgb - real) ** 2).mean())))
        return float(np.mean(values))

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "iteration": self.iteration, "elapsed_s": self.elapsed_s,
                "subject": dict(self.subject.manifest.stage_runs),
                "config": _comparable(self.cfg),
                "model": self.model.state_dict(), "deform": deform_settings(self.model),
                "optimizer": self.optimizer.state_dict(),
                "strategy": self.strategy.state_dict(), "rng": self.rng.bit_generator.state}

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically (an interrupted write leaves the previous one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)


def load_trainer(path: Path, subject: Subject, cfg: FitConfig) -> Trainer:
    """A trainer resumed from the checkpoint at ``path``; UserError when it cannot be."""
    fix = f"delete {path} to start the fit over"
    state = _load(path, fix)
    if state["subject"] != dict(subject.manifest.stage_runs):
        raise UserError(f"the checkpoint {path} belongs to another subject, or this subject was "
                        "preprocessed again since", fix)
    if state["config"] != _comparable(cfg):
        changed = sorted(k for k in set(state["config"]) | set(_comparable(cfg))
                         if state["config"].get(k) != _comparable(cfg).get(k))
        raise UserError(f"the checkpoint {path} was made with other settings ({', '.join(changed)})",
                        f"use the settings it was made with, or {fix}")
    try:
        model = model_from_state(state["model"], state.get("deform"))
        trainer = Trainer(subject, cfg, model)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.strategy.load_state_dict(state["strategy"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"the checkpoint {path} is damaged ({e.__class__.__name__}: {e})", fix) from None
    trainer.rng.bit_generator.state = state["rng"]
    trainer.iteration = int(state["iteration"])
    trainer.elapsed_s = float(state["elapsed_s"])
    return trainer


def _load(path: Path, fix: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise UserError(f"the checkpoint {path} is damaged or truncated ({e.__class__.__name__})", fix) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a checkpoint of this version", fix)
    return state


def finished(trainer: Trainer) -> bool:
    """Whether the fit has taken all its steps or spent its time budget."""
    return trainer.iteration >= trainer.cfg.iterations or trainer.elapsed_s >= 60.0 * trainer.cfg.minutes


def fit(subject: Subject, cfg: FitConfig, checkpoint: Path, *, show_progress: bool = True,
        on_preview: Callable[[Trainer], None] | None = None) -> Trainer:
    """Train until ``cfg.iterations`` steps or ``cfg.minutes`` of training, resuming from ``checkpoint``."""
    checkpoint = Path(checkpoint)
    trainer = load_trainer(checkpoint, subject, cfg) if checkpoint.exists() else Trainer(subject, cfg)
    return train(trainer, checkpoint, show_progress=show_progress, on_preview=on_preview)


def train(trainer: Trainer, checkpoint: Path, *, show_progress: bool = True,
          on_preview: Callable[[Trainer], None] | None = None) -> Trainer:
    """Take ``trainer``'s remaining steps (see :func:`finished`), checkpointing to ``checkpoint``.

    ``on_preview(trainer)`` is called every ``cfg.preview_every`` steps (writing
    preview images is the caller's business). Checkpoints are written every
    ``cfg.checkpoint_every`` steps and at the end.
    """
    from avatar.core.progress import progress

    cfg = trainer.cfg
    budget_s = 60.0 * cfg.minutes
    bar = progress(total=cfg.iterations, desc="fit", unit="step") if show_progress else None
    if bar is not None:
        bar.update(trainer.iteration)
    mean_mse = None
    while not finished(trainer):
        t0 = time.perf_counter()
        terms = trainer.step()
        trainer.elapsed_s += time.perf_counter() - t0
        mse = float(terms.mse)
        mean_mse = mse if mean_mse is None else 0.98 * mean_mse + 0.02 * mse  # over about the last 50 steps
        if bar is not None:
            rate = trainer.iteration / max(trainer.elapsed_s, 1e-9)
            left = min(budget_s - trainer.elapsed_s, (cfg.iterations - trainer.iteration) / max(rate, 1e-9))
            bar.set_postfix_str(f"loss={float(terms.total.detach()):.4f} psnr={-10 * np.log10(max(mean_mse, 1e-12)):.2f} "
                                f"n={len(trainer.model)} {rate:.1f} step/s left={_clock(left)}", refresh=False)
            bar.update(1)
        if trainer.iteration % cfg.checkpoint_every == 0:
            trainer.save(checkpoint)
        if on_preview is not None and trainer.iteration % cfg.preview_every == 0:
            on_preview(trainer)
    if bar is not None:
        bar.close()
    trainer.save(checkpoint)
    return trainer


def _clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def _param_groups(model: AvatarGaussians, cfg: FitConfig) -> list[dict]:
    lr = cfg.lr
    rates = {"means": None, "quats": lr.quats, "log_scales": lr.log_scales,
             "opacity_logits": lr.opacity_logits, "color_logits": lr.color_logits,
             "follow_logits": lr.follow_logits, "color_basis": lr.color_basis}
    groups = []
    for name in GROUPS:
        g = getattr(model, name)
        for kind in PARAMS:
            rate = rates[kind] if kind != "means" else lr.face_means if name == "face" else lr.rigid_means
            if kind == "follow_logits" and name != "torso":
                rate = 0.0  # only the torso follows the head
            if kind == "color_basis" and name in ("face", "mouth"):
                rate = lr.color_basis_face
            groups.append({"params": [getattr(g, kind)], "lr": rate, "name": f"{name}.{kind}"})
    if model.deform is not None:
        groups.append({"params": list(model.deform.grid.parameters()), "lr": lr.deform_grid, "name": "deform.grid"})
        groups.append({"params": list(model.deform.mlp.parameters()), "lr": lr.deform_mlp, "name": "deform.mlp"})
    return groups


def _comparable(cfg: FitConfig) -> dict:
    return {k: v for k, v in config_io.to_dict(cfg).items() if k not in RESUMABLE_CHANGES}
