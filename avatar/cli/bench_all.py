"""``avatar bench all`` (``make bench``): every benchmark, and the summary table of docs/benchmarks.md.

Each benchmark runs as its own ``avatar bench NAME --json`` process (so one's
threads, caches and memory do not colour the next), in the order below. A
benchmark whose input is not on this machine (``../shared/data``, a fitted
subject) is skipped with the reason. Results are kept in
``build/bench/results.json``, each with its date, machine and command, so
``--only`` reruns some and the table still shows the rest; ``--write`` replaces
the generated block of docs/benchmarks.md with the table (the hand-written
sections around it, with their history and analysis, are left alone).

The fit benchmark (cnn2, default preset, about 46 minutes) leaves its subject
in ``build/bench/cnn2``: the motion, render, stream and audio-driven eval
benchmarks run on it, and a second ``make bench`` reuses it (``--refit`` fits
it again). ``--subject DIR`` names another fitted subject for them instead.
"""

from __future__ import annotations

import datetime
import json
import operator
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from avatar.core.data import REPO_ROOT, shared_data

BEGIN, END = "<!-- make bench: begin -->", "<!-- make bench: end -->"
"""Markers of the generated block in docs/benchmarks.md."""
STORE = REPO_ROOT / "build" / "bench"
"""Where results and the fitted benchmark subject are kept."""


@dataclass(frozen=True)
class Metric:
    """One number of a benchmark and its target."""

    key: str
    """Its key in the benchmark's JSON (``a.b`` for nested)."""
    target: str = "-"
    """The target as written in the table, e.g. "<= 15"; "-" for numbers shown for information."""

    def met(self, value) -> bool | None:
        """Whether ``value`` meets the target (None: no target, or no value)."""
        if self.target == "-" or not isinstance(value, (int, float)):
            return None
        op, bound = self.target.split()
        return {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}[op](value, float(bound))


@dataclass(frozen=True)
class Bench:
    """One ``avatar bench`` (or ``avatar eval``) run and the numbers the table shows from it."""

    name: str
    what: str
    """What it measures, for the table."""
    argv: tuple[str, ...]
    """Arguments after ``avatar`` (SUBJECT stands for the benchmark subject)."""
    metrics: tuple[Metric, ...]
    needs: tuple[str, ...] = field(default_factory=tuple)
    """Shared data paths (relative to ../shared/data) it reads, or "SUBJECT"."""


