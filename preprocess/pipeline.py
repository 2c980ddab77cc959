"""Run the preprocessing stages in order, skipping the ones already done.

A stage is done when ``SUBJECT/.stages/<name>.json`` exists and holds the same
*key*: a hash of the stage's config sections, the keys of the stages it reads
from, and the source video's fingerprint. Changing a setting therefore redoes
exactly the stages it affects and everything downstream of them; an interrupted
run resumes at the first stage that has no record; ``force`` redoes named
stages (and, through the keys, what depends on them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from avatar import config as config_io
from avatar.errors import UserError
from preprocess.config import PreprocessConfig
from preprocess.nerf_import import pack_frames, read_nerf_folder
from preprocess.stages import STAGE_NAMES, STAGES, Stage, StageContext
from preprocess.subject import FORMAT_VERSION, SubjectPaths, write_json

log = logging.getLogger("avatar.preprocess")


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


def _stage_key(stage: Stage, cfg: PreprocessConfig, dep_keys: dict[str, str], source: str) -> str:
    cfg_dict = config_io.to_dict(cfg)
    payload = {"stage": stage.name, "source": source,
               "config": {s: cfg_dict[s] for s in stage.config_sections},
               "deps": {d: dep_keys[d] for d in stage.deps}}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _record(paths: SubjectPaths, name: str) -> dict | None:
    f = paths.stages / f"{name}.json"
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        return None


def _check_output_folder(paths: SubjectPaths, video_fp: str, video: Path) -> bool:
    """Refuse a folder that holds something else; True if it was already ours."""
    root = paths.root
    if not root.exists():
        return False
    if not root.is_dir():
        raise UserError(f"--out {root} is a file, not a folder", "choose a folder path for --out")
    owner = paths.stages / "source.json"
    if owner.exists():
        held = json.loads(owner.read_text())
        if held.get("fingerprint") != video_fp:
            raise UserError(
                f"{root} already holds a different subject (made from {held.get('video')})",
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
    removed again if the very first stage rejects the input.
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
    existed = _check_output_folder(paths, video_fp, video)
    paths.stages.mkdir(parents=True, exist_ok=True)
    if dataset is not None:
        try:
            video = pack_frames(dataset, paths.imported_frames)
            probe_video(video, cfg.decode)
        except UserError:
            if not existed:
                shutil.rmtree(paths.root, ignore_errors=True)
            raise
    write_json(paths.stages / "source.json", {
        "video": str(Path(dataset.root if dataset else video).resolve()), "fingerprint": video_fp,
        "audio": str(Path(audio).resolve()) if audio else None,
        "imported_from": dataset.describe() if dataset else None})
    if paths.manifest.exists():
        paths.manifest.unlink()  # the folder is incomplete again until every stage agrees
    config_io.save(cfg, paths.config)

    ctx = StageContext(paths=paths, cfg=cfg, video=video, audio=Path(audio) if audio else None)
    keys: dict[str, str] = {}
    timings: dict[str, float] = {}
    for i, stage in enumerate(STAGES):
        key = _stage_key(stage, cfg, keys, source)
        forced = stage.name in force or "all" in force
        if forced:  # a new key, so every stage that reads this one is redone too
            key = hashlib.sha1(f"{key}{time.time_ns()}".encode()).hexdigest()[:16]
        keys[stage.name] = key
        rec = _record(paths, stage.name)
        if rec and rec.get("key") == key:
            log.info("%-12s cached", stage.name)
            timings[stage.name] = float(rec.get("seconds", 0.0))
            continue
        (paths.stages / f"{stage.name}.json").unlink(missing_ok=True)
        log.info("%-12s running", stage.name)
        t0 = time.perf_counter()
        try:
            stage.run(ctx)
        except UserError:
            if i == 0 and not existed:
                shutil.rmtree(paths.root, ignore_errors=True)
            raise
        seconds = time.perf_counter() - t0
        timings[stage.name] = seconds
        write_json(paths.stages / f"{stage.name}.json",
                   {"key": key, "seconds": round(seconds, 3),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        log.info("%-12s done in %.1f s", stage.name, seconds)

    write_json(paths.manifest, build_manifest(ctx, timings))
    return paths


def split_frames(valid: np.ndarray, val_fraction: float) -> tuple[list[int], list[int]]:
    """Train = the first (1 - val_fraction) of the clip, validation = the rest; valid frames only."""
    n = len(valid)
    n_val = int(round(n * val_fraction))
    cut = n - n_val
    idx = np.arange(n)
    train = idx[:cut][valid[:cut]].tolist()
    val = idx[cut:][valid[cut:]].tolist()
    return train, val


def build_manifest(ctx: StageContext, timings: dict[str, float]) -> dict:
    """The summary every later stage (and ``avatar inspect``) reads first."""
    from preprocess.tracking import pose_jitter_deg

    meta = ctx.video_meta
    lm = ctx.load(ctx.paths.landmarks)
    tr = ctx.load(ctx.paths.tracking)
    valid = lm["valid"].astype(bool)
    train, val = split_frames(valid, ctx.cfg.val_fraction)
    reproj = tr["reproj_px"][valid]
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": meta["source"],
        "audio_source": meta["audio_source"],
        "imported_from": json.loads((ctx.paths.stages / "source.json").read_text()).get("imported_from"),
        "frames": int(meta["frames"]),
        "fps": float(meta["fps"]),
        "duration_s": round(int(meta["frames"]) / float(meta["fps"]), 3),
        "width": int(meta["size"]),
        "height": int(meta["size"]),
        "crop": meta["crop"],
        "source_info": meta["source_info"],
        "tracked_fraction": round(float(valid.mean()), 4),
        "frames_no_face": int((lm["n_faces"] == 0).sum()),
        "frames_several_faces": int((lm["n_faces"] > 1).sum()),
        "reprojection_px": round(float(np.nanmean(reproj)), 4) if len(reproj) else None,
        "pose_jitter_deg": round(float(pose_jitter_deg(tr["viewmats"], valid)), 5),
        "pnp_pose_jitter_deg": round(float(pose_jitter_deg(tr["pnp_viewmats"], valid)), 5),
        "focal_px": round(float(tr["focal_px"]), 3),
        "n_expr": int(tr["expr"].shape[1]),
        "has_audio": bool(meta["has_audio"]),
        "audio_sample_rate": meta["audio_sample_rate"],
        "audio_feature_fps": ctx.cfg.audio.fps if ctx.paths.audio_features.exists() else None,
        "split": {"val_fraction": ctx.cfg.val_fraction, "train": train, "val": val},
        "train_frames": len(train),
        "val_frames": len(val),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
