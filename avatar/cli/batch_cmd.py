"""``avatar batch JOBS.yaml [--ray auto|ADDRESS] [--workers N]``: many fits and renders, here or on a Ray cluster."""

from __future__ import annotations

import os
from pathlib import Path


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "batch", parents=[common], help="run a file of fit and render jobs, here or on a Ray cluster",
        description="Run the fit jobs (video -> subject) and render jobs (subject + speech -> mp4) of a YAML job "
                    "file (docs/batch.md). Renders wait for the fit of their subject. Finished jobs are skipped "
                    "when the same command runs again; a failed job is retried, then reported, while the others "
                    "go on. Logs, records and report.json go to --dir. Exit status 0 when every job is done or "
                    "skipped, 1 when some failed.")
    p.add_argument("jobs", type=Path, help="the job file (.yaml)")
    p.add_argument("--ray", default=None, metavar="local|auto|ADDRESS|off",
                   help="where jobs run: local (Ray on this machine; the default when Ray is installed), auto (the "
                        "Ray cluster this machine belongs to), HOST:PORT (that cluster's head), off (a process pool "
                        "on this machine, no Ray)")
    p.add_argument("--workers", type=int, default=None,
                   help="jobs at once on this machine, a render with cores/N threads, a fit with at least its "
                        "cpus (default: one per core; on 2 cores 2 workers gave 1.07-1.36x the renders per minute "
                        "of 1); on a cluster, Ray packs jobs by the cpus and memory_gb each asks for")
    p.add_argument("--dir", type=Path, default=None,
                   help="folder for the logs, records and report (default: JOBS_batch/ beside the job file)")
    p.add_argument("--retries", type=int, default=None,
                   help="further attempts of a failed job (default: the job file's retries, else 2)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    p.set_defaults(func=run, interrupted="interrupted: finished jobs are kept; run the same command again to go on")


def run(args) -> int:
    import json
    import logging

    from avatar.batch.execute import make_executor
    from avatar.batch.jobs import load_jobs
    from avatar.batch.run import run_batch
    from avatar.core.errors import UserError

    log = logging.getLogger("avatar")
    jobs = load_jobs(args.jobs)
    if args.retries is not None:
        if not 0 <= args.retries <= 10:
            raise UserError(f"--retries {args.retries}: must be from 0 to 10", "give --retries 0 to 10")
        jobs.retries = args.retries
    batch_dir = args.dir or args.jobs.with_name(f"{args.jobs.stem}_batch")
    workers = args.workers or (os.cpu_count() or 1)
    executor = make_executor(args.ray, workers)
    fits = sum(j.kind == "fit" for j in jobs.jobs)
    log.info("batch %s: %d jobs (%d fit, %d render) on %s; logs in %s", args.jobs, len(jobs.jobs), fits,
             len(jobs.jobs) - fits, executor.describe(), batch_dir / "logs")
    report = run_batch(jobs, batch_dir, executor)
    s = report["summary"]
    log.info("batch finished in %s: %d done, %d skipped (finished before), %d failed, %d blocked; report: %s",
             _duration(report["seconds"]), s["done"], s["skipped"], s["failed"], s["blocked"],
             batch_dir / "report.json")
    for j in report["jobs"]:
        if j["status"] in ("failed", "blocked"):
            log.error("  %s %s: %s (log: %s)", j["status"], j["name"], j.get("error", ""), j["log"])
    if args.json:
        print(json.dumps(report))
    return 0 if s["failed"] == 0 and s["blocked"] == 0 else 1


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s" if m else f"{s} s"
