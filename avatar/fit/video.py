"""Side-by-side evaluation videos: real | rendered | error, with the subject's sound.

``avatar eval`` renders the held-out validation frames and writes them next to
the real ones, so a person can judge lip sync and artefacts by eye (and by ear:
the audio of the same stretch of the clip is muxed in). The third panel is a
heat map of the per-pixel error, which shows where the numbers in the metrics
come from.

Frames are piped raw to an ffmpeg encoder (the bundled one, see
:mod:`avatar.core.media`), so memory stays at one frame whatever the length.
With sound, a second, quick ffmpeg run copies the encoded video and adds the
audio cut to exactly the frames' duration, which is known only at the end.
The file is written to a temporary sibling and renamed onto its name only when
ffmpeg finished cleanly: an interrupted or failed run leaves nothing that looks
like a finished video (and no temporary files).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from avatar.core import media
from avatar.core.errors import UserError
from avatar.core.files import atomic_path

ERROR_FULL_SCALE = 0.25
"""Mean absolute RGB error (colours in [0, 1]) shown at the top of the colour map."""

VIDEO_CODEC = "libx264"
"""H.264 encoder. The bundled imageio-ffmpeg build includes libx264 (checked with
``ffmpeg -encoders`` on ffmpeg 9.0.2); a build without it would need "mpeg4", which
players accept in mp4 as well but at a visibly lower quality for the size."""

CRF = 18
"""x264 constant-rate factor: visually lossless, so compression does not hide or add artefacts."""

AUDIO_BITRATE = "128k"


def error_heatmap(real: np.ndarray, rendered: np.ndarray) -> np.ndarray:
    """Heat map of the absolute error of two (S, S, 3) uint8 RGB frames, as (S, S, 3) uint8 RGB.

    The error is averaged over RGB and scaled so :data:`ERROR_FULL_SCALE` and
    above is the top of matplotlib's "inferno" map (black, purple, orange,
    light yellow): identical frames are black.
    """
    _check_frame(real, "real")
    _check_frame(rendered, "rendered", real.shape)
    err = np.abs(real.astype(np.int16) - rendered.astype(np.int16)).mean(axis=-1) / 255.0
    level = np.clip(err / ERROR_FULL_SCALE * 255.0 + 0.5, 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(level, cv2.COLORMAP_INFERNO)  # OpenCV's colour maps come out BGR
    return np.ascontiguousarray(bgr[..., ::-1])


class SideBySideWriter:
    """Writes real | rendered | error frames, (S, 3S, 3) each, to an H.264 mp4 with AAC sound.

    Use as a context manager::

        with SideBySideWriter("eval.mp4", size=512, fps=25.0, audio="audio.wav",
                              audio_start_s=112 / 25) as video:
            for real, rendered in frames:
                video.write(real, rendered)

    ``size`` is the frame side S, pixels; ``fps`` frames per second; ``audio``
    an optional sound file (wav) and ``audio_start_s`` the time in it, seconds,
    of the first written frame. The sound is cut from there to the end of the
    last frame (padded with silence when the file ends sooner). The video is
    complete at ``path`` only after a clean exit from the ``with`` block; on an
    exception nothing is left there.
    """

    def __init__(self, path: str | os.PathLike, size: int, fps: float, audio: str | os.PathLike | None = None,
                 audio_start_s: float = 0.0):
        if size < 1 or fps <= 0 or audio_start_s < 0:
            raise ValueError(f"need size >= 1, fps > 0, audio_start_s >= 0; got {size}, {fps}, {audio_start_s}")
        self.path = Path(path)
        self.size = int(size)
        self.fps = float(fps)
        self.audio = None if audio is None else Path(audio)
        self.audio_start_s = float(audio_start_s)
        self.frames = 0
        """Frames written so far."""
        self._stack: contextlib.ExitStack | None = None
        self._out: Path | None = None  # the temporary file that becomes self.path
        self._video: Path | None = None  # where the encoder writes: self._out, or a video-only file
        self._proc: subprocess.Popen | None = None
        self._stderr = None

    # ------------------------------------------------------------------ context

    def __enter__(self) -> SideBySideWriter:
        if self.audio is not None and not self.audio.is_file():
            raise UserError(f"audio file not found: {self.audio}",
                            "re-run `avatar preprocess` on the subject to rebuild its audio")
        with contextlib.ExitStack() as stack:
            self._out = stack.enter_context(atomic_path(self.path))
            if self.audio is None:
                self._video = self._out
            else:
                # the frames go to a video-only file first, the sound is added once their count is known
                self._video = self._out.with_name(f"{self.path.stem}.video.tmp.mp4")
                stack.callback(self._video.unlink, missing_ok=True)
            # stderr goes to a file, not a pipe: a pipe nobody reads fills up and stalls ffmpeg
            self._stderr = stack.enter_context(tempfile.TemporaryFile())
            self._proc = subprocess.Popen(media.ffmpeg_command(self._encode_args(self._video)),
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)
            stack.callback(self._kill)  # runs before the files ffmpeg writes are removed
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        if exc_type is not None:
            stack.__exit__(exc_type, exc, tb)  # kills ffmpeg, removes the temporary file
            return False
        try:
            self._finish()
        except BaseException:
            stack.__exit__(*sys.exc_info())
            raise
        stack.close()  # atomic_path renames the finished file onto self.path
        return False

    # ------------------------------------------------------------------ frames

    def write(self, real: np.ndarray, rendered: np.ndarray) -> None:
        """Append one frame made of ``real`` and ``rendered``, (S, S, 3) uint8 RGB each, and their error."""
        if self._proc is None:
            raise RuntimeError("SideBySideWriter.write() outside its `with` block")
        shape = (self.size, self.size, 3)
        _check_frame(real, "real", shape)
        _check_frame(rendered, "rendered", shape)
        row = np.concatenate([real, rendered, error_heatmap(real, rendered)], axis=1)
        try:
            self._proc.stdin.write(np.ascontiguousarray(row).tobytes())
        except (BrokenPipeError, OSError):
            self._proc.wait()
            raise self._failure() from None
        self.frames += 1

    # ------------------------------------------------------------------ ffmpeg

    def _encode_args(self, out: Path) -> list[str]:
        """ffmpeg arguments that encode the raw frames read from stdin into ``out``."""
        width, height = 3 * self.size, self.size
        return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", repr(self.fps),
                "-i", "-",
                # yuv420p halves the chroma resolution, so it needs even sides: pad an odd frame by a black pixel
                "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-c:v", VIDEO_CODEC, "-preset", "medium", "-crf", str(CRF), "-pix_fmt", "yuv420p",
                # faststart moves the index to the front, so browsers play the file before it has loaded
                "-movflags", "+faststart", "-f", "mp4", "-y", str(out)]

    def _mux_args(self) -> list[str]:
        """ffmpeg arguments that add the sound to the encoded video, cut to the video's length.

        ``-t`` with the exact frame time rather than ``-shortest``, which (with
        ``apad``) overshot a 0.4 s video by half a second in ffmpeg 9; ``apad``
        fills with silence when the sound file ends before the last frame.
        """
        return ["-i", str(self._video), "-ss", repr(self.audio_start_s), "-i", str(self.audio),
                "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                "-af", "apad", "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-t", repr(self.frames / self.fps),
                "-movflags", "+faststart", "-f", "mp4", "-y", str(self._out)]

    def _finish(self) -> None:
        """Close ffmpeg's input, wait for it to write the video, then add the sound; raise if a step failed."""
        if self.frames == 0:
            raise ValueError(f"no frames were written to {self.path}")
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # ffmpeg already gone: its exit status and stderr tell why
        if self._proc.wait() != 0:
            raise self._failure()
        if self.audio is not None:
            done = media.run_ffmpeg(self._mux_args())
            if done.returncode != 0:
                raise self._failure(done.stderr)

    def _failure(self, stderr: bytes | None = None) -> UserError:
        """The error to raise for a failed ffmpeg run (the encoder's stderr unless ``stderr`` is given)."""
        if stderr is None:
            self._stderr.seek(0)
            stderr = self._stderr.read()
        reason = media.ffmpeg_reason(stderr)
        return UserError(f"could not write the video {self.path}: ffmpeg failed ({reason})",
                         "check that the folder is writable and the disk not full"
                         + ("" if self.audio is None else f", and that {self.audio} is a readable sound file"))

    def _kill(self) -> None:
        proc = self._proc
        self._proc = None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
            if proc.stdin is not None and not proc.stdin.closed:
                with contextlib.suppress(OSError):
                    proc.stdin.close()


def _check_frame(frame: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> None:
    """Raise ValueError unless ``frame`` is (H, W, 3) uint8 (and ``shape`` when given): a caller's bug."""
    ok = isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    if not ok or (shape is not None and frame.shape != tuple(shape)):
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        want = "(H, W, 3)" if shape is None else str(tuple(shape))
        raise ValueError(f"{name} frame must be a {want} uint8 RGB array, got {got}")
