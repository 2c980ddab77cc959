"""``avatar bench batch``: jobs per minute of ``avatar batch`` with 1 and with 2 workers on this machine.

``jobs`` renders of ``seconds`` of other speakers' speech each (slices of
../shared/data/audio), of one fitted subject whose motion model is trained
first (a one-off per subject, not what is timed). Each worker count runs the
same jobs in a fresh folder through the executor ``avatar batch`` would use
(Ray on this machine when installed, else the process pool); the executor's
start-up is timed apart from the jobs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def bench_batch(subject_root: Path, *, jobs: int = 6, seconds: float = 10.0, ray: str | None = None,
                config: str = "default") -> dict:
    """The benchmark's numbers as one JSON-able dict."""
    import numpy as np
    import soundfile as sf

    from avatar.batch.execute import make_executor
    from avatar.batch.jobs import load_jobs
    from avatar.batch.run import run_batch
    from avatar.motion.bench import default_audio
    from avatar.motion.model import load_or_train_motion
    from avatar.settings import load_config
    from preprocess.subject import Subject

    load_or_train_motion(Subject(subject_root), load_config(config).motion)
    result: dict = {"jobs": jobs, "speech_s_per_job": seconds}
    with tempfile.TemporaryDirectory(prefix="avatar-bench-batch-") as tmp:
        tmp = Path(tmp)
        speech, rate = sf.read(default_audio(tmp, jobs * seconds))
        n = int(seconds * rate)
        lines = []
        for i in range(jobs):
            sf.write(tmp / f"script{i}.wav", np.asarray(speech[i * n:(i + 1) * n]), rate)
            lines.append(f"  - {{render: {subject_root.resolve()}, audio: script{i}.wav, out: out/w{{W}}/r{i}.mp4, "
                         f"config: {config}}}")
        for workers in (1, 2):
            path = tmp / f"jobs_{workers}.yaml"
            path.write_text("retries: 0\njobs:\n" + "\n".join(lines).replace("{W}", str(workers)) + "\n")
            t0 = time.perf_counter()
            executor = make_executor(ray, workers)
            startup = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = run_batch(load_jobs(path), tmp / f"batch_{workers}", executor)
            took = time.perf_counter() - t0
            if report["summary"]["done"] != jobs:
                failed = [j for j in report["jobs"] if j["status"] != "done"]
                raise RuntimeError(f"the benchmark's batch failed: {failed}")
            per_job = [j["seconds"] for j in report["jobs"]]
            result[f"w{workers}_seconds"] = round(took, 2)
            result[f"w{workers}_jobs_per_min"] = round(jobs / took * 60, 2)
            result[f"w{workers}_job_s_median"] = round(statistics.median(per_job), 2)
            result[f"w{workers}_startup_s"] = round(startup, 2)
            result["executor"] = executor.describe().split(",")[0]
    result["speedup"] = round(result["w2_jobs_per_min"] / result["w1_jobs_per_min"], 3)
    return result
