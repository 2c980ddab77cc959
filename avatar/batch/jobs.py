"""The job file of ``avatar batch``: fit jobs (video -> subject) and render jobs (subject + speech -> mp4).

::

    retries: 2                    # further attempts of a failed job (default 2)
    defaults:                     # merged under every job of the kind
      render: {config: fast}
    jobs:
      - name: anna                # optional: default, the output's name
        fit: videos/anna.mp4      # a video, or a subject folder (fitted in place)
        out: subjects/anna
        config: fast
        minutes: 20
      - render: anna              # a fit job's name, or a fitted subject folder
        audio: speech/hello.wav   # or text: "..." (voice: en-gb), or motion: m.npz
        out: renders/anna_hello.mp4
        pose: audio

Paths are relative to the job file. The whole file is checked before anything
runs (:func:`load_jobs`): unknown keys, missing inputs, clashing names or
outputs, presets or ``set`` overrides that do not load, all reported together
with the job each belongs to.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from avatar.core.errors import UserError

COMMON_KEYS = {"name", "out", "config", "set", "cpus", "memory_gb"}
FIT_KEYS = COMMON_KEYS | {"fit", "minutes"}
RENDER_OPTIONS = {
    # job key: (flag of `avatar render`, kind) with kind "path", "str", "float", "int" or "flag"
    "audio": ("--audio", "path"), "text": ("--text", "str"), "voice": ("--voice", "str"),
    "motion": ("--motion", "path"), "own_pose": ("--own-pose", "flag"), "camera": ("--camera", "str"),
    "paste_back": ("--paste-back", "flag"), "source_video": ("--source-video", "path"),
    "backend": ("--backend", "str"), "pose": ("--pose", "str"), "mouth_amplitude": ("--mouth-amplitude", "float"),
    "blink_rate": ("--blink-rate", "float"), "head_motion": ("--head-motion", "float"), "seed": ("--seed", "int"),
}
RENDER_KEYS = COMMON_KEYS | {"render"} | set(RENDER_OPTIONS)
TOP_KEYS = {"jobs", "retries", "defaults"}
DEFAULT_CPUS = {"fit": 2, "render": 1}
"""CPU cores a job asks for on a cluster (and the threads it then uses)."""
DEFAULT_MEMORY_GB = {"fit": 4.0, "render": 2.0}
"""Memory a job asks for on a cluster, GiB: measured peaks are 1.5-3 GB for a fit, about 1 GB for a render."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Job:
    """One fit or render: an ``avatar`` command, its output, and what it waits for."""

    name: str
    """Unique in the file; names its log and its record."""
    kind: str
    """"fit" or "render"."""
    out: Path
    """The subject folder (fit) or the .mp4 (render), absolute."""
    args: list[str]
    """The ``avatar`` command line without the thread settings, which depend on where it runs."""
    inputs: list[Path]
    """Files it reads (video, audio, motion, a preset file): a changed one makes a finished job run again."""
    subject: Path
    """The subject folder it fits or renders."""
    cpus: int = 1
    """Cores it asks for on a cluster, and the threads it then uses."""
    memory_gb: float = 2.0
    """Memory it asks for on a cluster, GiB."""
    subject_ref: str = ""
    """A render's ``render:`` value as written: a fit job's name or a folder."""
    needs: list[str] = field(default_factory=list)
    """Names of the jobs that must finish first (a render's fit job)."""
    wants_audio: bool = True
    """Whether its output must have a sound track (a render of a motion file may have none)."""

    def command(self, threads: int) -> list[str]:
        """The ``avatar`` arguments for a run on ``threads`` cores."""
        # a render's frames are rendered on this many threads, one frame each (see FramePool)
        extra = ["--set", f"render.render_workers={threads}"] if self.kind == "render" else []
        return [*self.args, *extra]


@dataclass
class JobFile:
    """A checked job file."""

    path: Path
    jobs: list[Job]
    """In dependency order: a job comes after the jobs it needs."""
    retries: int
    """Further attempts of a failed job before it is reported as failed."""


