"""``avatar batch``: job file checks, a real batch on this machine (a fit, renders, a corrupt input, re-runs),
the process pool against Ray, and a real two-node Ray cluster on 127.0.0.1 that loses its worker mid-batch."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from avatar.core.media import probe_media
from tests.conftest import data_file, run_avatar, video_frames

HAS_RAY = importlib.util.find_spec("ray") is not None
NO_RAY = "Ray is not installed (pip install 'talking-avatar[batch]'; `make test` installs it)"
HAS_ESPEAK = importlib.util.find_spec("espeakng_loader") is not None
FAST = ["fit.iterations=150", "motion.predictor.steps=100"]


SPEECH_S = 3.0
"""Length of the test renders' speech: short, since the batch is what is tested, not the render."""


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[Path]:
    """Three different 3 s stretches of real speech (other speakers, 44.1 and 16 kHz, stereo and mono)."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("speech")
    out = []
    for name, start in (("hallo_1.wav", 1.0), ("sadtalker_radio31.wav", 0.5), ("dreamtalk_german1.wav", 2.0)):
        audio, rate = sf.read(data_file("audio", name))
        path = folder / f"{Path(name).stem}_3s.wav"
        sf.write(path, audio[int(start * rate):int((start + SPEECH_S) * rate)], rate)
        out.append(path)
    return out


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _report(batch_dir: Path) -> dict:
    report = json.loads((batch_dir / "report.json").read_text())
    report["by_name"] = {j["name"]: j for j in report["jobs"]}
    return report


def _check_video(path: Path, seconds: float) -> None:
    """A finished mp4 with picture and sound, as long as its speech."""
    info = probe_media(path)
    assert info.video is not None and info.video.first_frame_decodes and not info.ended_early, path
    assert info.audio is not None, f"{path} has no sound"
    assert abs(info.video.packets / info.video.fps - seconds) < 0.2, (path, info.video.packets, seconds)


# ------------------------------------------------------------------ the job file, checked before anything runs

def test_bad_job_file_names_every_bad_job_and_runs_nothing(tmp_path):
    (tmp_path / "notfitted").mkdir()
    jobs = _write(tmp_path / "jobs.yaml", f"""
retries: 1
jobs:
  - name: anna
    fit: {tmp_path / 'missing.mp4'}
    out: subjects/anna
  - render: anna
    audoi: speech.wav
    out: a.mp4
  - render: notfitted
    text: hello
    out: b.mp4
  - render: anna
    text: hello
    out: c.mov
  - render: anna
    text: hello
    out: d.mp4
    set: [render.no_such_setting=1]
  - render: anna
    text: hello
    out: d.mp4
  - fit: {tmp_path / 'missing.mp4'}
    render: anna
""")
    r = run_avatar("batch", jobs, "--ray", "off")
    assert r.returncode == 2, r.stderr
    err = r.stderr
    assert "nothing was run" in err
    assert "job 1 (anna): the video" in err and "missing.mp4 does not exist" in err
    assert "unknown key 'audoi' for a render job (did you mean 'audio'?)" in err
    assert "notfitted has no fitted avatar and no fit job of this file makes it" in err
    assert "out must be an .mp4 file, not c.mov" in err
    assert "unknown setting 'render.no_such_setting'" in err
    assert "needs exactly one of the keys fit or render" in err
    assert not (tmp_path / "jobs_batch").exists() and not (tmp_path / "subjects").exists()


def test_outputs_written_twice_and_unknown_top_keys_are_rejected(tmp_path, may_fit):
    jobs = _write(tmp_path / "jobs.yaml", f"""
retires: 3
jobs:
  - {{render: {may_fit}, text: one, out: same.mp4, name: one}}
  - {{render: {may_fit}, text: two, out: same.mp4, name: two}}
""")
    r = run_avatar("batch", jobs, "--ray", "off")
    assert r.returncode == 2
    assert "unknown top-level key 'retires' (did you mean 'retries'?)" in r.stderr
    assert "jobs one and two both write" in r.stderr


@pytest.mark.skipif(not HAS_RAY, reason=NO_RAY)
def test_a_wrong_cluster_address_is_a_clear_error_not_a_hang(tmp_path, may_fit):
    jobs = _write(tmp_path / "jobs.yaml", f"jobs:\n  - {{render: {may_fit}, text: hi, out: a.mp4}}\n")
    r = run_avatar("batch", jobs, "--ray", f"127.0.0.1:{_free_port()}")
    assert r.returncode == 2
    assert "no Ray cluster answers at 127.0.0.1:" in r.stderr and "ray start --head" in r.stderr
    r = run_avatar("batch", jobs, "--ray", "nonsense")
    assert r.returncode == 2 and "--ray nonsense: not an address" in r.stderr
    assert not (tmp_path / "a.mp4").exists()


# ------------------------------------------------------------------ a real batch on this machine

@pytest.fixture(scope="module")
def local_batch(tmp_path_factory, may_subject, speech):
    """One batch run with its default executor (Ray on this machine when installed): a short fast fit of
    may_5s (the preprocessed folder, copied, fitted in place) and three renders of it, one with a corrupt
    sound file."""
    root = tmp_path_factory.mktemp("batch")
    shutil.copytree(may_subject, root / "may", symlinks=True)
    (root / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(20_000))
    text = ("  - render: may\n    text: Hello from a batch of renders.\n    out: renders/text.mp4\n"
            if HAS_ESPEAK else "")
    jobs = _write(root / "jobs.yaml", f"""
