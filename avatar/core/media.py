"""The bundled ffmpeg, and what a media file holds (read with PyAV).

Two halves, both the only place of their kind in the project:

* Running ffmpeg. Every stage runs the binary bundled with imageio-ffmpeg
  (never a system ffmpeg, whose build and wording vary): :func:`ffmpeg_command`
  builds the command line, :func:`run_ffmpeg` runs it, and :func:`ffmpeg_reason`
  picks a readable reason out of its stderr for an error message.
* Probing. :func:`probe_media` opens the file with PyAV (``av.open``) and reads
  the facts as numbers from libavformat's structures, rather than parsing the
  wording of ``ffmpeg -i``, which changes between versions: the first real
  video stream (cover art is skipped), its size, rate, display rotation, packet
  count and end time, whether reading stopped early (a truncated file), the
  container duration, and the first audio stream.

Timeline. Times are seconds from the container's start time, the origin the
ffmpeg CLI puts output timestamps on (it subtracts the input's start time), so a
probe and a later ``ffmpeg -i FILE -vf fps=...:start_time=0`` agree on what time
0 is even for files whose streams start late.

``av`` and ``imageio_ffmpeg`` are imported inside the functions: this module is
part of the base layer, which must stay cheap to import.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

from avatar.core.errors import UserError

FFMPEG_LOG_LEVEL = "error"
"""ffmpeg ``-loglevel`` of every run: real errors only, so stderr holds the reason when a run fails."""

_TIME_BASE = Fraction(1, 1_000_000)  # AV_TIME_BASE: container start time and duration are in microseconds


# --------------------------------------------------------------------------- ffmpeg

def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    import imageio_ffmpeg  # not at module import: the base layer stays cheap to import

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_command(args: Sequence[str | os.PathLike]) -> list[str]:
    """The full command line that runs the bundled ffmpeg with ``args``.

    Adds what every run wants: no banner, no reading of stdin (ffmpeg would
    otherwise eat keystrokes meant for the terminal), errors-only logging.
    None of these changes what ffmpeg writes.
    """
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", FFMPEG_LOG_LEVEL, *map(str, args)]


def run_ffmpeg(args: Sequence[str | os.PathLike], *, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the bundled ffmpeg to completion; stdout and stderr are captured as bytes.

    Does not raise on a non-zero exit: callers know which failures are the
    user's (and word the message); :func:`ffmpeg_reason` turns stderr into text.
    """
    return subprocess.run(ffmpeg_command(args), capture_output=True, timeout=timeout)


def ffmpeg_reason(stderr: str | bytes) -> str:
    """A readable reason from ffmpeg's stderr, for an error message.

    The first and the last error-looking line (the cause, e.g. "[png] Invalid
    PNG signature", and what it led to, e.g. "Could not write header"), else the
    last line; the ``@ 0x...`` addresses ffmpeg prints are dropped.
    """
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    lines = [re.sub(r" @ 0x[0-9a-f]+", "", ln.strip()) for ln in stderr.replace("\r", "\n").splitlines()]
    lines = [ln for ln in lines if ln]
    errors = [ln for ln in lines if "rror" in ln or "Invalid" in ln or "not found" in ln]
    if not errors:
        return lines[-1] if lines else "no output from ffmpeg"
    return errors[0] if len(errors) == 1 or errors[0] == errors[-1] else f"{errors[0]}; {errors[-1]}"


# --------------------------------------------------------------------------- probe