def load_jobs(path: str | Path) -> JobFile:
    """Read and check the job file at ``path``; UserError naming every bad job (nothing has run)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such job file", "give the path of a .yaml job file (see docs/batch.md)")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid YAML ({e.__class__.__name__}: {str(e).splitlines()[0]})",
                        "fix the file's syntax (see docs/batch.md for an example)") from None
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list) or not data["jobs"]:
        raise UserError(f"{path} has no list of jobs", "write `jobs:` followed by one `- fit: ...` or "
                        "`- render: ...` entry per job (see docs/batch.md)")
    problems += [f"unknown top-level key {k!r}{_suggest(k, TOP_KEYS)}" for k in data if k not in TOP_KEYS]
    retries = data.get("retries", 2)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        problems.append(f"retries must be a whole number from 0 to 10, not {retries!r}")
        retries = 0
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - {"fit", "render"}:
        problems.append("defaults must be a mapping with the keys fit and/or render")
        defaults = {}
    base = path.parent.resolve()
    parsed: list[tuple[str, dict]] = []
    for i, entry in enumerate(data["jobs"], 1):
        label = f"job {i}"
        if not isinstance(entry, dict):
            problems.append(f"{label}: not a mapping of keys (write `- fit: ...` or `- render: ...`)")
            continue
        if isinstance(entry.get("name"), str):
            label = f"job {i} ({entry['name']})"
        kinds = [k for k in ("fit", "render") if k in entry]
        if len(kinds) != 1:
            problems.append(f"{label}: needs exactly one of the keys fit or render")
            continue
        kind = kinds[0]
        merged = {**(defaults.get(kind) or {}), **entry}
        parsed.append((label, {"__kind__": kind, **merged}))
    jobs: list[Job] = []
    fits_by_out: dict[Path, str] = {}
    for label, entry in parsed:
        job, errs = _job(entry, base, label)
        problems += errs
        if job is not None:
            jobs.append(job)
            if job.kind == "fit":
                fits_by_out[job.subject] = job.name
    # renders of a fit job that is itself bad: its own problems are reported, not theirs again
    bad_fits = {str(e.get("name") or Path(str(e.get("out") or e.get("fit"))).name) for _, e in parsed
                if e["__kind__"] == "fit"} - {j.name for j in jobs if j.kind == "fit"}
    problems += _links([j for j in jobs if j.subject_ref not in bad_fits], fits_by_out,
                       {j.name for j in jobs if j.kind == "fit"})
    if problems:
        raise UserError(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}, nothing was run:\n  "
                        + "\n  ".join(problems), "fix these jobs and run the same command again")
    return JobFile(path=path, jobs=_in_order(jobs), retries=retries)


def _job(e: dict, base: Path, label: str) -> tuple[Job | None, list[str]]:
    e = dict(e)
    kind = e.pop("__kind__")
    allowed = FIT_KEYS if kind == "fit" else RENDER_KEYS
    errs = [f"{label}: unknown key {k!r} for a {kind} job{_suggest(k, allowed)}" for k in e if k not in allowed]
    cfg_args, cfg_inputs, cfg_errs = _config_args(e, base, label)
    errs += cfg_errs
    cpus, memory = e.get("cpus", DEFAULT_CPUS[kind]), e.get("memory_gb", DEFAULT_MEMORY_GB[kind])
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        errs.append(f"{label}: cpus must be a whole number >= 1, not {cpus!r}")
    if not isinstance(memory, (int, float)) or isinstance(memory, bool) or memory <= 0:
        errs.append(f"{label}: memory_gb must be a number > 0, not {memory!r}")
    if kind == "fit":
        job, more = _fit_job(e, base, label, cfg_args, cfg_inputs)
    else:
        job, more = _render_job(e, base, label, cfg_args, cfg_inputs)
    errs += more
    if job is None or errs:
        return None, errs
    job.cpus, job.memory_gb = cpus, float(memory)
    return job, errs


def _fit_job(e, base, label, cfg_args, cfg_inputs) -> tuple[Job | None, list[str]]:
    src = _path(e["fit"], base)
    if src is None:
        return None, [f"{label}: fit must be the path of a video or a subject folder"]
    errs = []
    out = _path(e["out"], base) if "out" in e else None
    if src.is_dir():
        if out is not None and out != src:
            errs.append(f"{label}: {e['fit']} is a subject folder, fitted in place: leave out `out` "
                        "(or make it the same folder)")
        out = src
    elif not src.is_file():
        errs.append(f"{label}: the video {e['fit']} does not exist ({src})")
    elif out is None:
        errs.append(f"{label}: `out` (the subject folder to make) is missing")
    # the motion model too, so that the subject's renders, which run at once, do not each wait for it
    args = ["fit", str(src), "--with-motion"] + (["--out", str(out)] if out is not None and out != src else [])
    minutes = e.get("minutes")
    if minutes is not None:
        if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or minutes <= 0:
            errs.append(f"{label}: minutes must be a number > 0, not {minutes!r}")
        else:
            args += ["--minutes", str(minutes)]
    if out is None or errs:
        return None, errs
    name, name_err = _name(e, out.name, label)
    if name_err:
        return None, [name_err]
    return Job(name=name, kind="fit", out=out, args=args + cfg_args, inputs=([src] if src.is_file() else [])
               + cfg_inputs, subject=out), []


def _render_job(e, base, label, cfg_args, cfg_inputs) -> tuple[Job | None, list[str]]:
    errs = []
    if "out" not in e:
        errs.append(f"{label}: `out` (the .mp4 to write) is missing")
    out = _path(e.get("out"), base)
    if out is not None and out.suffix.lower() != ".mp4":
        errs.append(f"{label}: out must be an .mp4 file, not {e['out']}")
    speech = [k for k in ("audio", "text", "motion") if k in e]
    if not speech or ("text" in e and len(speech) > 1):
        errs.append(f"{label}: give the speech as one of audio, text or motion (motion may come with audio)")
    subject = e["render"]
    if not isinstance(subject, str) or not subject:
        errs.append(f"{label}: render must name a fit job of this file or a fitted subject folder")
        subject = ""
    args, inputs = ["render", "SUBJECT", "--out", str(out)], list(cfg_inputs)
    for key, (flag, typ) in RENDER_OPTIONS.items():
        if key not in e:
            continue
        v = e[key]
        if typ == "path":
            p = _path(v, base)
            if p is None or not p.exists():
                errs.append(f"{label}: the {key} file {v} does not exist" + (f" ({p})" if p else ""))
                continue
            args += [flag, str(p)]
            inputs += [p] if p.is_file() else []
        elif typ == "flag":
            if not isinstance(v, bool):
                errs.append(f"{label}: {key} must be true or false, not {v!r}")
            elif v:
                args.append(flag)
        elif typ in ("float", "int"):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (typ == "float" or isinstance(v, int))
            if not ok:
                errs.append(f"{label}: {key} must be a{' whole' if typ == 'int' else ''} number, not {v!r}")
            else:
                args += [flag, str(v)]
        else:
            if not isinstance(v, str) or not v:
                errs.append(f"{label}: {key} must be a text, not {v!r}")
            else:
                args += [flag, v]
    if out is None or errs:
        return None, errs
    name, name_err = _name(e, out.stem, label)
    if name_err:
        return None, [name_err]
    job = Job(name=name, kind="render", out=out, args=args + cfg_args, inputs=inputs,
              subject=_path(subject, base), subject_ref=subject, wants_audio="audio" in e or "text" in e)
    return job, []


def _links(jobs: list[Job], fits_by_out: dict[Path, str], fit_names: set[str]) -> list[str]:
    """Resolve each render's subject (a fit job's name or output, or a fitted folder); clashes."""
    errs, names, outs = [], {}, {}
    for job in jobs:
        if job.name in names:
            errs.append(f"job {job.name}: the name is used twice (give each job its own `name`)")
        names[job.name] = job
        if job.out in outs:
            errs.append(f"jobs {outs[job.out]} and {job.name} both write {job.out}")
        outs[job.out] = job.name
    for job in jobs:
        if job.kind != "render":
            continue
        if job.subject_ref in fit_names:
            fit = names[job.subject_ref]
            job.needs, job.subject = [fit.name], fit.subject
        elif job.subject in fits_by_out:
            job.needs = [fits_by_out[job.subject]]
        elif not job.subject.is_dir():
            errs.append(f"job {job.name}: render {job.subject_ref!r} is neither a fit job of this file nor a "
                        "folder; give a fit job's name or a fitted subject folder")
            continue
        elif not (job.subject / "fit" / "avatar.pt").is_file():
            errs.append(f"job {job.name}: {job.subject} has no fitted avatar and no fit job of this file makes "
                        f"it (add a fit job for it, or run `avatar fit {job.subject}` first)")
            continue
        job.args[1] = str(job.subject)
    return errs


def _config_args(e: dict, base: Path, label: str) -> tuple[list[str], list[Path], list[str]]:
    """``--config``/``--set`` arguments of a job, checked by loading the config they make."""
    from avatar.settings import load_config

    preset, sets = e.get("config", "default"), e.get("set", [])
    if isinstance(sets, dict):
        sets = [f"{k}={v}" for k, v in sets.items()]
    if not isinstance(preset, str) or not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        return [], [], [f"{label}: config must be a preset name or file and set a list of KEY=VALUE"]
    inputs = []
    if preset.endswith((".yaml", ".yml")):
        p = base / preset
        preset = str(p.resolve())
        inputs.append(Path(preset))
    try:
        load_config(preset, sets)
    except UserError as err:
        return [], [], [f"{label}: {err.problem}"]
    args = ["--config", preset]
    for s in sets:
        args += ["--set", s]
    return args, inputs, []


def _path(value, base: Path) -> Path | None:
    if not isinstance(value, str) or not value:
        return None
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _name(e: dict, default: str, label: str) -> tuple[str, str | None]:
    name = e.get("name", default)
    if not isinstance(name, str) or not NAME.match(name):
        return "", (f"{label}: name {name!r} must be letters, digits, '.', '_' or '-' (it names the job's log)")
    return name, None


def _suggest(key, allowed) -> str:
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _in_order(jobs: list[Job]) -> list[Job]:
    """Fit jobs before the renders that need them; otherwise the file's order."""
    return [j for j in jobs if not j.needs] + [j for j in jobs if j.needs]
