"""``avatar bench render SUBJECT_DIR``: the whole render of a minute of speech, timed (issue #12's targets).

Times what a user waits for once the subject's motion model exists (it is
trained, untimed, first if it is missing): features, motion, rendering,
compositing, encoding and muxing, for 60 s of other speakers' speech from
../shared/data/audio (or the given file). Prints ``seconds``,
``realtime_factor`` (seconds of speech per second of work: above 1 is faster
than real time), ``frames`` and ``peak_rss_mb`` (this process; the x264 encoder runs beside it as an
ffmpeg process of its own).
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from avatar.talk.config import RenderConfig


def bench_render(subject_root: Path, audio: Path | None, motion_cfg, cfg: RenderConfig, *,
                 seconds: float = 60.0, paste_back: bool = False, camera: str = "fixed",
                 source_video: Path | None = None) -> dict:
    """The benchmark's numbers as one JSON-able dict."""
    import soundfile as sf

    from avatar.motion.bench import default_audio
    from avatar.motion.model import load_or_train_motion
    from avatar.talk.run import TalkRequest, render_talk
    from preprocess.subject import Subject

    load_or_train_motion(Subject(subject_root), motion_cfg)  # a one-off per subject: not what is timed
    with tempfile.TemporaryDirectory(prefix="avatar-bench-render-") as tmp:
        speech = audio if audio is not None else default_audio(Path(tmp), seconds)
        out = Path(tmp) / "talk.mp4"
        t0 = time.perf_counter()
        summary = render_talk(TalkRequest(subject=Path(subject_root), out=out, audio=Path(speech), camera=camera,
                                          paste_back=paste_back, source_video=source_video), motion_cfg, cfg)
        took = time.perf_counter() - t0
        speech_s = sf.info(str(speech)).duration
        size_mb = out.stat().st_size / 2**20
    return {"seconds": round(took, 2), "realtime_factor": round(speech_s / took, 3), "frames": summary["frames"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "speech_s": round(speech_s, 2), "motion_s": summary["motion_s"], "render_s": summary["render_s"],
            "render_fps": round(summary["frames"] / max(summary["render_s"], 1e-9), 1),
            "width": summary["width"], "height": summary["height"], "gaussians": summary["gaussians"],
            "paste_back": paste_back, "camera": camera, "x264_preset": cfg.x264_preset, "mp4_mb": round(size_mb, 2)}
