"""One fit of a subject folder, as ``avatar fit`` runs it: train, preview, finish the avatar.

Files, all in ``SUBJECT_DIR/fit/`` (see :mod:`avatar.model.store`):

- ``checkpoint.pt``: the training state, every ``checkpoint_every`` steps
  (what a resumed fit starts from);
- ``previews/step_NNNNNN.png``: real (top) over rendered (bottom) for three
  validation frames, every ``preview_every`` steps;
- ``avatar.pt`` and ``fit.json``: written when the fit finishes, and only then.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from avatar.core import config as config_io
from avatar.core.errors import UserError
from avatar.core.files import write_image, write_json
from avatar.fit.config import FitConfig
from avatar.fit.trainer import Trainer, finished, load_trainer, train
from avatar.model.gaussians import GROUPS
from avatar.model.store import avatar_path, fit_dir, save_avatar
from preprocess.subject import Subject

log = logging.getLogger("avatar")
PREVIEW_FRAMES = 3
"""Validation frames in each preview image (first, middle, last)."""


def checkpoint_path(root: str | Path) -> Path:
    return fit_dir(root) / "checkpoint.pt"


def run_fit(root: str | Path, cfg: FitConfig, *, resume_only: bool = False, restart: bool = False,
            show_progress: bool = True) -> Trainer:
    """Fit the avatar of the subject folder ``root`` (resuming an unfinished fit); returns the trainer.

    Args:
        resume_only: fail unless there is a checkpoint to resume (``--resume``).
        restart: throw away an earlier fit of this folder first (``--restart``).
    """
    subject = Subject(root)
    out, ckpt = fit_dir(root), checkpoint_path(root)
    if restart and out.exists():
        shutil.rmtree(out)
    if resume_only and not ckpt.exists():
        raise UserError(f"--resume: {root} has no fit to resume (no {ckpt.relative_to(Path(root))})",
                        f"run `avatar fit {root}` without --resume to start one")
    avatar_file = avatar_path(root)
    if ckpt.exists():
        trainer = load_trainer(ckpt, subject, cfg)
        if finished(trainer) and avatar_file.exists():
            log.info("the fit of %s is finished (%d steps, %.1f min); give more --minutes or "
                     "fit.iterations to train on", root, trainer.iteration, trainer.elapsed_s / 60)
            return trainer
        log.info("resuming the fit from %s at step %d", ckpt, trainer.iteration)
    else:
        trainer = Trainer(subject, cfg)
    avatar_file.unlink(missing_ok=True)  # from here until the end, no finished avatar is in the folder
    train(trainer, ckpt, show_progress=show_progress, on_preview=write_preview)
    val = subject.val_frames
    summary = {"iterations": trainer.iteration, "training_minutes": round(trainer.elapsed_s / 60.0, 2),
               "steps_per_second": round(trainer.iteration / max(trainer.elapsed_s, 1e-9), 2),
               "gaussians": {name: len(g) for name, g in zip(GROUPS, trainer.model.groups())},
               "val_psnr": round(trainer.psnr(val), 3) if len(val) else None,
               "stopped_by": "iterations" if trainer.iteration >= cfg.iterations else "minutes",
               "config": config_io.to_dict(cfg)}
    (out / "previews").mkdir(parents=True, exist_ok=True)
    write_image(out / "previews" / "final.png", preview_image(trainer))
    write_json(out / "fit.json", summary)
    save_avatar(trainer.model, subject, summary)
    return trainer


def preview_image(trainer: Trainer) -> np.ndarray:
    """(2S, kS, 3) uint8: real validation frames on top, their renders below."""
    val = trainer.subject.val_frames
    if len(val) == 0:
        val = trainer.subject.train_frames
    picks = val[np.unique(np.linspace(0, len(val) - 1, PREVIEW_FRAMES).round().astype(int))]
    top, bottom = [], []
    with torch.no_grad():
        for i in picks:
            top.append(trainer.frames[int(i)].image)
            bottom.append((trainer.render(int(i)).rgb.clamp(0, 1) * 255).round().byte().numpy())
    return np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)


def write_preview(trainer: Trainer) -> None:
    (fit_dir(trainer.subject.paths.root) / "previews").mkdir(parents=True, exist_ok=True)
    write_image(fit_dir(trainer.subject.paths.root) / "previews" / f"step_{trainer.iteration:06d}.png",
                preview_image(trainer))
