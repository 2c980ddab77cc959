"""The training loop on may_5s: it learns, and a resumed fit is the uninterrupted one to the bit."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from avatar.core.errors import UserError
from avatar.fit.config import FitConfig
from avatar.fit.trainer import Trainer, fit, load_trainer
from preprocess.subject import Subject

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def subject(may_subject) -> Subject:
    return Subject(may_subject)


def test_training_beats_the_untrained_avatar(subject):
    trainer = Trainer(subject, FitConfig())
    val = subject.val_frames
    before = trainer.psnr(val)
    losses = [float(trainer.step().l1) for _ in range(60)]
    after = trainer.psnr(val)
    # measured: 26.1 dB untrained, 29.4 after 150 steps, 29.6 after 600 (L1 only, no densification)
    assert after > before + 1.0, (before, after)
    assert sum(losses[-10:]) < sum(losses[:10])


def test_a_resumed_fit_is_the_uninterrupted_fit(subject, tmp_path):
    cfg = FitConfig(iterations=12, checkpoint_every=5)
    whole = fit(subject, cfg, tmp_path / "whole.pt", show_progress=False)

    def interrupt(trainer):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # at step 7, after the checkpoint of step 5
        fit(subject, dataclasses.replace(cfg, preview_every=7), tmp_path / "parts.pt", show_progress=False,
            on_preview=interrupt)
    assert torch.load(tmp_path / "parts.pt", weights_only=True)["iteration"] == 5
    resumed = fit(subject, cfg, tmp_path / "parts.pt", show_progress=False)  # 5 -> 12
    assert resumed.iteration == whole.iteration == 12
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert fit(subject, cfg, tmp_path / "whole.pt", show_progress=False).iteration == 12  # done: no more steps


def test_checkpoints_that_cannot_be_resumed_are_clear_errors(subject, tmp_path):
    cfg = FitConfig(iterations=2, checkpoint_every=1)
    path = tmp_path / "ck.pt"
    fit(subject, cfg, path, show_progress=False)
    with pytest.raises(UserError, match=r"other settings \(seed\)"):
        load_trainer(path, subject, dataclasses.replace(cfg, seed=1))
    state = torch.load(path, weights_only=True)
    state["subject"] = {**state["subject"], "tracking": "0000000000000000"}
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(UserError, match="another subject"):
        load_trainer(tmp_path / "other.pt", subject, cfg)
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="damaged or truncated") as e:
        load_trainer(tmp_path / "cut.pt", subject, cfg)
    assert "delete" in e.value.fix
