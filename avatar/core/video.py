"""Write frames to an H.264 mp4 with AAC sound, streaming, atomically: :class:`VideoWriter`.

Every video the project writes (eval side-by-sides, ``avatar render``) goes
through here. Frames are piped raw to the bundled ffmpeg (:mod:`avatar.core.media`)
as they come, so memory stays at one frame whatever the length. With sound, a
second, quick ffmpeg run copies the encoded video and adds the audio, cut to
exactly the frames' duration (known only at the end). The file is written to a
temporary sibling and renamed onto its name only when ffmpeg finished cleanly:
an interrupted or failed run leaves nothing that looks like a finished video
(and no temporary files).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from avatar.core import media
from avatar.core.errors import UserError
from avatar.core.files import atomic_path

VIDEO_CODEC = "libx264"
"""H.264 encoder. The bundled imageio-ffmpeg build includes libx264 (checked with
``ffmpeg -encoders`` on ffmpeg 9.0.2); a build without it would need "mpeg4", which
players accept in mp4 as well but at a visibly lower quality for the size."""

CRF = 18
"""x264 constant-rate factor: visually lossless, so compression does not hide or add artefacts."""

AUDIO_BITRATE = "128k"


class VideoWriter:
    """Writes (H, W, 3) uint8 RGB frames to an H.264 mp4 (yuv420p, faststart), with optional AAC sound.

    Use as a context manager::

        with VideoWriter("talk.mp4", width=512, height=512, fps=25.0, audio="speech.mp3") as video:
            for frame in frames:
                video.write(frame)

    ``audio`` is any sound file ffmpeg reads and ``audio_start_s`` the time in
    it, seconds, of the first frame; the sound is cut from there to the end of
    the last frame (padded with silence when the file ends sooner). ``preset``
    is x264's speed/size trade-off (quality is set by ``crf``). The video is
    complete at ``path`` only after a clean exit from the ``with`` block; on an
    exception nothing is left there.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float,
                 audio: str | os.PathLike | None = None, audio_start_s: float = 0.0, *,
                 preset: str = "medium", crf: int = CRF, threads: int = 0):
        if width < 1 or height < 1 or fps <= 0 or audio_start_s < 0:
            raise ValueError(f"need width, height >= 1, fps > 0, audio_start_s >= 0; "
                             f"got {width}, {height}, {fps}, {audio_start_s}")
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.fps = float(fps)
        self.audio = None if audio is None else Path(audio)
        self.audio_start_s = float(audio_start_s)
        self.preset, self.crf, self.threads = preset, int(crf), int(threads)
        self.frames = 0
        """Frames written so far."""
        self._stack: contextlib.ExitStack | None = None
        self._out: Path | None = None  # the temporary file that becomes self.path
        self._video: Path | None = None  # where the encoder writes: self._out, or a video-only file
        self._proc: subprocess.Popen | None = None
        self._stderr = None

    # ------------------------------------------------------------------ context

    def __enter__(self) -> VideoWriter:
        if self.audio is not None and not self.audio.is_file():
            raise UserError(f"audio file not found: {self.audio}", "give the path of an existing sound file")
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

    def write(self, frame: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 RGB frame."""
        if self._proc is None:
            raise RuntimeError("VideoWriter.write() outside its `with` block")
        check_frame(frame, "video", (self.height, self.width, 3))
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except (BrokenPipeError, OSError):
            self._proc.wait()
            raise self._failure() from None
        self.frames += 1

    # ------------------------------------------------------------------ ffmpeg

    def _encode_args(self, out: Path) -> list[str]:
        """ffmpeg arguments that encode the raw frames read from stdin into ``out``."""
        return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}", "-r", repr(self.fps),
                "-i", "-",
                # yuv420p halves the chroma resolution, so it needs even sides: pad an odd frame by a black pixel
                "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-c:v", VIDEO_CODEC, "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
                *(["-threads", str(self.threads)] if self.threads else []),
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


def check_frame(frame: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> None:
    """Raise ValueError unless ``frame`` is (H, W, 3) uint8 (and ``shape`` when given): a caller's bug."""
    ok = isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    if not ok or (shape is not None and frame.shape != tuple(shape)):
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        want = "(H, W, 3)" if shape is None else str(tuple(shape))
        raise ValueError(f"{name} frame must be a {want} uint8 RGB array, got {got}")