@dataclass(frozen=True)
class VideoStreamInfo:
    """The first real video stream of a file (cover art and other attached pictures are skipped)."""

    index: int
    """Stream index in the file."""
    width: int
    """Stored (coded) frame width, pixels, before the display rotation."""
    height: int
    """Stored frame height, pixels, before the display rotation."""
    fps: float
    """Average frame rate, frames per second (the container's r_frame_rate when it gives no average)."""
    rotation_deg: float
    """Display rotation, degrees counter-clockwise, in [-180, 180] (libav's display-matrix convention,
    the number ``ffmpeg -i`` prints); 0 without a display matrix. Read from the first decoded frame."""
    packets: int
    """Number of packets (compressed frames) of the stream that could be read."""
    end_s: float | None
    """Latest packet pts + duration, seconds on the file's timeline; None when no packet has a timestamp."""
    first_frame_decodes: bool
    """Whether decoding the stream yields at least one picture."""

    @property
    def spec(self) -> str:
        """ffmpeg ``-map`` specifier of the stream, e.g. "0:1"."""
        return f"0:{self.index}"

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) in pixels as shown: swapped for a quarter turn.

        Matches the ffmpeg CLI, which auto-rotates only by multiples of 90
        degrees (within 1 degree) and leaves other angles unrotated.
        """
        quarter_turn = abs(abs(self.rotation_deg) % 180 - 90) < 1.0
        return (self.height, self.width) if quarter_turn else (self.width, self.height)


@dataclass(frozen=True)
class AudioStreamInfo:
    """The first audio stream of a file."""

    index: int
    """Stream index in the file."""
    sample_rate: int
    """Sample rate, Hz (0 when the header does not say)."""
    channels: int
    """Channel count (from the channel layout, so 3.0 or 4.1 layouts count right)."""

    @property
    def spec(self) -> str:
        """ffmpeg ``-map`` specifier of the stream, e.g. "0:0"."""
        return f"0:{self.index}"


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe_media` read from a file."""

    path: str
    """The file."""
    start_s: float
    """Container start time on the streams' own clock, seconds; the origin of every other time here."""
    duration_s: float | None
    """Container duration from the header (or libav's estimate), seconds; None when unknown."""
    video: VideoStreamInfo | None
    """First real video stream, or None (audio files, images with no size, ...)."""
    audio: AudioStreamInfo | None
    """First audio stream, or None."""
    ended_early: bool
    """Reading the video packets stopped before the data the file describes: libav reported a
    "partial file" (sample data past the end of the file) or the demuxer failed mid-file."""
    read_error: str | None
    """libav's last error message while reading the video packets, None when there was none."""


def probe_media(path: str | Path) -> MediaInfo:
    """Open a media file and read its streams, the video's packets and its first frame.

    Demuxing the packets costs about 10 ms per minute of video (nothing but the
    first frame is decoded), so the end time and the packet count are exact.

    Raises UserError for a path that does not exist, is not a file, or is not a
    readable media file (the reason libav gave is in the message).
    """
    import av  # not at module import: the base layer stays cheap to import

    path = Path(path)
    if not path.exists():
        raise UserError(f"file not found: {path}", "check the path (and its spelling)")
    if not path.is_file():
        raise UserError(f"not a file: {path}", "give the path of a video or audio file, not a folder")
    with _libav_log() as log:
        try:
            container = av.open(str(path))
        except (av.FFmpegError, OSError) as e:
            reason = "; ".join(dict.fromkeys(filter(None, [_last_message(log), getattr(e, "strerror", None)])))
            raise UserError(f"{path} is not a readable media file ({reason or e})",
                            "check that the file is complete and in a format ffmpeg reads "
                            "(mp4, mov, mkv, webm, avi; wav, mp3, m4a for audio); "
                            "re-export or re-download it") from None
        with container:
            start = Fraction(container.start_time or 0) * _TIME_BASE
            duration = None if container.duration is None else float(container.duration * _TIME_BASE)
            stream = _first_video_stream(container)
            video, stopped = None, False
            if stream is not None:
                log.clear()  # only what reading the packets reports says whether the file ended early
                video, stopped = _scan_video(container, stream, start)
            # libav's mov demuxer logs "partial file" when the index points past the end of the data
            ended_early = stopped or any("partial file" in message for _, _, message in log)
            audio = next((_audio_info(s) for s in container.streams.audio), None)
    return MediaInfo(path=str(path), start_s=float(start), duration_s=duration, video=video, audio=audio,
                     ended_early=ended_early, read_error=_last_message(log))