BENCHES = (
    Bench("raster", "CPU rasteriser, 50k Gaussians at 512x512; hash grid", ("bench", "raster"),
          (Metric("fwd_ms", "<= 15"), Metric("fwdbwd_ms", "<= 50"), Metric("speedup_vs_torch", ">= 50"),
           Metric("hashgrid_fwdbwd_ms", "<= 20"))),
    Bench("startup", "start-up of the CLI", ("bench", "startup"),
          (Metric("help_s", "<= 1"), Metric("config_s", "<= 1"))),
    Bench("preprocess", "`avatar preprocess` of cnn2 (71 s, 512x512)", ("bench", "preprocess"),
          (Metric("wall_s", "<= 300"), Metric("tracked_fraction", ">= 0.99"), Metric("reprojection_px", "<= 1.5"),
           Metric("pose_jitter_deg"), Metric("pnp_pose_jitter_deg")), ("videos/cnn2_25fps.mp4",)),
    Bench("robustness", "preprocess of ~15 people (multispeaker)", ("bench", "robustness"),
          (Metric("summary.clips"), Metric("summary.ok"), Metric("summary.rejected")), ("multispeaker",)),
    Bench("fit", "`avatar fit` of cnn2, default preset, then `avatar eval`",
          ("bench", "fit", "--out", "SUBJECT"),
          (Metric("whole_fit_min", "<= 45"), Metric("fit_min"), Metric("peak_rss_gib", "< 8"), Metric("psnr", ">= 32"),
           Metric("lmd", "<= 2.6"), Metric("csim", ">= 0.9"), Metric("retrieval_psnr"), Metric("render_fps", ">= 30")),
          ("videos/cnn2_25fps.mp4",)),
    Bench("motion", "`avatar motion`, 60 s of other speakers", ("bench", "motion", "SUBJECT"),
          (Metric("seconds", "<= 10"), Metric("predictor_s", "< 1"), Metric("stream_compute_ms_mean", "<= 200")),
          ("audio", "SUBJECT")),
    Bench("render", "`avatar render`, 60 s of speech to mp4 at 512x512", ("bench", "render", "SUBJECT"),
          (Metric("seconds", "<= 60"), Metric("realtime_factor"), Metric("peak_rss_mb")), ("audio", "SUBJECT")),
    Bench("stream", "the viewer's engine, 30 s of speech at 512x512", ("bench", "stream", "SUBJECT"),
          (Metric("fps", ">= 30"), Metric("first_frame_ms", "<= 200"), Metric("peak_rss_mb")), ("audio", "SUBJECT")),
    Bench("batch", "`avatar batch`: 6 renders of 10 s, 1 and 2 workers", ("bench", "batch", "SUBJECT"),
          (Metric("w1_jobs_per_min"), Metric("w2_jobs_per_min"), Metric("speedup")), ("audio", "SUBJECT")),
    Bench("audio_eval", "audio-driven `avatar eval` (its own held-out speech)",
          ("eval", "SUBJECT", "--driver", "audio", "--no-video"),
          (Metric("psnr", ">= 31"), Metric("lmd", "<= 2.8"), Metric("mouth_corr", ">= 0.7"), Metric("lmd_speech"),
           Metric("mouth_corr_speech")), ("SUBJECT",)),
)


def add_parser(which, common) -> None:
    p = which.add_parser("all", parents=[common], help="every benchmark, and the table in docs/benchmarks.md",
                         description=__doc__.split("\n\n")[1])
    names = ", ".join(b.name for b in BENCHES)
    p.add_argument("--only", default=None, help=f"comma-separated benchmarks to run ({names})")
    p.add_argument("--subject", type=Path, default=None,
                   help="a fitted subject for motion, render, stream and audio_eval (default: the fit benchmark's)")
    p.add_argument("--refit", action="store_true", help="fit the benchmark subject again even if it is fitted")
    p.add_argument("--store", type=Path, default=STORE,
                   help="where results and the fit benchmark's subject are kept (default: build/bench)")
    p.add_argument("--write", type=Path, default=None, metavar="MARKDOWN",
                   help="replace the generated block of this file (docs/benchmarks.md) with the table")
    p.set_defaults(func=run)


def run(args) -> int:
    from avatar.core.errors import UserError

    wanted = [b.name for b in BENCHES] if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = sorted(set(wanted) - {b.name for b in BENCHES})
    if unknown:
        raise UserError(f"no benchmark named {', '.join(unknown)}",
                        f"choose from {', '.join(b.name for b in BENCHES)}")
    subject = args.subject or args.store / "cnn2"
    results = _load(args.store)
    for bench in BENCHES:
        if bench.name in wanted:
            results[bench.name] = _run_one(bench, subject, args.store, refit=args.refit,
                                           own_subject=args.subject is not None)
            _save(args.store, results)
    table = render_table(results)
    print("\n" + table)
    if args.write:
        write_block(args.write, table)
        print(f"\nwrote the table into {args.write}")
    return 0


