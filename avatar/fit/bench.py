"""``avatar bench fit``: the whole fit of one video (preprocess + training + eval), timed, with its numbers.

What docs/benchmarks.md records against issue #10's targets: wall time of each
part, peak memory of the process, and the eval metrics of the validation frames.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from avatar.fit.config import FitConfig
from avatar.fit.evaluate import evaluate, retrieval_psnr
from avatar.fit.run import run_fit
from preprocess.config import PreprocessConfig
from preprocess.subject import Subject


def bench_fit(video: Path, preprocess_cfg: PreprocessConfig, fit_cfg: FitConfig, out: Path | None = None) -> dict:
    """Preprocess ``video``, fit and evaluate it; the timings, peak memory and eval metrics."""
    from preprocess.pipeline import run_preprocess

    with tempfile.TemporaryDirectory(prefix="avatar-bench-fit-") as tmp:
        root = Path(out) if out is not None else Path(tmp) / "subject"
        t0 = time.perf_counter()
        run_preprocess(video, root, preprocess_cfg)
        t1 = time.perf_counter()
        trainer = run_fit(root, fit_cfg)
        t2 = time.perf_counter()
        metrics = evaluate(root)
        t3 = time.perf_counter()
        subject = Subject(root)
        result = {"video": str(video), "size": subject.size, "train_frames": len(subject.train_frames),
                  "val_frames": len(subject.val_frames),
                  "preprocess_min": round((t1 - t0) / 60, 2), "fit_min": round((t2 - t1) / 60, 2),
                  "whole_fit_min": round((t2 - t0) / 60, 2), "eval_min": round((t3 - t2) / 60, 2),
                  "iterations": trainer.iteration, "gaussians": len(trainer.model),
                  "steps_per_second": round(trainer.iteration / max(trainer.elapsed_s, 1e-9), 2),
                  "peak_rss_gib": round(_peak_rss_gib(), 2),
                  "retrieval_psnr": round(retrieval_psnr(subject, subject.val_frames), 3)}
        result.update(metrics)
    return result


def _peak_rss_gib() -> float:
    """Peak resident memory of this process or its largest child (ffmpeg), GiB (Linux: ru_maxrss in KiB)."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2 ** 20
