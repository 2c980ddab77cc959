"""One browser tab's live stream: sound and frames on one clock, idle motion between utterances.

The stream never stops while the tab is open: when nothing is being said it
is fed silence, so the avatar idles (blinks, small head motion, closed mouth)
instead of freezing. Its clock is the audio's: sample ``n`` is at stream time
``n / 16000`` s and frame ``k`` at ``k / fps``. The session keeps the audio
:attr:`ViewConfig.lead_ms` ahead of real time (the page plays it after a small
jitter buffer), which leaves the motion model's look-ahead and the rendering
time for each frame to arrive before its sound is heard. A frame that would
arrive after its sound is not rendered at all (dropped), so a slow machine
shows fewer frames, never out-of-sync ones.

With the microphone on, the page's own samples drive the stream as they
arrive (they are not sent back: the page would echo), and the page shows each
frame as it comes: the face follows the voice after the look-ahead.

Wire format (websocket, little-endian binary messages; JSON text for the rest):

- audio: ``<B7xd`` (kind 1, stream time of the first sample, s) + int16 mono PCM at 16 kHz;
- frame: ``<B3xId`` (kind 2, frame index, stream time, s) + JPEG bytes.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque

import numpy as np

from avatar.view.config import ViewConfig

log = logging.getLogger("avatar")

RATE = 16000
"""Sample rate of the stream (the motion model's)."""
AUDIO_HEADER = struct.Struct("<B7xd")
FRAME_HEADER = struct.Struct("<B3xId")
KIND_AUDIO, KIND_FRAME = 1, 2
JITTER_S = 0.15
"""The page's playback runs this much behind the first sound it received (room for uneven delivery)."""
SEND_S = 0.03
"""Time allowed for a rendered frame to reach the page and be decoded, seconds."""


class Utterance:
    """Audio queued to be said: (T,) float32 at 16 kHz, taken chunk by chunk."""

    def __init__(self, samples: np.ndarray, label: str):
        self.samples, self.label, self.pos = np.asarray(samples, np.float32), label, 0

    def take(self, n: int) -> np.ndarray:
        out = self.samples[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    @property
    def done(self) -> bool:
        return self.pos >= len(self.samples)


class LiveSession:
    """The stream of one websocket: :meth:`run` until the socket closes; the other methods are its commands."""

    def __init__(self, engine, send_bytes, send_json, cfg: ViewConfig):
        self.engine, self.cfg = engine, cfg
        self._send_bytes, self._send_json = send_bytes, send_json
        self.chunk = int(RATE * cfg.chunk_ms / 1000)
        self._queue: deque[Utterance] = deque()
        self._current: Utterance | None = None
        self._mic: list[np.ndarray] | None = None  # samples from the page's microphone, when it is on
        self._produced = 0  # samples pushed into the engine
        self._frames: asyncio.Queue = asyncio.Queue()
        self.dropped = 0
        self.sent = 0

    # -- commands -------------------------------------------------------------------------------------------

    def say(self, samples: np.ndarray, label: str) -> float:
        """Queue an utterance after what is being said; the stream time it will start at, seconds."""
        ahead = [self._current] if self._current is not None else []
        start = self._produced + sum(len(u.samples) - u.pos for u in ahead + list(self._queue))
        self._queue.append(Utterance(samples, label))
        return start / RATE

    def stop(self) -> None:
        """Stop talking (the stream goes on idling)."""
        self._queue.clear()
        self._current = None

    def mic(self, on: bool) -> None:
        self._mic = [] if on else None

    def mic_samples(self, pcm16: bytes) -> None:
        if self._mic is not None:
            self._mic.append(np.frombuffer(pcm16, "<i2").astype(np.float32) / 32768.0)

    # -- the stream -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Feed the engine on the audio clock and send sound and frames, until cancelled."""
        loop = asyncio.get_running_loop()
        sender = asyncio.create_task(self._send_frames())
        t0 = loop.time()
        try:
            while True:
                if self._mic is not None:
                    samples = np.concatenate(self._mic) if self._mic else np.zeros(0, np.float32)
                    self._mic = []
                    if len(samples):
                        await self._push(loop, samples, None, send_audio=False)
                    t0 = loop.time() - self._produced / RATE  # the clock follows the microphone
                else:
                    due = (loop.time() - t0) + self.cfg.lead_ms / 1000
                    while self._produced / RATE < due:
                        await self._push(loop, self._next_chunk(), self._deadline(t0), send_audio=True)
                await asyncio.sleep(self.cfg.chunk_ms / 4000)
        finally:
            sender.cancel()

    @staticmethod
    def _deadline(t0: float):
        """When a frame must be rendered by: its sound plays at ``t0 + time_s + JITTER_S`` (the loop's clock is
        ``time.monotonic()``), less the time to send and decode it (the pool allows for rendering)."""
        return lambda time_s: t0 + time_s + JITTER_S - SEND_S

    def _next_chunk(self) -> np.ndarray:
        """The next chunk of what is being said, or silence."""
        out = np.zeros(self.chunk, np.float32)
        filled = 0
        while filled < self.chunk:
            if self._current is None or self._current.done:
                self._current = self._queue.popleft() if self._queue else None
                if self._current is None:
                    break
            part = self._current.take(self.chunk - filled)
            out[filled:filled + len(part)] = part
            filled += len(part)
        return out

    async def _push(self, loop, samples: np.ndarray, deadline, send_audio: bool) -> None:
        start_s = self._produced / RATE
        self._produced += len(samples)
        if send_audio:
            pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
            await self._send_bytes(AUDIO_HEADER.pack(KIND_AUDIO, start_s) + pcm)
        frames = await loop.run_in_executor(None, self.engine.push, samples, deadline)
        for f in frames:
            if f.jpeg is None:
                self.dropped += 1
            else:
                self._frames.put_nowait(f)

    async def _send_frames(self) -> None:
        """Send rendered frames in order as they finish."""
        while True:
            f = await self._frames.get()
            try:
                jpeg = await asyncio.wrap_future(f.jpeg)
            except Exception:  # noqa: BLE001 - one frame that failed to render must not end the stream
                log.exception("frame %d failed to render", f.index)
                continue
            if jpeg is None:  # its turn came too late
                self.dropped += 1
                continue
            await self._send_bytes(FRAME_HEADER.pack(KIND_FRAME, f.index, f.time_s) + jpeg)
            self.sent += 1
