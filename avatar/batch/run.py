"""The scheduler of ``avatar batch``: dependencies, skips, retries, progress, the report.

A job starts when the jobs it needs have finished; one that is finished
already (:func:`avatar.batch.records.is_finished`) is skipped. A job whose
command crashes, or whose output fails its check, runs again up to ``retries``
more times (a node that died mid-job counts as a failed attempt); one whose
command rejected its input (exit status 2, with the reason) is not retried,
since it would fail the same way. A job that fails for good is
reported as failed with its error while the other jobs go on; the renders of a
fit that failed are reported as blocked. ``BATCH_DIR/report.json`` is rewritten
after every job, so it is current even when the batch is interrupted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from avatar.batch.execute import Attempt
from avatar.batch.jobs import Job, JobFile
from avatar.batch.records import check_output, is_finished, write_record
from avatar.core.files import write_json
from avatar.core.progress import progress

log = logging.getLogger("avatar")

USER_ERROR = 2
"""Exit status of an ``avatar`` command that rejected its input (UserError): not retried."""
STATES = ("done", "skipped", "failed", "blocked")
"""How a job ends: done now, skipped (finished before), failed (after its retries), blocked (what it needs failed)."""


@dataclass
class JobState:
    job: Job
    status: str = "waiting"
    """waiting, running, or one of STATES."""
    attempts: int = 0
    seconds: float = 0.0
    """Run time over all attempts."""
    host: str | None = None
    errors: list[str] = field(default_factory=list)
    """One line per failed attempt."""

    def as_dict(self, batch_dir: Path) -> dict:
        d = {"name": self.job.name, "kind": self.job.kind, "out": str(self.job.out), "status": self.status,
             "attempts": self.attempts, "seconds": round(self.seconds, 2), "host": self.host,
             "log": str(log_path(batch_dir, self.job))}
        if self.errors:
            d["error"] = self.errors[-1]
            d["errors"] = self.errors
        return d


def log_path(batch_dir: Path, job: Job) -> Path:
    return batch_dir / "logs" / f"{job.name}.log"


def run_batch(jobs: JobFile, batch_dir: Path, executor, *, poll_s: float = 0.5) -> dict:
    """Run every job of ``jobs`` on ``executor``; returns the report (also written to ``batch_dir``)."""
    batch_dir.mkdir(parents=True, exist_ok=True)
    (batch_dir / "logs").mkdir(exist_ok=True)
    states = {j.name: JobState(j) for j in jobs.jobs}
    t0 = time.time()
    report = _report(jobs, batch_dir, executor, states, t0)
    bar = progress(total=len(states), desc="batch", unit="job")
    try:
        while True:
            _start_ready(states, batch_dir, executor, bar)
            running = [s for s in states.values() if s.status == "running"]
            if not running:
                break
            bar.set_postfix_str(", ".join(s.job.name for s in running)[:60], refresh=True)
            for attempt, result in executor.wait(poll_s):
                _finish(states[attempt.job.name], attempt, result, jobs.retries, batch_dir, executor, bar)
                report = _report(jobs, batch_dir, executor, states, t0)
                write_json(batch_dir / "report.json", report)
    except BaseException:
        executor.close(cancel=True)
        for s in states.values():
            if s.status == "running":
                s.status, s.errors = "interrupted", [*s.errors, "interrupted"]
        write_json(batch_dir / "report.json", _report(jobs, batch_dir, executor, states, t0, interrupted=True))
        raise
    finally:
        bar.close()
    executor.close()
    report = _report(jobs, batch_dir, executor, states, t0)
    write_json(batch_dir / "report.json", report)
    return report


def _start_ready(states: dict[str, JobState], batch_dir: Path, executor, bar) -> None:
    """Skip finished jobs, block those whose needs failed, and submit the rest whose needs are met."""
    changed = True
    while changed:
        changed = False
        for s in states.values():
            if s.status != "waiting":
                continue
            needs = [states[n] for n in s.job.needs]
            if any(n.status in ("failed", "blocked") for n in needs):
                s.status = "blocked"
                s.errors.append(f"not run: {', '.join(n.job.name for n in needs if n.status != 'done')} failed")
                log.warning("%s: blocked (%s)", s.job.name, s.errors[-1])
                bar.update()
                changed = True
            elif all(n.status in ("done", "skipped") for n in needs):
                if is_finished(batch_dir, s.job):
                    s.status = "skipped"
                    log.info("%s: already finished (%s), skipped", s.job.name, s.job.out)
                    bar.update()
                    changed = True
                elif (why := executor.check(s.job)) is not None:
                    s.status, s.errors = "failed", [f"cannot run on this cluster: {why}"]
                    log.error("%s: failed: %s", s.job.name, s.errors[-1])
                    bar.update()
                    changed = True
                else:
                    _submit(s, batch_dir, executor)


def _submit(s: JobState, batch_dir: Path, executor) -> None:
    s.job.out.parent.mkdir(parents=True, exist_ok=True)
    s.status, s.attempts = "running", s.attempts + 1
    executor.submit(Attempt(s.job, s.attempts, log_path(batch_dir, s.job)))


def _finish(s: JobState, attempt: Attempt, result, retries: int, batch_dir: Path, executor, bar) -> None:
    error, retry = None, True
    if isinstance(result, BaseException):
        error = f"{result.__class__.__name__}: {str(result).strip().splitlines()[0] if str(result).strip() else ''}"
        _append(attempt.log, f"=== attempt {attempt.number} lost: {error}\n")
    else:
        s.seconds += result["seconds"]
        s.host = result["host"]
        if result["rc"] != 0:
            error = f"exit status {result['rc']}: {_message(result['tail'])}"
            retry = result["rc"] != USER_ERROR  # bad input: the same again would fail the same way
        elif (why := check_output(s.job)) is not None:
            error = f"the command succeeded but its output is not finished: {why}"
            _append(attempt.log, f"=== {error}\n")
    if error is None:
        write_record(batch_dir, s.job, result)
        s.status = "done"
        log.info("%s: done in %.1f s (%s)", s.job.name, result["seconds"], s.job.out)
        bar.update()
        return
    s.errors.append(f"attempt {attempt.number}: {error}")
    if retry and s.attempts <= retries:
        log.warning("%s: attempt %d failed (%s); trying again", s.job.name, attempt.number, error)
        _submit(s, batch_dir, executor)
        return
    s.status = "failed"
    log.error("%s: failed after %d attempt%s: %s (log: %s)", s.job.name, s.attempts, "s" if s.attempts > 1 else "",
              error, attempt.log)
    bar.update()


def _message(tail: str) -> str:
    """The command's own error message ("error: ..." and its fix) from the end of its log."""
    lines = tail.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error: "):
            return " ".join(t.strip() for t in lines[i:i + 2])[len("error: "):]
    return lines[-1].strip() if lines else "no output"


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _report(jobs: JobFile, batch_dir: Path, executor, states: dict[str, JobState], t0: float,
            interrupted: bool = False) -> dict:
    counts = {k: sum(s.status == k for s in states.values()) for k in STATES}
    return {"jobs_file": str(jobs.path), "batch_dir": str(batch_dir), "executor": executor.describe(),
            "seconds": round(time.time() - t0, 2), "interrupted": interrupted,
            "summary": {"jobs": len(states), **counts}, "jobs": [s.as_dict(batch_dir) for s in states.values()]}
