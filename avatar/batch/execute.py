"""Where batch jobs run: a process pool on this machine, or Ray (on this machine, or a cluster).

Every job is one ``avatar`` command in a process of its own (:func:`run_command`),
wherever it runs: its memory is returned when it ends, a crash takes down only
that job, and its threads are set from the cores it was given. The process is
tied to the one that started it (``PR_SET_PDEATHSIG``), so a Ray worker that
dies, or a node that is killed, takes its job with it instead of leaving an
orphan that writes its output later. Outputs are written atomically by the
commands themselves, so a killed job leaves nothing that looks finished.

Both executors take the same jobs and give the same results; they differ in
where the work goes and how it is packed:

- :class:`ProcessPool`: up to ``workers`` jobs at once on this machine, a
  render with ``cores // workers`` threads, a fit with at least its ``cpus``
  (:func:`local_threads`), as many as fit in the cores. What runs when Ray is
  not installed.
- :class:`RayExecutor`: ``ray.init()`` on this machine (the same packing as the
  pool), or ``ray.init(address)`` of a running cluster, where each job asks for
  its ``cpus`` and ``memory_gb`` and Ray places it on a node that has them.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path

from avatar.batch.jobs import Job
from avatar.core.errors import UserError


@dataclass
class Attempt:
    """One run of a job."""

    job: Job
    number: int
    """1 for the first attempt."""
    log: Path
    """The job's log, appended to by every attempt."""


