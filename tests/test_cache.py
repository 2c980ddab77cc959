"""The stage cache checks what it trusts: missing, damaged or half-redone outputs are found,
re-run with a reason, reported by `avatar inspect`, and a failing re-run deletes nothing
that was finished. Works on copies of the session's may_5s subject."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from avatar.core.errors import UserError
from avatar.settings import load_config
from preprocess.pipeline import run_preprocess
from preprocess.subject import Subject
from tests.conftest import data_file, run_avatar

pytestmark = pytest.mark.slow

STAGE_LOG = "avatar.preprocess"


def rerun(folder: Path, caplog, *overrides: str) -> dict[str, str]:
    """Preprocess may_5s into ``folder`` again; {stage: its log line after the name}."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=STAGE_LOG):
        run_preprocess(data_file("videos", "may_5s.mp4"), folder, load_config("default", list(overrides)).preprocess)
    lines = {}
    for rec in caplog.records:
        name, _, rest = rec.getMessage().partition(" ")
        if rec.name == STAGE_LOG and not rest.strip().startswith("done"):
            lines[name] = rest.strip()
    return lines


def records(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (folder / ".stages").glob("*.json") if p.stem != "source"}


def test_a_deleted_output_reruns_its_stage_and_what_reads_it(may_subject, may_subject_copy, caplog):
    before = Subject(may_subject)
    (may_subject_copy / "tracking.npz").unlink()
    with pytest.raises(UserError, match="tracking.npz is missing"):
        Subject(may_subject_copy)
    lines = rerun(may_subject_copy, caplog)
    assert lines["tracking"] == "running (tracking.npz is missing)"
    assert lines["preview"] == "running (tracking was redone)"
    for stage in ("decode", "landmarks", "segmentation", "background", "audio"):
        assert lines[stage] == "cached", stage
    after = Subject(may_subject_copy)  # whole again, and the same result as before
    assert after.manifest.reprojection_px == before.manifest.reprojection_px
    assert (after.tracking.viewmats == before.tracking.viewmats).all()


def test_a_truncated_output_is_reported_by_inspect_and_rebuilt(may_subject_copy, caplog):
    feats = may_subject_copy / "audio_features.npz"
    feats.write_bytes(feats.read_bytes()[: feats.stat().st_size // 2])
    r = run_avatar("inspect", str(may_subject_copy))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "damaged" in r.stderr and "audio_features.npz" in r.stderr and "fix:" in r.stderr
    lines = rerun(may_subject_copy, caplog)
    assert lines["audio"].startswith("running (audio_features.npz is damaged")
    assert all(v == "cached" for k, v in lines.items() if k != "audio"), lines
    assert run_avatar("inspect", str(may_subject_copy)).returncode == 0


def test_a_missing_frame_is_named(may_subject_copy):
    (may_subject_copy / "frames" / "000042.jpg").unlink()
    r = run_avatar("inspect", str(may_subject_copy), "--json")
    assert r.returncode == 2 and "frames/000042.jpg is missing" in r.stderr


def test_a_failing_rerun_leaves_the_finished_folder_as_it_was(may_subject_copy, caplog):
    before = records(may_subject_copy)
    manifest = (may_subject_copy / "manifest.json").read_text()
    with pytest.raises(UserError):  # tracking refuses: fewer usable frames than asked for
        rerun(may_subject_copy, caplog, "preprocess.tracking.min_valid_frames=100000")
    assert records(may_subject_copy) == before
    assert (may_subject_copy / "manifest.json").read_text() == manifest
    assert Subject(may_subject_copy).n_frames == 125  # still a finished, whole folder


def test_a_stage_redone_after_the_manifest_makes_the_folder_unfinished(may_subject_copy):
    rec_path = may_subject_copy / ".stages" / "background.json"
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps({**rec, "run": "0000000000000000"}))
    with pytest.raises(UserError, match="background was redone"):
        Subject(may_subject_copy)


def test_a_corrupt_manifest_is_a_clear_error_and_a_rerun_rebuilds_it(may_subject_copy, caplog):
    (may_subject_copy / "manifest.json").write_text('{"format_version": 2, "frames": 12')
    r = run_avatar("inspect", str(may_subject_copy))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "manifest.json is damaged" in r.stderr and "fix:" in r.stderr
    lines = rerun(may_subject_copy, caplog)
    assert set(lines.values()) == {"cached"}
    assert Subject(may_subject_copy).manifest.frames == 125


def test_a_corrupt_stage_record_reruns_only_that_stage(may_subject_copy, caplog):
    (may_subject_copy / ".stages" / "background.json").write_text("\x00\x01 not json")
    lines = rerun(may_subject_copy, caplog)
    assert lines["background"] == "running (.stages/background.json is unreadable)"
    assert all(v == "cached" for k, v in lines.items() if k != "background"), lines


def test_a_stage_redone_since_its_readers_ran_redoes_them(may_subject_copy, caplog):
    """As after a run interrupted between segmentation and the stages that read it."""
    rec_path = may_subject_copy / ".stages" / "segmentation.json"
    rec_path.write_text(json.dumps({**json.loads(rec_path.read_text()), "run": "0123456789abcdef"}))
    lines = rerun(may_subject_copy, caplog)
    assert lines["segmentation"] == "cached"
    assert lines["background"] == lines["preview"] == "running (its settings, the input or an earlier stage changed)"
    assert all(lines[s] == "cached" for s in ("decode", "landmarks", "tracking", "audio")), lines
    assert Subject(may_subject_copy).manifest.stage_runs["segmentation"] == "0123456789abcdef"


def test_a_rerun_failing_after_a_redone_stage_leaves_an_unfinished_folder(may_subject_copy, caplog):
    """Landmarks redo with new settings, then tracking refuses: the folder mixes two runs, so it is
    not finished, but nothing the failing run did not redo is lost and the next good run completes it."""
    before = records(may_subject_copy)
    with pytest.raises(UserError):
        rerun(may_subject_copy, caplog, "preprocess.landmarks.duplicate_iou=0.6",
              "preprocess.tracking.min_valid_frames=100000")
    after = records(may_subject_copy)
    assert after["landmarks"]["run"] != before["landmarks"]["run"]
    for stage in ("decode", "tracking", "segmentation", "background", "torso", "audio", "preview"):
        assert after[stage] == before[stage], stage  # tracking failed before writing: its record is back
    assert (may_subject_copy / "manifest.json").exists()
    with pytest.raises(UserError, match="landmarks was redone after manifest.json was written"):
        Subject(may_subject_copy)
    lines = rerun(may_subject_copy, caplog, "preprocess.landmarks.duplicate_iou=0.6")
    assert lines["decode"] == lines["landmarks"] == "cached"
    assert lines["tracking"].startswith("running") and lines["segmentation"].startswith("running")
    assert Subject(may_subject_copy).n_frames == 125
