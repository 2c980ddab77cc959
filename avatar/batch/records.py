"""When is a job finished? Output checks, and the records that let a re-run skip finished jobs.

A job is finished when its record (``BATCH_DIR/records/NAME.json``, written
after the job's output passed its check) says it ran this very job (same
command, same input files, for a render the same fitted avatar) and the output
is still the file the record describes and still passes the check. A present
but unchecked output (a render interrupted mid-write never leaves one: every
output is written atomically) is not enough.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from avatar.batch.jobs import Job
from avatar.core.files import write_json

RECORD_FORMAT = 1


def output_file(job: Job) -> Path:
    """The file whose presence means the job is done: the fitted avatar, or the video."""
    return job.out / "fit" / "avatar.pt" if job.kind == "fit" else job.out


def fingerprint(path: Path) -> dict | None:
    """Size and modification time of ``path`` (None when it does not exist)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def job_key(job: Job) -> str:
    """Hash of what the job's output depends on: its command, its inputs' fingerprints, a render's avatar."""
    inputs = [[str(p), fingerprint(p)] for p in job.inputs]
    avatar = fingerprint(job.subject / "fit" / "avatar.pt") if job.kind == "render" else None
    text = json.dumps({"format": RECORD_FORMAT, "args": job.args, "inputs": inputs, "avatar": avatar},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def check_output(job: Job) -> str | None:
    """Why the job's output is not a finished result (None when it is one)."""
    return _check_fit(job.out) if job.kind == "fit" else _check_video(job.out, job.wants_audio)


def _check_fit(root: Path) -> str | None:
    from avatar.core.errors import UserError
    from avatar.model.store import load_avatar
    from preprocess.subject import Subject

    try:
        load_avatar(Subject(root))
    except UserError as e:
        return e.problem
    return None


def _check_video(path: Path, wants_audio: bool) -> str | None:
    from avatar.core.errors import UserError
    from avatar.core.media import probe_media

    if not path.is_file():
        return f"{path} was not written"
    try:
        info = probe_media(path)
    except UserError as e:
        return e.problem
    if info.video is None or info.video.packets == 0 or not info.video.first_frame_decodes:
        return f"{path} has no decodable video"
    if info.ended_early or info.read_error:
        return f"{path} is truncated ({info.read_error or 'ends early'})"
    if wants_audio and info.audio is None:
        return f"{path} has no sound track"
    return None


def record_path(batch_dir: Path, job: Job) -> Path:
    return batch_dir / "records" / f"{job.name}.json"


def is_finished(batch_dir: Path, job: Job) -> bool:
    """Whether a record says this job ran as it is now and its output is still there, unchanged and sound."""
    try:
        record = json.loads(record_path(batch_dir, job).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("key") != job_key(job):
        return False
    if record.get("output") != fingerprint(output_file(job)):
        return False
    return check_output(job) is None


def write_record(batch_dir: Path, job: Job, result: dict) -> None:
    """Record that ``job`` finished with an output that passed :func:`check_output`."""
    path = record_path(batch_dir, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"format": RECORD_FORMAT, "key": job_key(job), "output": fingerprint(output_file(job)),
                      "job": job.name, "out": str(job.out), "seconds": result.get("seconds"),
                      "host": result.get("host")})
