"""``avatar bench motion``: speed of audio-to-motion, whole clip and streaming (issue #11's targets).

Whole clip: 60 s of speech (by default the clips of ``../shared/data/audio``,
other speakers, joined and cut to 60 s) -> motion, split into decoding +
features, the predictor and the rest; target 10 s in all, the predictor under 1 s.
Streaming: the same audio pushed in 40 ms chunks; the compute time per chunk
(mean, 95th percentile, max) plus the stated look-ahead is the latency from a
chunk in to its frames out; target at most 200 ms + look-ahead. ``stream_first_frame_ms``: audio
pushed until the first frame came out plus that chunk's compute; ``stream_warmup_s``: the stream's
construction (it loads librosa's lazy modules and runs the predictor once, before any audio).
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from avatar.core.data import shared_data
from avatar.core.errors import UserError

SECONDS = 60.0
CHUNK_S = 0.04


def default_audio(out_dir: Path, seconds: float = SECONDS) -> Path:
    """``seconds`` (60) of other speakers' speech from ../shared/data/audio, as one 16 kHz wav in ``out_dir``."""
    import soundfile as sf

    from preprocess.decode import decode_audio

    folder = shared_data("audio")
    clips = sorted(folder.glob("*.wav"))
    if not clips:
        raise UserError(f"no speech clips in {folder}", "give an audio file: avatar bench motion SUBJECT AUDIO")
    parts, total = [], 0
    while total < seconds * 16000:
        for c in clips:
            parts.append(decode_audio(c, 16000))
            total += len(parts[-1])
    path = out_dir / f"speech_{seconds:g}s.wav"
    sf.write(path, np.concatenate(parts)[:int(seconds * 16000)], 16000)
    return path


def bench_motion(subject_root: Path, audio: Path | None, cfg) -> dict:
    """The numbers of the benchmark as one JSON-able dict."""
    import soundfile as sf
    import torch

    from avatar.motion.features import normalised_features
    from avatar.motion.generate import Controls, audio_features, motion_from_features
    from avatar.motion.model import load_or_train_motion
    from avatar.motion.predictor import predict_clip
    from avatar.motion.stream import MotionStream
    from preprocess.subject import Subject

    subject = Subject(subject_root)
    t0 = time.perf_counter()
    model = load_or_train_motion(subject, cfg)
    train_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        audio = audio or default_audio(Path(tmp))
        wav, sr = sf.read(audio, dtype="float32")
        t0 = time.perf_counter()
        feats = audio_features(audio, subject)
        t1 = time.perf_counter()
        motion = motion_from_features(model, subject, feats, Controls())
        t2 = time.perf_counter()
    x = normalised_features(feats)
    p0 = time.perf_counter()
    predict_clip(model.predictor, x)
    predictor_s = time.perf_counter() - p0
    w0 = time.perf_counter()
    stream = MotionStream(model, subject, Controls(), sample_rate=sr)
    warmup_s = time.perf_counter() - w0
    chunk = int(round(CHUNK_S * sr))
    times, first_ms = [], None
    for i in range(0, len(wav), chunk):
        c0 = time.perf_counter()
        out = stream.push(wav[i:i + chunk])
        times.append(time.perf_counter() - c0)
        if first_ms is None and len(out):  # audio heard until then + the compute of that chunk
            first_ms = 1000.0 * (min(i + chunk, len(wav)) / sr + times[-1])
    stream.finish()
    lookahead_ms = 1000.0 * stream.latency_frames / subject.fps
    ms = 1000.0 * np.array(times)
    return {"audio_s": round(len(wav) / sr, 2), "frames": len(motion), "motion_model_s": round(train_s, 1),
            "seconds": round(t2 - t0, 2), "features_s": round(t1 - t0, 2), "predictor_s": round(predictor_s, 3),
            "rest_s": round(t2 - t1 - predictor_s, 2), "realtime_factor": round((len(wav) / sr) / (t2 - t0), 1),
            "stream_chunk_ms": 1000 * CHUNK_S, "stream_compute_ms_mean": round(float(ms.mean()), 1),
            "stream_compute_ms_p95": round(float(np.percentile(ms, 95)), 1),
            "stream_compute_ms_max": round(float(ms.max()), 1), "stream_lookahead_ms": lookahead_ms,
            "stream_latency_ms_p95": round(float(np.percentile(ms, 95)) + lookahead_ms, 1),
            "stream_first_frame_ms": None if first_ms is None else round(first_ms, 1),
            "stream_warmup_s": round(warmup_s, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "threads": torch.get_num_threads()}
