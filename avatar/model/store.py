"""The fitted avatar on disk: ``SUBJECT_DIR/fit/avatar.pt``.

Written once, atomically, when a fit finishes (its checkpoint is a separate,
larger file with the optimiser), so a folder with an ``avatar.pt`` holds a
finished avatar and nothing else looks like one. It records the subject's
stage runs, so an avatar is never rendered with another subject's tracking.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from avatar.core import config as config_io
from avatar.core.errors import UserError
from avatar.core.files import atomic_path
from avatar.model.config import DeformConfig
from avatar.model.deform import make_deformation_field
from avatar.model.gaussians import AvatarGaussians
from preprocess.subject import Subject

AVATAR_FORMAT = 1
"""Bumped whenever an older avatar file could be misread."""


def fit_dir(subject_root: str | Path) -> Path:
    """The folder of a subject's fit: checkpoint, avatar, previews, eval outputs."""
    return Path(subject_root) / "fit"


def avatar_path(subject_root: str | Path) -> Path:
    return fit_dir(subject_root) / "avatar.pt"


def save_avatar(model: AvatarGaussians, subject: Subject, summary: dict) -> Path:
    """Write the finished avatar of ``subject`` with a ``summary`` of its fit (JSON-able); returns the path."""
    path = avatar_path(subject.paths.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": AVATAR_FORMAT, "subject": dict(subject.manifest.stage_runs), "summary": summary,
             "model": model.state_dict(), "deform": deform_settings(model)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_avatar(subject: Subject) -> tuple[AvatarGaussians, dict]:
    """The fitted avatar of ``subject`` and its fit summary; UserError when there is none that fits it."""
    root = subject.paths.root
    path = avatar_path(root)
    if not path.exists():
        raise UserError(f"{root} has no fitted avatar (no {path.relative_to(root)})",
                        f"run `avatar fit {root}` first (it resumes an unfinished fit)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != AVATAR_FORMAT:
            raise UserError(f"{path} is not an avatar of this version", f"run `avatar fit {root} --restart`")
        model = model_from_state(state["model"], state.get("deform"))
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile,
            pickle.UnpicklingError) as e:
        raise UserError(f"{path} is damaged ({e.__class__.__name__})",
                        f"run `avatar fit {root} --restart` to fit it again") from None
    if state["subject"] != dict(subject.manifest.stage_runs):
        raise UserError(f"{path} was fitted before {root} was preprocessed again",
                        f"run `avatar fit {root} --restart` to fit the new preprocessing")
    model.eval()
    return model, state["summary"]


def deform_settings(model: AvatarGaussians) -> dict | None:
    """What rebuilds ``model``'s deformation field (JSON-able; None without one)."""
    if model.deform is None:
        return None
    return {"config": config_io.to_dict(model.deform.cfg), "n_expr": model.deform.n_expr}


def model_from_state(state: dict, deform: dict | None) -> AvatarGaussians:
    """An :class:`AvatarGaussians` from its ``state_dict`` and :func:`deform_settings`."""
    field = None
    if deform is not None:
        cfg = config_io.from_dict(DeformConfig, deform["config"])
        field = make_deformation_field(cfg, int(deform["n_expr"]), state["mean_shape"], seed=0)
    return AvatarGaussians.from_state_dict(state, field)
