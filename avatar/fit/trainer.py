"""The training loop: deterministic, checkpointed, resumable to the same bits.

One step renders one training frame (chosen by a seeded generator whose state
is checkpointed), compares it with the real frame (L1 on the full frame for
now; SSIM, region weights and densification come with the rest of issue #10)
and takes an Adam step. A checkpoint holds the model, the optimiser, the
generator and the step count, so a resumed fit takes exactly the steps an
uninterrupted one would have taken; it also records the subject's stage runs
and the settings, and refuses to resume onto another subject or other settings.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from avatar.core import config as config_io
from avatar.core.errors import UserError
from avatar.core.files import atomic_path
from avatar.core.progress import progress
from avatar.fit.config import FitConfig
from avatar.model.frame import render_frame
from avatar.model.gaussians import GROUPS, AvatarGaussians
from avatar.model.init import init_avatar
from preprocess.subject import Subject

CHECKPOINT_FORMAT = 1
"""Bumped whenever a checkpoint of an older layout could be misread."""
RESUMABLE_CHANGES = ("iterations", "checkpoint_every")
"""Settings a fit may be resumed with changed (training longer, checkpointing more often)."""


class Trainer:
    """Fits an :class:`AvatarGaussians` to one subject, a step at a time."""

    def __init__(self, subject: Subject, cfg: FitConfig, model: AvatarGaussians | None = None):
        self.subject, self.cfg = subject, cfg
        self.model = model if model is not None else init_avatar(subject, cfg.init)
        self.optimizer = torch.optim.Adam(_param_groups(self.model, cfg), eps=1e-15)
        self.rng = np.random.default_rng(cfg.seed)
        self.iteration = 0
        t = subject.tracking
        self._verts = torch.from_numpy(t.verts)
        self._viewmats = torch.from_numpy(t.viewmats)
        self._K = torch.from_numpy(t.K(subject.size))
        self._plate = _to_float(subject.background())
        self._frames: dict[int, np.ndarray] = {}  # uint8, read once: 0.8 MB a 512x512 frame

    def _real(self, i: int) -> torch.Tensor:
        if i not in self._frames:
            self._frames[i] = self.subject.frame(i)
        return _to_float(self._frames[i])

    def render(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, S, 3) RGB and (S, S, 1) alpha of frame ``i`` at its tracked mesh and pose."""
        return render_frame(self.model, self._verts[i], self._viewmats[i], self._K, self.subject.size,
                            self._plate)

    def step(self) -> float:
        """One training step on a random training frame; returns its loss."""
        i = int(self.rng.choice(self.subject.train_frames))
        rgb, _ = self.render(i)
        loss = (rgb - self._real(i)).abs().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return float(loss.detach())

    @torch.no_grad()
    def psnr(self, frames) -> float:
        """Mean full-frame PSNR, dB, of ``frames`` (RGB in [0, 1])."""
        values = [float(-10 * torch.log10(((self.render(int(i))[0] - self._real(int(i))) ** 2).mean()))
                  for i in frames]
        return float(np.mean(values))

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "iteration": self.iteration,
                "subject": dict(self.subject.manifest.stage_runs),
                "config": _comparable(self.cfg),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state}

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically (an interrupted write leaves the previous one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)


def load_trainer(path: Path, subject: Subject, cfg: FitConfig) -> Trainer:
    """A trainer resumed from the checkpoint at ``path``; UserError when it cannot be."""
    fix = f"delete {path} to start the fit over"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise UserError(f"the checkpoint {path} is damaged or truncated ({e.__class__.__name__})", fix) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a checkpoint of this version", fix)
    if state["subject"] != dict(subject.manifest.stage_runs):
        raise UserError(f"the checkpoint {path} belongs to another subject, or this subject was "
                        "preprocessed again since", fix)
    if state["config"] != _comparable(cfg):
        changed = sorted(k for k in set(state["config"]) | set(_comparable(cfg))
                         if state["config"].get(k) != _comparable(cfg).get(k))
        raise UserError(f"the checkpoint {path} was made with other settings ({', '.join(changed)})",
                        f"use the settings it was made with, or {fix}")
    try:
        model = AvatarGaussians.from_state_dict(state["model"])
    except (KeyError, TypeError) as e:
        raise UserError(f"the checkpoint {path} is damaged (no {e} in its model)", fix) from None
    trainer = Trainer(subject, cfg, model)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.rng.bit_generator.state = state["rng"]
    trainer.iteration = int(state["iteration"])
    return trainer


def fit(subject: Subject, cfg: FitConfig, checkpoint: Path, *, show_progress: bool = True) -> Trainer:
    """Train to ``cfg.iterations`` steps, resuming from ``checkpoint`` when it exists."""
    checkpoint = Path(checkpoint)
    trainer = load_trainer(checkpoint, subject, cfg) if checkpoint.exists() else Trainer(subject, cfg)
    steps = range(trainer.iteration, cfg.iterations)
    bar = progress(steps, total=len(steps), desc="fit", unit="step") if show_progress else steps
    for _ in bar:
        loss = trainer.step()
        if show_progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if trainer.iteration % cfg.checkpoint_every == 0:
            trainer.save(checkpoint)
    trainer.save(checkpoint)
    return trainer


def _param_groups(model: AvatarGaussians, cfg: FitConfig) -> list[dict]:
    lr = cfg.lr
    groups = []
    for name in GROUPS:
        g = getattr(model, name)
        groups += [
            {"params": [g.means], "lr": lr.face_means if name == "face" else lr.rigid_means},
            {"params": [g.quats], "lr": lr.quats},
            {"params": [g.log_scales], "lr": lr.log_scales},
            {"params": [g.opacity_logits], "lr": lr.opacity_logits},
            {"params": [g.color_logits], "lr": lr.color_logits},
        ]
    return groups


def _comparable(cfg: FitConfig) -> dict:
    return {k: v for k, v in config_io.to_dict(cfg).items() if k not in RESUMABLE_CHANGES}


def _to_float(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 255.0)
