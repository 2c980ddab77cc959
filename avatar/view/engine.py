"""The streaming engine: audio chunks in, timestamped JPEG frames out.

One :class:`StreamEngine` per stream turns audio into motion frames
(:class:`avatar.motion.stream.MotionStream`) and hands each frame to a shared
:class:`RenderPool`, which renders it (:class:`avatar.talk.frames.AvatarFrames`,
the path ``avatar render`` uses) and encodes it as JPEG on worker threads.

Frames render two at a time, one thread each (:class:`avatar.talk.frames.FramePool`:
1.6x one frame on two threads); the price is one frame of extra latency.

Frame ``k`` shows the audio ``[k / fps, (k + 1) / fps)`` of the stream: its
:attr:`Frame.time_s` is ``k / fps`` on the stream's audio clock, which is what
the page schedules it by.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from avatar.motion.generate import Controls
from avatar.talk.cameras import camera_from_angles
from avatar.talk.frames import AvatarFrames, FramePool

MAX_YAW_DEG = 30.0
"""Largest camera yaw the viewer turns to (the fit saw the head from the front: its sides break up past 15)."""
MAX_PITCH_DEG = 20.0
"""Largest camera pitch, degrees."""
MAX_DOLLY_M = 0.25
"""Largest camera move toward (+) or away from (-) the head, metres."""


class Frame(NamedTuple):
    """One frame of a stream, ready to send."""

    index: int  #: frame number on the stream, from 0
    time_s: float  #: where the frame starts on the stream's audio clock, seconds
    jpeg: bytes  #: the picture, JPEG


class RenderPool:
    """Renders frames on a :class:`avatar.talk.frames.FramePool` (``workers`` threads, single-threaded
    kernels) and encodes them as JPEG. One pool serves every stream of a process."""

    def __init__(self, frames: AvatarFrames, workers: int = 2, jpeg_quality: int = 85):
        self.frames, self.workers, self.jpeg_quality = frames, workers, jpeg_quality
        self._pool = FramePool(workers)
        self.render_s = 0.07  # running mean of one frame's render + JPEG time, seconds (starts at 2 cores' value)

    @property
    def threads(self) -> int:
        """CPU threads rendering at once."""
        return self._pool.threads

    def submit(self, expr: np.ndarray, viewmat: np.ndarray, verts: np.ndarray,
               camera: np.ndarray | None, deadline: float | None = None) -> Future:
        """Future of the JPEG bytes of the avatar with ``expr`` (K,), ``viewmat`` (4, 4), mesh ``verts``
        (V, 3) metres, seen through ``camera`` (4, 4) new-camera-from-training-camera or None.

        A frame whose turn comes too late to be rendered by ``deadline``
        (``time.monotonic()`` seconds; judged by :attr:`render_s`) is not rendered:
        its result is None (dropped).
        """
        return self._pool.submit(self._jpeg, expr, viewmat, verts, camera, deadline)

    def _jpeg(self, expr, viewmat, verts, camera, deadline) -> bytes | None:
        import cv2

        t0 = time.monotonic()
        if deadline is not None and t0 > deadline - self.render_s:
            return None
        picture = self.frames.render(expr, viewmat, verts, camera)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(picture.rgb, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        self.render_s += 0.1 * (time.monotonic() - t0 - self.render_s)
        return data.tobytes()

    def close(self) -> None:
        self._pool.close()


class PendingFrame(NamedTuple):
    """A frame whose motion is known: ``jpeg`` is the future of its JPEG (whose result is None if it was
    dropped, too late to be worth rendering when its turn came), or None when it was dropped at once."""

    index: int
    time_s: float
    jpeg: Future | None


class StreamEngine:
    """One stream: :meth:`push` audio, get the frames it completes (their pictures rendering in the pool).

    ``controls`` are the motion controls (the viewer uses ``pose="audio"``);
    :meth:`set_controls` and :meth:`set_view` change them from the next frame on.
    """

    def __init__(self, pool: RenderPool, motion_model, controls: Controls = Controls(pose="audio"),
                 sample_rate: int = 16000):
        from avatar.motion.stream import MotionStream

        self.pool = pool
        self.motion = MotionStream(motion_model, pool.frames.subject, controls, sample_rate)
        self.fps = self.motion.fps
        self._pivot = np.asarray(motion_model.mean_pose.translation, np.float64)
        self.camera: np.ndarray | None = None
        self.view = (0.0, 0.0, 0.0)

    @property
    def latency_frames(self) -> int:
        """Frames of audio past frame ``t`` the motion needs before frame ``t`` exists."""
        return self.motion.latency_frames

    def set_controls(self, mouth_amplitude: float, blink_rate: float, head_motion: float) -> None:
        """Mouth amplitude, blink rate and head motion (each 0..5, 1 = the subject's own) from the next frame."""
        self.motion.set_controls(replace(self.motion.controls, mouth_amplitude=float(mouth_amplitude),
                                         blink_rate=float(blink_rate), head_motion=float(head_motion)))

    def set_view(self, yaw_deg: float, pitch_deg: float, dolly_m: float) -> None:
        """Camera turned by ``yaw_deg`` / ``pitch_deg`` about the head and moved ``dolly_m`` toward it (clamped
        to what the fit can show; zeros: the training view)."""
        yaw = float(np.clip(yaw_deg, -MAX_YAW_DEG, MAX_YAW_DEG))
        pitch = float(np.clip(pitch_deg, -MAX_PITCH_DEG, MAX_PITCH_DEG))
        dolly = float(np.clip(dolly_m, -MAX_DOLLY_M, MAX_DOLLY_M))
        self.view = (yaw, pitch, dolly)
        if yaw == pitch == dolly == 0.0:
            self.camera = None
        else:
            self.camera = camera_from_angles(np.array([yaw]), np.array([pitch]), np.zeros(1), np.array([dolly]),
                                             self._pivot)[0]

    def push(self, samples: np.ndarray, deadline=None) -> list[PendingFrame]:
        """Add (T,) or (T, C) audio at the stream's rate; the frames it completed, in order.

        ``deadline(time_s)``: the ``time.monotonic()`` by which the frame at stream time
        ``time_s`` must be rendered to be worth sending (None: every frame is rendered).
        A frame past it is dropped, so a live stream that falls behind shows fewer
        frames, never frames that drift from their sound.
        """
        return self._submit(self.motion.push(samples), deadline)

    def finish(self) -> list[PendingFrame]:
        """End of the audio: the remaining frames."""
        return self._submit(self.motion.finish(), None)

    def _submit(self, motion, deadline) -> list[PendingFrame]:
        start = int(motion.meta["start_frame"])
        out = []
        for i in range(len(motion.expr)):
            k = start + i
            t = k / self.fps
            due = None if deadline is None else deadline(t)
            if due is not None and time.monotonic() > due - self.pool.render_s:
                out.append(PendingFrame(k, t, None))
                continue
            out.append(PendingFrame(k, t, self.pool.submit(motion.expr[i], motion.viewmats[i], motion.verts[i],
                                                           self.camera, due)))
        return out
