"""Side-by-side evaluation videos: real | rendered | error, with the subject's sound.

``avatar eval`` renders the held-out validation frames and writes them next to
the real ones, so a person can judge lip sync and artefacts by eye (and by ear:
the audio of the same stretch of the clip is muxed in). The third panel is a
heat map of the per-pixel error, which shows where the numbers in the metrics
come from. Encoding, sound and the all-or-nothing file are
:class:`avatar.core.video.VideoWriter`'s.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from avatar.core.errors import UserError
from avatar.core.video import VideoWriter, check_frame

ERROR_FULL_SCALE = 0.25
"""Mean absolute RGB error (colours in [0, 1]) shown at the top of the colour map."""


def error_heatmap(real: np.ndarray, rendered: np.ndarray) -> np.ndarray:
    """Heat map of the absolute error of two (S, S, 3) uint8 RGB frames, as (S, S, 3) uint8 RGB.

    The error is averaged over RGB and scaled so :data:`ERROR_FULL_SCALE` and
    above is the top of matplotlib's "inferno" map (black, purple, orange,
    light yellow): identical frames are black.
    """
    check_frame(real, "real")
    check_frame(rendered, "rendered", real.shape)
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

    ``size`` is the frame side S, pixels; ``audio`` an optional sound file and
    ``audio_start_s`` the time in it, seconds, of the first written frame (see
    :class:`~avatar.core.video.VideoWriter`, which does the writing).
    """

    def __init__(self, path: str | os.PathLike, size: int, fps: float, audio: str | os.PathLike | None = None,
                 audio_start_s: float = 0.0):
        if size < 1:
            raise ValueError(f"need size >= 1, got {size}")
        self.size = int(size)
        self._video = VideoWriter(path, 3 * self.size, self.size, fps, audio, audio_start_s)

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self._video.frames

    def __enter__(self) -> SideBySideWriter:
        if self._video.audio is not None and not self._video.audio.is_file():
            raise UserError(f"audio file not found: {self._video.audio}",
                            "re-run `avatar preprocess` on the subject to rebuild its audio")
        self._video.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return self._video.__exit__(exc_type, exc, tb)

    def write(self, real: np.ndarray, rendered: np.ndarray) -> None:
        """Append one frame made of ``real`` and ``rendered``, (S, S, 3) uint8 RGB each, and their error."""
        shape = (self.size, self.size, 3)
        check_frame(real, "real", shape)
        check_frame(rendered, "rendered", shape)
        self._video.write(np.concatenate([real, rendered, error_heatmap(real, rendered)], axis=1))
