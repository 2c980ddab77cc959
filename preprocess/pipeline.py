"""Run the preprocessing stages in order, skipping the ones already done.

A stage is done when ``SUBJECT/.stages/<name>.json`` exists, holds the same
*key*, and every output it recorded is still there at the size it was written
(:mod:`preprocess.cache`). The key hashes the stage's config sections, the
source video's fingerprint, and the *run ids* of the stages it reads from (a
fresh id each time a stage runs). So changing a setting redoes exactly the
stages it affects and everything downstream; a stage whose outputs were
deleted or damaged is redone, and so is everything that read it; ``force``
redoes named stages and their dependants; and an interrupted run resumes at
the first stage that is not done, even when the interruption came between a
stage and the stages that read it. Each stage that runs says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from avatar.core import config as config_io
from avatar.core.errors import UserError
from avatar.core.files import write_json, write_text
from preprocess.cache import damaged_outputs, describe_outputs, output_snapshot
from preprocess.config import STAGE_NAMES, PreprocessConfig
from preprocess.nerf_import import pack_frames, read_nerf_folder
from preprocess.stages import STAGES, Stage, StageContext
from preprocess.subject import FORMAT_VERSION, SubjectPaths
from preprocess.subject_data import Manifest, Split

log = logging.getLogger("avatar.preprocess")

NOT_DONE = "not done yet"


def file_fingerprint(path: Path) -> str:
    """Cheap identity of a media file: size plus a hash of its first and last MiB."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha1(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), 2)
            h.update(f.read())
    return h.hexdigest()[:16]


def _stage_key(stage: Stage, cfg: PreprocessConfig, dep_runs: dict[str, str], source: str) -> str:
    cfg_dict = config_io.to_dict(cfg)
    payload = {"stage": stage.name, "source": source,
               "config": {s: cfg_dict[s] for s in stage.config_sections},
               "deps": {d: dep_runs[d] for d in stage.deps}}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _record(paths: SubjectPaths, name: str) -> tuple[dict | None, str]:
    """The stage's record, or None and why there is none usable (the stage then runs)."""
    path = paths.stage_record(name)
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None, NOT_DONE
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f".stages/{name}.json is unreadable"
    if not isinstance(rec, dict) or not isinstance(rec.get("run"), str):
        return None, f".stages/{name}.json is damaged or from an earlier version"
    return rec, ""


def _why_rerun(stage: Stage, rec: dict | None, no_record: str, key: str, forced: bool,
               redone: set[str], root: Path) -> str | None:
    """Why ``stage`` must run (a short phrase for the log), or None when its cached result holds."""
    if forced:
        return "forced"
    if rec is None:
        return no_record
    if rec.get("key") != key:
        changed = [d for d in stage.deps if d in redone]
        return f"{changed[0]} was redone" if changed else "its settings, the input or an earlier stage changed"
    problems = damaged_outputs(root, rec.get("outputs"))
    return "; ".join(problems) if problems else None