def _run_one(bench: Bench, subject: Path, store: Path, *, refit: bool, own_subject: bool) -> dict:
    from avatar.cli.bench_cmd import machine
    from avatar.model.store import avatar_path

    argv = [str(subject) if a == "SUBJECT" else a for a in bench.argv]
    command = "avatar " + " ".join(argv) + " --json"
    entry = {"date": datetime.date.today().isoformat(), "machine": machine(), "command": command}
    for need in bench.needs:
        if need == "SUBJECT":
            if not avatar_path(subject).exists():
                return {**entry, "skipped": f"no fitted subject at {subject} (the fit benchmark makes it; "
                                            f"or give --subject DIR)"}
        elif not shared_data(*need.split("/")).exists():
            return {**entry, "skipped": f"{shared_data(*need.split('/'))} is not on this machine"}
    if bench.name == "fit":
        if own_subject:
            return _recorded_fit(subject, entry)
        if avatar_path(subject).exists() and not refit and (store / "fit.json").exists():
            print(f"bench fit: reusing the fitted {subject} (--refit to fit it again)", flush=True)
            return json.loads((store / "fit.json").read_text())
        if refit and subject.exists():
            import shutil
            shutil.rmtree(subject)
    print(f"\n== {bench.name}: {command}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "avatar.cli.main", *argv, "--json"], stdout=subprocess.PIPE,
                          text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {**entry, "failed": f"exit status {proc.returncode}"}
    entry["result"] = json.loads(lines[-1])
    if bench.name == "fit":
        (store / "fit.json").write_text(json.dumps(entry) + "\n")
    return entry


def _recorded_fit(subject: Path, entry: dict) -> dict:
    """The fit numbers a subject given with --subject recorded itself (fit/fit.json, fit/eval.json): its fit is
    not re-measured, and the table says so."""
    from avatar.model.store import fit_dir

    fit = fit_dir(subject)
    if not (fit / "fit.json").exists() or not (fit / "eval.json").exists():
        return {**entry, "skipped": f"--subject {subject} has no fit/fit.json and fit/eval.json to report"}
    record, result = json.loads((fit / "fit.json").read_text()), json.loads((fit / "eval.json").read_text())
    result.update(fit_min=record.get("training_minutes"), iterations=record.get("iterations"))
    command = f"(recorded by the fit of {subject}: training only; `avatar bench fit` re-measures it all)"
    return {**entry, "command": command, "result": result}


def _value(result: dict, key: str):
    for part in key.split("."):
        if not isinstance(result, dict) or part not in result:
            return None
        result = result[part]
    return result


def render_table(results: dict) -> str:
    """The markdown table of the stored results, one row per number, in BENCHES order."""
    rows = ["| benchmark | metric | target | measured | status | machine, date | command |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for bench in BENCHES:
        entry = results.get(bench.name)
        if entry is None:
            rows.append(f"| {bench.name}: {bench.what} | | | not run yet | | | `make bench` |")
            continue
        where = f"{entry['machine']}, {entry['date']}"
        if "result" not in entry:
            why = entry.get("skipped") or entry.get("failed")
            rows.append(f"| {bench.name}: {bench.what} | | | {'skipped' if 'skipped' in entry else 'failed'}: "
                        f"{why} | | {where} | `{entry['command']}` |")
            continue
        for i, metric in enumerate(bench.metrics):
            value = _value(entry["result"], metric.key)
            met = metric.met(value)
            status = "" if met is None else ("met" if met else "**not met**")
            first = i == 0  # the benchmark, its machine and its command once, on its first row
            name = f"{bench.name}: {bench.what}" if first else ""
            command = entry["command"] if entry["command"].startswith("(") else f"`{entry['command']}`"
            command = command if first else ""
            shown = "-" if value is None else value
            rows.append(f"| {name} | `{metric.key}` | {metric.target} | {shown} | {status} "
                        f"| {where if first else ''} | {command} |")
    return "\n".join(rows)


def write_block(path: Path, table: str) -> None:
    """Replace the text between BEGIN and END in ``path`` with ``table`` (appended at the end when absent)."""
    from avatar.core.files import atomic_path

    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def _load(store: Path) -> dict:
    path = store / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(store: Path, results: dict) -> None:
    store.mkdir(parents=True, exist_ok=True)
    (store / "results.json").write_text(json.dumps(results, indent=1) + "\n")
