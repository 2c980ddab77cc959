"""Benchmarks of the whole preprocessing: one video in detail (wall time per stage,
peak memory, quality), and a sweep over many people's videos (does it work on all)."""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from avatar.core.data import shared_data
from avatar.core.errors import UserError
from preprocess.config import PreprocessConfig
from preprocess.subject_data import Manifest


def default_video() -> Path:
    video = shared_data("videos", "cnn2_25fps.mp4")
    if not video.exists():
        raise UserError(f"the benchmark video {video} is not here",
                        "pass a video path: avatar bench preprocess VIDEO")
    return video


def bench_preprocess(video: Path, cfg: PreprocessConfig, out: Path | None = None) -> dict:
    """Preprocess ``video`` from scratch and report time, memory and the inspect numbers."""
    from preprocess.pipeline import run_preprocess
    from preprocess.subject import Subject

    with tempfile.TemporaryDirectory(prefix="avatar-bench-") as tmp:
        target = Path(out) if out else Path(tmp) / "subject"
        t0 = time.perf_counter()
        run_preprocess(video, target, cfg, force=("all",))
        wall = time.perf_counter() - t0
        m = Subject(target).manifest
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return {
        "video": str(video),
        "frames": m.frames,
        "wall_s": round(wall, 1),
        "stage_s": m.timings_s,
        "peak_rss_gib": round(peak_self, 3),
        "peak_child_rss_gib": round(peak_child, 3),
        **tracking_quality(m),
    }


QUALITY_KEYS = ("tracked_fraction", "reprojection_px", "pose_jitter_deg", "pnp_pose_jitter_deg",
                "focal_px")


def tracking_quality(manifest: Manifest) -> dict:
    """The tracking numbers of a subject manifest that the benchmarks report."""
    return {k: getattr(manifest, k) for k in QUALITY_KEYS}


def default_sweep_folder() -> Path:
    folder = shared_data("multispeaker")
    if not folder.is_dir():
        raise UserError(f"the sweep folder {folder} is not here",
                        "pass a folder of videos: avatar bench robustness FOLDER")
    return folder


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def sweep_videos(folder: Path) -> list[tuple[Path, Path | None]]:
    """The videos in ``folder`` (sorted), each with its sibling ``NAME.wav`` if there is one
    (some datasets ship the sound beside a silent video)."""
    videos = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise UserError(f"no videos in {folder}", f"put files ending in {', '.join(VIDEO_SUFFIXES)} there")
    return [(v, v.with_suffix(".wav") if v.with_suffix(".wav").exists() else None) for v in videos]


def bench_robustness(folder: Path, cfg: PreprocessConfig) -> dict:
    """Preprocess every video of ``folder`` from scratch; one entry per clip and a summary.

    A clip either succeeds (its inspect numbers are reported) or is rejected with the
    one-line problem the user would see; anything else (a crash) propagates, since it
    is a bug. ``summary`` counts both and gives the worst quality numbers over the
    clips that succeeded.
    """
    from preprocess.pipeline import run_preprocess
    from preprocess.subject import Subject

    clips = []
    with tempfile.TemporaryDirectory(prefix="avatar-sweep-") as tmp:
        for i, (video, audio) in enumerate(sweep_videos(folder)):
            entry: dict = {"video": video.name, "audio": audio.name if audio else None}
            t0 = time.perf_counter()
            try:
                run_preprocess(video, Path(tmp) / f"clip{i}", cfg, audio=audio)
            except UserError as e:
                entry.update(status="rejected", reason=e.problem)
            else:
                m = Subject(Path(tmp) / f"clip{i}").manifest
                entry.update(status="ok", frames=m.frames, **tracking_quality(m),
                             audio_features=m.audio_feature_fps is not None)
            entry["wall_s"] = round(time.perf_counter() - t0, 1)
            clips.append(entry)
    ok = [c for c in clips if c["status"] == "ok"]
    summary = {"clips": len(clips), "ok": len(ok), "rejected": len(clips) - len(ok)}
    if ok:
        summary.update(
            min_tracked_fraction=min(c["tracked_fraction"] for c in ok),
            max_reprojection_px=max(c["reprojection_px"] for c in ok),
            max_pose_jitter_deg=max(c["pose_jitter_deg"] for c in ok),
            max_jitter_over_pnp=round(max(c["pose_jitter_deg"] / c["pnp_pose_jitter_deg"]
                                          for c in ok), 3),
            frames=sum(c["frames"] for c in ok),
            wall_s=round(sum(c["wall_s"] for c in clips), 1))
    return {"folder": str(folder), "summary": summary, "clips": clips}
