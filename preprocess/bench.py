"""Benchmark of the whole preprocessing: wall time per stage, peak memory, quality."""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from avatar.errors import UserError
from preprocess.config import PreprocessConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def default_video() -> Path:
    video = DATA / "videos" / "cnn2_25fps.mp4"
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
        "frames": m["frames"],
        "wall_s": round(wall, 1),
        "stage_s": m["timings_s"],
        "peak_rss_gib": round(peak_self, 3),
        "peak_child_rss_gib": round(peak_child, 3),
        "tracked_fraction": m["tracked_fraction"],
        "reprojection_px": m["reprojection_px"],
        "pose_jitter_deg": m["pose_jitter_deg"],
        "pnp_pose_jitter_deg": m["pnp_pose_jitter_deg"],
        "focal_px": m["focal_px"],
    }