def run_command(args: list[str], log: str, threads: int, header: str, on_start=None) -> dict:
    """Run ``avatar ARGS`` in a new process with ``threads`` threads, its output appended to ``log``.

    Returns ``{"rc", "seconds", "host", "pid", "tail"}`` (``tail``: the last lines of
    the log). The unit of work of every executor; on Ray it runs inside a worker.
    ``on_start(process)`` is told the :class:`subprocess.Popen` (the process pool
    keeps it, to stop it on Ctrl-C).
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), AVATAR_QUIET="0")
    env.pop("AVATAR_PROGRESS", None)  # no progress bars in a log file
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"=== {header} on {socket.gethostname()} (pid {os.getpid()}), {threads} thread"
                f"{'s' if threads > 1 else ''}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                f"$ avatar {shlex.join(args)}\n")
        f.flush()
        proc = subprocess.Popen([sys.executable, "-m", "avatar.cli.main", *args], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent)
        if on_start is not None:
            on_start(proc)
        proc.wait()
        seconds = time.time() - t0
        f.write(f"=== exit status {proc.returncode} after {seconds:.1f} s\n")
    return {"rc": proc.returncode, "seconds": round(seconds, 2), "host": socket.gethostname(),
            "tail": _tail(Path(log))}


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL this process when its parent dies (Linux; elsewhere a no-op)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    body = [t for t in text if not t.startswith(("=== ", "$ "))]
    return "\n".join(body[-lines:])


def local_threads(job: Job, cores: int, workers: int) -> int:
    """Cores a job gets on this machine: ``cores // workers`` for a render, at least its ``cpus`` for a fit
    (a fit alone uses the whole machine better than a render does), never more than ``cores``."""
    share = max(1, cores // workers)
    return min(cores, max(share, job.cpus)) if job.kind == "fit" else share


class ProcessPool:
    """Jobs on this machine, as many at once as fit in its cores (:func:`local_threads` each)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.cores = os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max(workers, self.cores), thread_name_prefix="avatar-batch")
        self._queue: list[Attempt] = []
        self._running: dict[Future, tuple[Attempt, int]] = {}
        self._processes: list[subprocess.Popen] = []

    def describe(self) -> str:
        return f"this machine, {self.workers} job{'s' if self.workers > 1 else ''} at once (process pool)"

    def check(self, job: Job) -> str | None:
        return None

    def submit(self, attempt: Attempt) -> None:
        self._queue.append(attempt)
        self._launch()

    def _launch(self) -> None:
        """Start queued attempts, in order, while their cores are free (a small one may pass a big one)."""
        for attempt in list(self._queue):
            busy = sum(t for _, t in self._running.values())
            threads = local_threads(attempt.job, self.cores, self.workers)
            if len(self._running) >= self.workers or (self._running and busy + threads > self.cores):
                continue
            self._queue.remove(attempt)
            header = f"{attempt.job.name}: attempt {attempt.number}"
            fut = self._pool.submit(run_command, attempt.job.command(threads), str(attempt.log), threads, header,
                                    self._processes.append)
            self._running[fut] = (attempt, threads)

    def wait(self, timeout: float) -> list[tuple[Attempt, dict | BaseException]]:
        if not self._running:
            time.sleep(min(timeout, 0.2))
            return []
        done, _ = wait_futures(list(self._running), timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            attempt, _ = self._running.pop(fut)
            try:
                out.append((attempt, fut.result()))
            except Exception as e:  # noqa: BLE001 - reported as the attempt's error
                out.append((attempt, e))
        self._launch()
        return out

    def close(self, cancel: bool = False) -> None:
        """Wait for the running jobs; with ``cancel``, stop them (SIGINT, then SIGKILL after 10 s) first."""
        self._queue.clear()
        if cancel:
            running = [p for p in self._processes if p.poll() is None]
            for p in running:
                p.send_signal(signal.SIGINT)  # the command's own Ctrl-C: it removes its temporary files
            deadline = time.time() + 10
            for p in running:
                try:
                    p.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    p.kill()
        self._pool.shutdown(wait=True, cancel_futures=cancel)


class RayExecutor:
    """Jobs as Ray tasks: on a Ray started here (``address=None``), or on the cluster at ``address``."""

    def __init__(self, address: str | None, workers: int):
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs Ray, which is not installed",
                            "pip install 'talking-avatar[batch]' (or `pip install ray`), or leave out --ray "
                            "to run on this machine with a process pool") from None
        self._ray = ray
        self.address = address
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address not in (None, "auto"):
            _check_reachable(address)
        kwargs = dict(log_to_driver=False, configure_logging=True, logging_level="ERROR", include_dashboard=False)
        try:
            if address is None:
                cores = os.cpu_count() or 1
                # a small object store: results are a few hundred bytes
                # bound to this machine only, like every server of the project
                ray.init(num_cpus=cores, object_store_memory=100 * 2**20, _node_ip_address="127.0.0.1", **kwargs)
            else:
                ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"could not connect to a Ray cluster at {address} ({str(e).splitlines()[0]})",
                            "start one with `ray start --head` (see docs/scaling.md), check the address "
                            "(--ray auto finds a cluster started on this machine), or leave out --ray") from None
        self.workers = workers
        self.cores = os.cpu_count() or 1
        self._task = ray.remote(run_command)
        self._running: dict = {}
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self._nodes = len(nodes)
        self._largest = max((n["Resources"].get("CPU", 0) for n in nodes), default=0)
        self._largest_memory = max((n["Resources"].get("memory", 0) for n in nodes), default=0) / 2**30

    def describe(self) -> str:
        if self.address is None:
            return f"Ray on this machine, {self.workers} job{'s' if self.workers > 1 else ''} at once"
        return f"Ray cluster at {self.address} ({self._nodes} node{'s' if self._nodes > 1 else ''})"

    def check(self, job: Job) -> str | None:
        """Why no node of the cluster can ever run ``job`` (None when one can)."""
        if self.address is None:
            return None
        if job.cpus > self._largest:
            return (f"it asks for {job.cpus} CPUs and the largest node has {self._largest:g} (set `cpus:` in the "
                    "job file, or add a larger node)")
        if job.memory_gb > self._largest_memory:
            return (f"it asks for {job.memory_gb:g} GiB and the largest node has {self._largest_memory:.1f} "
                    "(set `memory_gb:` in the job file, or add a larger node)")
        return None

    def submit(self, attempt: Attempt) -> None:
        job = attempt.job
        if self.address is None:  # on this machine: the same packing as the process pool
            threads = local_threads(job, self.cores, self.workers)
            options = {"num_cpus": threads}
        else:
            threads, options = job.cpus, {"num_cpus": job.cpus, "memory": int(job.memory_gb * 2**30)}
        header = f"{job.name}: attempt {attempt.number}"
        ref = self._task.options(max_retries=0, name=f"avatar-{job.kind}:{job.name}", **options).remote(
            job.command(threads), str(attempt.log), threads, header)
        self._running[ref] = attempt

    def wait(self, timeout: float) -> list[tuple[Attempt, dict | BaseException]]:
        if not self._running:
            time.sleep(min(timeout, 0.2))
            return []
        done, _ = self._ray.wait(list(self._running), num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            attempt = self._running.pop(ref)
            try:
                out.append((attempt, self._ray.get(ref)))
            except Exception as e:  # noqa: BLE001 - a worker or node that died: the attempt failed
                out.append((attempt, e))
        return out

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in list(self._running):
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or its node is gone
                    pass
        self._ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """UserError unless something listens at HOST:PORT (Ray itself retries a wrong address for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray {address}: not an address", "give the head's HOST:PORT (e.g. 10.0.0.5:6379), "
                        "auto, local or off")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"no Ray cluster answers at {address} ({e.strerror or e.__class__.__name__})",
                        "start its head with `ray start --head --port PORT` (docs/scaling.md), check the "
                        "address and that the port is open, or leave out --ray to run on this machine") from None


def make_executor(ray: str | None, workers: int):
    """``ray``: None (Ray on this machine when installed, else a process pool), "off" (the pool),
    "local" (Ray on this machine), "auto" or "HOST:PORT" (that cluster)."""
    if workers < 1:
        raise UserError(f"--workers {workers}: needs at least 1", "give --workers 1 or more")
    if ray == "off":
        return ProcessPool(workers)
    if ray is None:
        try:
            import ray as _  # noqa: F401
        except ImportError:
            return ProcessPool(workers)
        return RayExecutor(None, workers)
    return RayExecutor(None if ray == "local" else ray, workers)
