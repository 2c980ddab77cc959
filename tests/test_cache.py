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
    assert lines["background"] == "running"  # no readable record: done again from scratch
    assert all(v == "cached" for k, v in lines.items() if k != "background"), lines


def test_force_redoes_the_stage_once_and_the_next_run_caches_it(may_subject_copy, caplog):
    before = records(may_subject_copy)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=STAGE_LOG):
        run_preprocess(data_file("videos", "may_5s.mp4"), may_subject_copy, load_config().preprocess,
                       force=("background",))
    after = records(may_subject_copy)
    assert after["background"]["run"] != before["background"]["run"]
    for untouched in ("decode", "landmarks", "tracking", "segmentation", "audio", "preview"):
        assert after[untouched] == before[untouched], untouched
    assert set(rerun(may_subject_copy, caplog).values()) == {"cached"}  # forced once, not forever


def test_an_unwritable_out_folder_is_a_clear_error(tmp_path):
    r = run_avatar("preprocess", str(data_file("videos", "may_5s.mp4")), "--out", "/proc/avatar-test/subject")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot write the subject folder" in r.stderr and "fix:" in r.stderr


@pytest.mark.parametrize("setting, words", [
    ("preprocess.decode.size=-5", ["preprocess.decode.size", "[64, 4096]"]),
    ("preprocess.decode.size=0", ["preprocess.decode.size", "out of range"]),
    ("preprocess.decode.fps=0", ["preprocess.decode.fps", "out of range"]),
    ("preprocess.decode.fps=30", ["30 fps", "decode.fps", "25"]),
    ("preprocess.jpeg_quality=101", ["preprocess.jpeg_quality", "[1, 100]"]),
])
def test_a_bad_number_is_refused_before_anything_is_written(tmp_path, setting, words):
    out = tmp_path / "subject"
    r = run_avatar("preprocess", str(data_file("videos", "may_5s.mp4")), "--out", str(out), "--set", setting)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: config ") and "fix:" in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