def _first_video_stream(container):
    """The first video stream that is a moving picture with a known size and rate, or None."""
    import av

    for stream in container.streams.video:
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue  # cover art: one still picture, not the video
        cc = stream.codec_context
        if cc is None or not cc.width or not cc.height or not (stream.average_rate or stream.base_rate):
            continue  # no decoder, or a header that says too little to use it
        return stream
    return None


def _scan_video(container, stream, start: Fraction) -> tuple[VideoStreamInfo, bool]:
    """Demux every packet of ``stream`` (counting them, tracking their end) and decode its first frame.

    Returns the stream's info and whether demuxing stopped on an error before the end of the file.
    """
    import av

    packets, end, frame = 0, None, None
    stopped = False
    try:
        for packet in container.demux(stream):
            if packet.size:  # the empty packets PyAV adds at the end only flush the decoder
                packets += 1
                if packet.pts is not None:
                    packet_end = packet.pts + (packet.duration or 0)
                    end = packet_end if end is None else max(end, packet_end)
            if frame is None:
                frame = _first_frame(stream, packet)
    except av.FFmpegError:
        stopped = True  # what was read before the error is all that can be read
    rate = stream.average_rate or stream.base_rate
    info = VideoStreamInfo(
        index=stream.index, width=stream.codec_context.width, height=stream.codec_context.height,
        fps=float(rate), rotation_deg=_rotation(frame) if frame is not None else 0.0, packets=packets,
        end_s=None if end is None else float(end * stream.time_base - start),
        first_frame_decodes=frame is not None)
    return info, stopped


def _first_frame(stream, packet):
    """The first picture decoding ``packet`` gives, or None (also when the packet fails to decode).

    A failed packet is not the end: like the ffmpeg CLI, later packets (the next
    keyframe) may still decode.
    """
    import av

    try:
        frames = stream.decode(packet)
    except av.FFmpegError:
        return None
    return frames[0] if frames else None


def _rotation(frame) -> float:
    """Display rotation of a decoded frame, degrees counter-clockwise (0 without a display matrix).

    PyAV gives it as ``VideoFrame.rotation``; older PyAV builds without that
    attribute get it from the DISPLAYMATRIX side data, as av_display_rotation_get does.
    """
    rotation = getattr(frame, "rotation", None)
    if rotation is not None:
        return float(rotation)
    import math
    import struct

    for side_data in frame.side_data:
        if getattr(side_data.type, "name", "") == "DISPLAYMATRIX":
            m = struct.unpack("=9i", bytes(side_data))  # 3x3 row-major, 16.16 fixed point
            scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
            if scale0 and scale1:  # a singular matrix has no rotation
                return -math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))
    return 0.0


def _audio_info(stream) -> AudioStreamInfo:
    cc = stream.codec_context
    channels = cc.channels if cc is not None else 0
    return AudioStreamInfo(index=stream.index, sample_rate=int(getattr(cc, "sample_rate", 0) or 0),
                           channels=int(channels or 0))


@contextlib.contextmanager
def _libav_log() -> Iterator[list]:
    """Capture libav's error messages of this thread as (level, component, message) tuples.

    PyAV ignores libav's log by default; the truncation check needs it (the mov
    demuxer reports reading past the end of the file only there), so logging is
    switched on for the duration and the previous settings restored. PyAV also
    drops a message equal to the last one it saw, which would hide the second
    probe of the same truncated file: that is switched off too.
    """
    import av.logging

    previous = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture() as log:
            yield log
    finally:
        av.logging.set_level(previous[0])
        av.logging.set_skip_repeated(previous[1])


def _last_message(log: list) -> str | None:
    messages = [message.strip() for _, _, message in log if message.strip()]
    return messages[-1] if messages else None
