"""``avatar bench stream SUBJECT_DIR``: the viewer's streaming engine, timed (issue #13's targets).

Streams speech (other speakers' speech from ../shared/data/audio, or the given
file) through the fitted subject as fast as the engine takes it, in the
viewer's chunks, and times every stage a live frame goes through: audio
features, motion, placement (and deformation), rasterisation, compositing and
JPEG encoding. Prints ``fps`` (frames out per second, the whole run),
``first_frame_ms`` (first chunk in to first JPEG out, audio arriving as fast as
the engine takes it) and ``first_frame_live_ms`` (the same with the audio
arriving in real time, so the motion model's look-ahead is waited for), with
``gaussians``, ``width``, ``height``, ``threads`` and ``peak_rss_mb``.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

from avatar.view.config import ViewConfig


def bench_stream(subject_root: Path, audio: Path | None, motion_cfg, cfg: ViewConfig, *,
                 seconds: float = 30.0) -> dict:
    """The benchmark's numbers as one JSON-able dict."""
    from avatar.motion.bench import default_audio
    from avatar.motion.generate import Controls
    from avatar.motion.model import load_or_train_motion
    from avatar.talk.frames import AvatarFrames
    from avatar.view.engine import RenderPool, StreamEngine
    from preprocess.decode import decode_audio
    from preprocess.subject import Subject

    subject = Subject(subject_root)
    frames = AvatarFrames(subject)
    model = load_or_train_motion(subject, motion_cfg)  # a one-off per subject: not what is timed
    with tempfile.TemporaryDirectory(prefix="avatar-bench-stream-") as tmp:
        speech = decode_audio(audio if audio is not None else default_audio(Path(tmp), seconds), 16000)
    pool = RenderPool(frames, cfg.render_workers, cfg.jpeg_quality)
    try:
        warm = StreamEngine(pool, model, sample_rate=16000)  # the first stream loads librosa's kernels
        for f in warm.push(np.zeros(16000, np.float32)) + warm.finish():
            f.jpeg.result()
        chunk = int(16000 * cfg.chunk_ms / 1000)
        live = _first_frame(StreamEngine(pool, model, Controls(pose="audio"), 16000), speech, chunk, realtime=True)
        engine = StreamEngine(pool, model, Controls(pose="audio"), 16000)
        t0 = time.perf_counter()
        first, n, jpeg_bytes = _drain_all(engine, speech, chunk, 2 * cfg.render_workers, t0)
        took = time.perf_counter() - t0
        threads = pool.threads
    finally:
        pool.close()
    return {"fps": round(n / took, 1), "first_frame_ms": round(1000 * first, 1),
            "first_frame_live_ms": round(1000 * live, 1), "frames": n, "seconds": round(took, 2),
            "speech_s": round(len(speech) / 16000, 2), "realtime_factor": round(len(speech) / 16000 / took, 2),
            "gaussians": len(frames.model), "width": frames.size, "height": frames.size, "threads": threads,
            "render_workers": cfg.render_workers, "chunk_ms": cfg.chunk_ms,
            "lookahead_ms": round(1000 * engine.latency_frames / engine.fps, 1),
            "jpeg_kb": round(jpeg_bytes / max(n, 1) / 1024, 1), "jpeg_quality": cfg.jpeg_quality,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _drain_all(engine, speech: np.ndarray, chunk: int, in_flight: int, t0: float) -> tuple[float, int, int]:
    """Push all of ``speech`` in chunks, keeping at most ``in_flight`` frames rendering; (seconds to the
    first JPEG, frames out, bytes out)."""
    pending: deque = deque()
    first, n, size = None, 0, 0

    def take_one():
        nonlocal first, n, size
        data = pending.popleft().jpeg.result()
        if first is None:
            first = time.perf_counter() - t0
        n, size = n + 1, size + len(data)

    for lo in range(0, len(speech), chunk):
        pending.extend(engine.push(speech[lo:lo + chunk]))
        while len(pending) > in_flight:
            take_one()
    pending.extend(engine.finish())
    while pending:
        take_one()
    return first, n, size


def _first_frame(engine, speech: np.ndarray, chunk: int, realtime: bool) -> float:
    """Seconds from the first chunk in to the first JPEG out, chunks arriving at the audio's pace."""
    t0 = time.perf_counter()
    for k, lo in enumerate(range(0, len(speech), chunk)):
        if realtime:  # chunk k is complete (k + 1) chunks after the first arrived
            time.sleep(max(0.0, t0 + k * chunk / 16000 - time.perf_counter()))
        out = engine.push(speech[lo:lo + chunk])
        if out:
            out[0].jpeg.result()
            took = time.perf_counter() - t0
            for f in out:
                f.jpeg.result()
            return took
    raise ValueError("the speech is too short for a frame")
