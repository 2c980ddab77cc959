"""Settings of ``avatar view`` and its streaming engine (light: no heavy imports, like every stage's config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from avatar.core.config import Range


@dataclass
class ViewConfig:
    """How the live viewer serves, streams and renders."""

    host: str = "127.0.0.1"
    """Address the server binds to (127.0.0.1: this machine only; anything else is reachable from the network)."""
    port: Annotated[int, Range(0, 65535)] = 7860
    """TCP port of the page (0: any free port)."""
    max_streams: Annotated[int, Range(1, 64)] = 2
    """Tabs that may stream at once; further ones are told the viewer is busy (each stream costs about one core)."""
    render_workers: Annotated[int, Range(1, 64)] = 2
    """Frames rendered at once, one thread each (on 2 cores, two single-threaded frames beat one two-threaded
    frame by 1.6x: the rasteriser's tiles do not split well across threads)."""
    jpeg_quality: Annotated[int, Range(10, 100)] = 85
    """Quality of the JPEG frames sent to the page."""
    chunk_ms: Annotated[int, Range(10, 500)] = 160
    """Audio fed to the motion model at a time, milliseconds: its cost per frame is 4 ms at 160, 8.7 at 80, 13.7
    at 40 (longer chunks add their length to the latency)."""
    lead_ms: Annotated[int, Range(0, 2000)] = 500
    """How far the stream's sound runs ahead of real time, milliseconds: room for the motion model's look-ahead
    (240 ms), a chunk and the rendering, so each frame is ready before its sound plays."""
    max_upload_mb: Annotated[float, Range(0.0, 1024.0, lo_open=True)] = 25.0
    """Largest audio file the page may upload, MiB (checked by the server)."""
    max_upload_s: Annotated[float, Range(0.0, 3600.0, lo_open=True)] = 600.0
    """Longest audio the page may upload or have spoken, seconds."""
    max_text_chars: Annotated[int, Range(1, 100000)] = 2000
    """Longest text the page may have spoken."""
    uploads_kept: Annotated[int, Range(1, 1000)] = 8
    """Uploaded clips kept in memory (the oldest is forgotten first)."""