retries: 1
defaults:
  render: {{config: fast, set: {FAST[1:]}}}  # the fit job's motion settings: its motion model is reused
jobs:
  - name: may
    fit: may
    config: fast
    set: {FAST}
  - render: may
    audio: {speech[0]}
    out: renders/hallo.mp4
{text}  - render: may
    audio: corrupt.wav
    out: renders/corrupt.mp4
""")
    r = run_avatar("batch", jobs, "--workers", "2", "--json", console_script=True, timeout=900)
    return root, jobs, r


def test_batch_fits_then_renders_and_a_corrupt_input_fails_alone(local_batch):
    root, _, r = local_batch
    assert r.returncode == 1, r.stderr[-3000:]  # one job failed
    report = _report(root / "jobs_batch")
    assert json.loads(r.stdout)["summary"] == report["summary"]
    jobs = report["by_name"]
    assert report["executor"].startswith("Ray on this machine" if HAS_RAY else "this machine")
    assert jobs["may"]["status"] == "done" and (root / "may" / "fit" / "avatar.pt").is_file()
    assert jobs["hallo"]["status"] == "done"
    _check_video(root / "renders" / "hallo.mp4", SPEECH_S)
    if HAS_ESPEAK:
        assert jobs["text"]["status"] == "done"
        info = probe_media(root / "renders" / "text.mp4")
        assert info.audio is not None and info.video.packets > 25
    bad = jobs["corrupt"]
    assert bad["status"] == "failed" and bad["attempts"] == 1, bad  # bad input is not retried
    assert "corrupt.wav is not a readable media file" in bad["error"]
    assert not (root / "renders" / "corrupt.mp4").exists()
    assert "failed corrupt" in r.stderr and "1 failed" in r.stderr
    log = (root / "jobs_batch" / "logs" / "hallo.log").read_text()
    assert "$ avatar render" in log and "exit status 0" in log
    assert report["summary"] == {"jobs": 4 if HAS_ESPEAK else 3, "done": 3 if HAS_ESPEAK else 2,
                                 "skipped": 0, "failed": 1, "blocked": 0}


def test_a_rerun_skips_finished_jobs_and_redoes_a_damaged_output(local_batch):
    """Re-runs on the process pool (--ray off): finished jobs are skipped; a damaged video is made again, the
    same video the first run's executor (Ray, when installed) made."""
    root, jobs, first = local_batch
    assert first.returncode == 1
    video = root / "renders" / "hallo.mp4"
    stamp = video.stat().st_mtime_ns
    r = run_avatar("batch", jobs, "--ray", "off")
    assert r.returncode == 1
    report = _report(root / "jobs_batch")
    assert report["by_name"]["may"]["status"] == "skipped"
    assert report["by_name"]["hallo"]["status"] == "skipped"
    assert video.stat().st_mtime_ns == stamp
    assert "hallo: already finished" in r.stderr

    # a damaged output is checked, not just present: it is made again
    before = np.stack(video_frames(video)).astype(np.float32)
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    r = run_avatar("batch", jobs, "--ray", "off", "--workers", "1")
    report = _report(root / "jobs_batch")
    assert report["by_name"]["hallo"]["status"] == "done", r.stderr
    assert report["by_name"]["may"]["status"] == "skipped"
    assert "(process pool)" in report["executor"]
    _check_video(video, SPEECH_S)
    after = np.stack(video_frames(video)).astype(np.float32)
    assert before.shape == after.shape
    assert np.abs(before - after).mean() < 1.0  # the same frames, up to the encoder and thread-order rounding


# ------------------------------------------------------------------ a real two-node cluster

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_processes(sid: int) -> list[int]:
    import psutil
    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return out


