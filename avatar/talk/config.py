"""Settings of ``avatar render`` (light: no heavy imports, like every stage's config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from avatar.core.config import Range


@dataclass
class RenderConfig:
    """How a talk is rendered and encoded."""

    x264_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    """x264 speed preset of the mp4 (quality is set by crf; slower presets only make the file smaller)."""
    x264_threads: Annotated[int, Range(0, 64)] = 0
    """Encoder threads (0: x264's own choice; on 2 cores it beat 1 thread by 7% at 512x512 and 5% at 1280x720)."""
    crf: Annotated[int, Range(0, 51)] = 18
    """x264 constant-rate factor: 18 is visually lossless, 23 x264's default, higher is smaller and blurrier."""
    render_workers: Annotated[int, Range(1, 64)] = 2
    """Frames rendered at once, one thread each (on 2 cores, 1.6x one frame on two threads; 1: one frame at a
    time on all threads)."""
    orbit_deg: Annotated[float, Range(0.0, 90.0, lo_open=True)] = 10.0
    """Yaw amplitude of --camera orbit, degrees (the fit saw the head from the front only: its sides break up past about 15)."""
    orbit_period_s: Annotated[float, Range(0.0, 600.0, lo_open=True)] = 8.0
    """Seconds of one orbit, there and back."""
    tts_rate_wpm: Annotated[int, Range(40, 400)] = 160
    """Speaking rate of --text, words per minute."""
    paste_feather: Annotated[float, Range(0.0, 0.5)] = 0.08
    """Paste-back: width of the blend at the crop's border, as a fraction of the crop's side."""
    paste_person_margin: Annotated[float, Range(0.0, 0.2)] = 0.02
    """Paste-back: how far past the source frame's person mask the rendered background replaces the live one,
    as a fraction of the crop's side (covers the real head where the avatar's pose or jaw differs)."""