def _check_output_folder(paths: SubjectPaths, video_fp: str) -> bool:
    """Refuse a folder that holds something else; True if it was already ours."""
    root = paths.root
    if not root.exists():
        return False
    if not root.is_dir():
        raise UserError(f"--out {root} is a file, not a folder", "choose a folder path for --out")
    owner = paths.stages / "source.json"
    if owner.exists():
        try:
            held = json.loads(owner.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise UserError(f"{owner} is damaged, so it is unknown which video {root} was made from",
                            f"delete {root} to start over, or choose another --out folder") from None
        if not isinstance(held, dict) or held.get("fingerprint") != video_fp:
            raise UserError(
                f"{root} already holds a different subject (made from "
                f"{held.get('video') if isinstance(held, dict) else 'an unknown video'})",
                f"choose another --out folder, or delete {root} to start over")
        return True
    if any(root.iterdir()):
        raise UserError(f"--out {root} is not empty and is not a subject folder",
                        "choose a new or empty folder for --out")
    return False


def run_preprocess(video: Path, out: Path, cfg: PreprocessConfig, *, audio: Path | None = None,
                   force: tuple[str, ...] = ()) -> SubjectPaths:
    """Turn ``video`` into the subject folder ``out``; returns its paths.

    Input is checked before anything is written; a folder this call created is
    removed again if the very first stage rejects the input. A re-run that fails
    leaves a finished folder as it was when the failing stage had not replaced
    any of its files yet (the usual case: input checks come first); otherwise the
    folder counts as unfinished (``Subject`` refuses it) until a run completes.
    """
    video, out = Path(video), Path(out)
    if not video.exists():
        raise UserError(f"video {video} does not exist", "check the path")
    if audio is not None and not Path(audio).exists():
        raise UserError(f"audio file {audio} does not exist", "check the --audio path")
    unknown = [f for f in force if f not in STAGE_NAMES and f != "all"]
    if unknown:
        raise UserError(f"--force {unknown[0]!r} is not a stage",
                        f"stages are: {', '.join(STAGE_NAMES)} (or 'all')")
    from preprocess.decode import probe_video
    dataset = None
    if video.is_dir():  # an ER-NeRF / AD-NeRF dataset folder: its frames become the video
        dataset = read_nerf_folder(video)
        audio = audio or dataset.audio
        video_fp = dataset.fingerprint()
    else:
        probe_video(video, cfg.decode)  # fail on bad input before creating anything
        video_fp = file_fingerprint(video)

    paths = SubjectPaths(out)
    source = video_fp + (file_fingerprint(audio) if audio else "")
    existed = _check_output_folder(paths, video_fp)
    _make_folder(paths)
    write_json(paths.stages / "source.json", {  # first: it makes the folder ours, so an interrupted run resumes
        "video": str(Path(dataset.root if dataset else video).resolve()), "fingerprint": video_fp,
        "audio": str(Path(audio).resolve()) if audio else None,
        "imported_from": dataset.describe() if dataset else None})
    if dataset is not None:
        try:
            video = pack_frames(dataset, paths.imported_frames)
            probe_video(video, cfg.decode)
        except UserError:
            if not existed:
                shutil.rmtree(paths.root, ignore_errors=True)
            raise

    ctx = StageContext(paths=paths, cfg=cfg, video=video, audio=Path(audio) if audio else None)
    runs: dict[str, str] = {}
    timings: dict[str, float] = {}
    cached: set[str] = set()
    for i, stage in enumerate(STAGES):
        key = _stage_key(stage, cfg, runs, source)
        rec, no_record = _record(paths, stage.name)
        why = _why_rerun(stage, rec, no_record, key, stage.name in force or "all" in force,
                         set(timings) - cached, paths.root)
        if why is None:
            log.info("%-12s cached", stage.name)
            cached.add(stage.name)
            runs[stage.name] = rec["run"]
            timings[stage.name] = float(rec.get("seconds", 0.0))
            continue
        record = paths.stage_record(stage.name)
        old_record = record.read_text() if rec is not None else None
        before = output_snapshot(stage.outputs(paths))
        record.unlink(missing_ok=True)  # not done until it finishes again
        log.info("%-12s running%s", stage.name, "" if why == NOT_DONE else f" ({why})")
        t0 = time.perf_counter()
        try:
            stage.run(ctx)
        except BaseException as e:
            if old_record is not None and output_snapshot(stage.outputs(paths)) == before:
                write_text(record, old_record)  # it failed before replacing anything: the folder is as it was
            elif i == 0 and not existed and isinstance(e, UserError):
                shutil.rmtree(paths.root, ignore_errors=True)  # the input was refused: leave nothing
            raise
        seconds = time.perf_counter() - t0
        runs[stage.name] = uuid.uuid4().hex[:16]
        timings[stage.name] = seconds
        write_json(paths.stage_record(stage.name), {
            "key": key, "run": runs[stage.name], "seconds": round(seconds, 3),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "outputs": describe_outputs(paths.root, stage.outputs(paths))})
        log.info("%-12s done in %.1f s", stage.name, seconds)

    config_io.save(cfg, paths.config)
    write_json(paths.manifest, build_manifest(ctx, timings, runs).to_dict())
    return paths


def _make_folder(paths: SubjectPaths) -> None:
    """Create the folder (and its .stages/), or say clearly why it cannot be."""
    try:
        paths.stages.mkdir(parents=True, exist_ok=True)
        probe = paths.stages / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write the subject folder {paths.root}: {e.strerror or e}",
                        "choose an --out folder on a disk you can write to (and with free space)") from None


def split_frames(valid: np.ndarray, val_fraction: float) -> tuple[list[int], list[int]]:
    """Train = the first (1 - val_fraction) of the clip, validation = the rest; valid frames only."""
    n = len(valid)
    n_val = int(round(n * val_fraction))
    cut = n - n_val
    idx = np.arange(n)
    train = idx[:cut][valid[:cut]].tolist()
    val = idx[cut:][valid[cut:]].tolist()
    return train, val


def build_manifest(ctx: StageContext, timings: dict[str, float], runs: dict[str, str]) -> Manifest:
    """The summary every later stage (and ``avatar inspect``) reads first."""
    from preprocess.tracking import pose_jitter_deg

    meta = ctx.video_meta
    lm = ctx.landmarks()
    tr = ctx.tracking()
    valid = lm.valid.astype(bool)
    train, val = split_frames(valid, ctx.cfg.val_fraction)
    reproj = tr.reproj_px[valid]
    return Manifest(
        format_version=FORMAT_VERSION,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source=meta["source"],
        audio_source=meta["audio_source"],
        imported_from=json.loads((ctx.paths.stages / "source.json").read_text()).get("imported_from"),
        frames=int(meta["frames"]),
        fps=float(meta["fps"]),
        duration_s=round(int(meta["frames"]) / float(meta["fps"]), 3),
        width=int(meta["size"]),
        height=int(meta["size"]),
        crop=meta["crop"],
        source_info=meta["source_info"],
        tracked_fraction=round(float(valid.mean()), 4),
        frames_no_face=int((lm.n_faces == 0).sum()),
        frames_several_faces=int((lm.n_faces > 1).sum()),
        reprojection_px=round(float(np.nanmean(reproj)), 4) if len(reproj) else None,
        pose_jitter_deg=round(float(pose_jitter_deg(tr.viewmats, valid)), 5),
        pnp_pose_jitter_deg=round(float(pose_jitter_deg(tr.pnp_viewmats, valid)), 5),
        focal_px=round(tr.focal_px, 3),
        n_expr=tr.n_expr,
        has_audio=bool(meta["has_audio"]),
        audio_sample_rate=meta["audio_sample_rate"],
        audio_feature_fps=ctx.cfg.decode.fps if ctx.paths.audio_features.exists() else None,
        split=Split(ctx.cfg.val_fraction, tuple(train), tuple(val)),
        train_frames=len(train),
        val_frames=len(val),
        timings_s={k: round(v, 2) for k, v in timings.items()},
        stage_runs=dict(runs),
    )