def _job_processes(sid: int) -> list[int]:
    import psutil
    found = []
    for pid in _session_processes(sid):
        try:
            if "avatar.cli.main" in " ".join(psutil.Process(pid).cmdline()):
                found.append(pid)
        except psutil.Error:
            pass
    return found


@pytest.mark.skipif(not HAS_RAY, reason=NO_RAY)
def test_a_two_node_cluster_finishes_the_batch_when_its_worker_dies(tmp_path, may_motion, speech):
    ray = str(Path(sys.executable).with_name("ray"))
    port, temp = _free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must be short
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    node = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=100000000",
            "--disable-usage-stats", "--block"]
    started = []

    def start(*args, log):
        p = subprocess.Popen([ray, "start", *args, *node], env=env, start_new_session=True,
                             stdout=open(tmp_path / log, "w"), stderr=subprocess.STDOUT)
        started.append(p)
        return p

    def nodes() -> int:
        r = subprocess.run([ray, "status", "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, env=env)
        return r.stdout.count(" node_") if r.returncode == 0 else 0

    def wait_for(n: int) -> None:
        for _ in range(120):
            if nodes() >= n:
                return
            time.sleep(0.5)
        pytest.fail(f"the Ray cluster did not reach {n} nodes: {(tmp_path / 'head.log').read_text()[-2000:]}")

    lines = [f"  - {{render: {may_motion}, audio: {a}, out: out/r{i}.mp4}}" for i, a in enumerate(speech)]
    jobs = _write(tmp_path / "jobs.yaml", "retries: 2\njobs:\n" + "\n".join(lines) + "\n")
    try:
        head = start("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}", log="head.log")
        wait_for(1)
        worker = start(f"--address=127.0.0.1:{port}", log="worker.log")
        wait_for(2)
        batch = subprocess.Popen([sys.executable, "-m", "avatar.cli.main", "batch", str(jobs), "--ray",
                                  f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        killed = False
        deadline = time.time() + 600
        while batch.poll() is None and not killed and time.time() < deadline:
            if _job_processes(worker.pid):
                time.sleep(1.0)  # well into the job
                os.killpg(worker.pid, signal.SIGKILL)  # the worker machine dies: raylet, workers, the job
                killed = True
            time.sleep(0.2)
        out, err = batch.communicate(timeout=max(10, deadline - time.time()))
        assert killed, f"no job ever ran on the worker node: {err[-3000:]}"
        assert batch.returncode == 0, err[-3000:]
        report = _report(tmp_path / "jobs_batch")
        assert report["summary"]["done"] == len(speech), report["summary"]
        assert "2 nodes" in report["executor"]
        retried = [j for j in report["jobs"] if j["attempts"] > 1]
        assert retried, "no job was retried after its node died"
        assert any("Died" in e or "lost" in e.lower() for j in retried for e in j["errors"]), retried
        for i in range(len(speech)):
            _check_video(tmp_path / "out" / f"r{i}.mp4", SPEECH_S)
        assert not list((tmp_path / "out").glob("*tmp*")), "a killed job left a temporary file"
        deadline = time.time() + 20
        while _session_processes(worker.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert not _session_processes(worker.pid), "processes of the killed node are still running"
    finally:
        for p in started:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def test_ctrl_c_stops_the_batch_cleanly_and_a_rerun_finishes_it(tmp_path, may_motion, speech):
    jobs = _write(tmp_path / "jobs.yaml", f"""
jobs:
  - {{render: {may_motion}, audio: {speech[1]}, out: out/a.mp4}}
""")
    batch = subprocess.Popen([sys.executable, "-m", "avatar.cli.main", "batch", str(jobs), "--ray", "off"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import psutil

    def job_children() -> list[psutil.Process]:
        with __import__("contextlib").suppress(psutil.Error):
            return [c for c in psutil.Process(batch.pid).children(recursive=True)
                    if "avatar.cli.main" in " ".join(c.cmdline())]
        return []

    deadline = time.time() + 120
    while not (children := job_children()) and batch.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert children, "the job never started"
    time.sleep(1.0)
    batch.send_signal(signal.SIGINT)  # to the batch only, not its job: the job must go with it
    _, err = batch.communicate(timeout=60)
    assert batch.returncode == 130, err[-2000:]
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "the interrupted batch left its job running"
    assert "interrupted: finished jobs are kept" in err
    report = _report(tmp_path / "jobs_batch")
    assert report["interrupted"] and report["by_name"]["a"]["status"] == "interrupted"
    assert not (tmp_path / "out" / "a.mp4").exists()
    r = run_avatar("batch", jobs, "--ray", "off")
    assert r.returncode == 0, r.stderr
    _check_video(tmp_path / "out" / "a.mp4", SPEECH_S)
