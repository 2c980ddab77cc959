"""The viewer's streaming engine, session, speech sources and start-up checks, on the real fitted may_5s subject.

The page itself, in a real browser, is tested in ``test_view_browser.py``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import cv2
import numpy as np
import pytest

from avatar.core.errors import UserError
from avatar.motion.blinks import BlinkModel, BlinkTrack
from avatar.view.config import ViewConfig
from tests.conftest import data_file, run_avatar


def _speech(seconds: float) -> np.ndarray:
    from preprocess.decode import decode_audio

    return decode_audio(data_file("audio", "hallo_1.wav"), 16000)[:int(seconds * 16000)]


@pytest.fixture(scope="module")
def pool(may_motion):
    from avatar.talk.frames import AvatarFrames
    from avatar.view.engine import RenderPool
    from preprocess.subject import Subject

    p = RenderPool(AvatarFrames(Subject(may_motion)), workers=2, jpeg_quality=85)
    yield p
    p.close()


@pytest.fixture(scope="module")
def motion_model(may_motion):
    from avatar.motion.config import MotionConfig
    from avatar.motion.model import load_or_train_motion
    from preprocess.subject import Subject

    return load_or_train_motion(Subject(may_motion), MotionConfig())


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_the_engine_turns_audio_chunks_into_one_timestamped_jpeg_per_frame(pool, motion_model):
    from avatar.view.engine import StreamEngine

    engine = StreamEngine(pool, motion_model, sample_rate=16000)
    speech = _speech(2.0)
    frames = []
    for lo in range(0, len(speech), 2560):
        frames += engine.push(speech[lo:lo + 2560])
    frames += engine.finish()
    assert [f.index for f in frames] == list(range(50))  # 2 s at 25 fps, in order, none missing
    assert [f.time_s for f in frames] == pytest.approx([k / 25 for k in range(50)])
    pictures = [_decode(f.jpeg.result()) for f in frames]
    size = pool.frames.size  # 256 for the fast preset
    assert all(p.shape == (size, size, 3) for p in pictures)
    moving = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(pictures, pictures[1:])])
    assert moving > 0.3, "consecutive frames of speech should differ"


def test_turning_the_view_changes_the_picture_and_is_clamped(pool, motion_model):
    from avatar.view.engine import MAX_YAW_DEG, StreamEngine

    engine = StreamEngine(pool, motion_model, sample_rate=16000)
    silence = np.zeros(16000, np.float32)
    front = [f for f in engine.push(silence) if f.jpeg is not None][0]
    engine.set_view(90.0, 0.0, 0.0)
    assert engine.view[0] == MAX_YAW_DEG
    turned = [f for f in engine.push(silence) if f.jpeg is not None][0]
    a, b = _decode(front.jpeg.result()), _decode(turned.jpeg.result())
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5.0
    engine.set_view(0.0, 0.0, 0.0)
    assert engine.camera is None


def test_frames_past_their_deadline_are_dropped_not_rendered_late(pool, motion_model):
    import time

    from avatar.view.engine import StreamEngine

    engine = StreamEngine(pool, motion_model, sample_rate=16000)
    past = time.monotonic() - 10.0
    frames = engine.push(_speech(1.0), deadline=lambda t: past)
    assert frames and all(f.jpeg is None or f.jpeg.result() is None for f in frames)


def test_sliders_change_the_motion_from_the_next_frame(pool, motion_model):
    from avatar.view.engine import StreamEngine

    engine = StreamEngine(pool, motion_model, sample_rate=16000)
    engine.set_controls(mouth_amplitude=0.0, blink_rate=2.0, head_motion=0.0)
    c = engine.motion.controls
    assert (c.mouth_amplitude, c.blink_rate, c.head_motion, c.pose) == (0.0, 2.0, 0.0, "audio")
    with pytest.raises(UserError, match="outside 0..5"):
        engine.set_controls(mouth_amplitude=9.0, blink_rate=1.0, head_motion=1.0)


def test_blink_rate_changes_take_effect_and_zero_stops_blinking():
    from avatar.motion.blinks import HALF_WIDTH

    profile = np.interp(np.arange(2 * HALF_WIDTH + 1), [0, HALF_WIDTH, 2 * HALF_WIDTH], [0, 1, 0]).astype(np.float32)
    model = BlinkModel(fps=25.0, intervals_s=np.array([3.0, 4.0]), profile=profile,
                       open_level=np.ones(2, np.float32), depth=np.zeros(2, np.float32))
    track = BlinkTrack(model, rate=1.0, seed=1)
    track.set_rate(0.0)
    assert track.take(25 * 60).min() == 1.0  # a minute without a blink
    track.set_rate(3.0)
    closed = track.take(25 * 60).min(axis=1) < 0.5
    blinks = int(np.sum(closed[1:] & ~closed[:-1]))
    assert 30 <= blinks <= 70  # about 3x the subject's 17 a minute


class _Socket:
    """Collects what a session sends, as the page would receive it."""

    def __init__(self):
        self.audio, self.frames = [], []

    async def send_bytes(self, data: bytes):
        kind = data[0]
        if kind == 1:
            (t,) = struct.unpack_from("<d", data, 8)
            self.audio.append((t, len(data) - 16))
        else:
            index, t = struct.unpack_from("<Id", data, 4)
            self.frames.append((index, t))

    async def send_json(self, data):
        pass


def test_a_live_session_streams_on_the_audio_clock_and_idles_between_utterances(pool, motion_model):
    from avatar.view.engine import StreamEngine
    from avatar.view.session import LiveSession

    engine = StreamEngine(pool, motion_model, sample_rate=16000)
    sock = _Socket()
    session = LiveSession(engine, sock.send_bytes, sock.send_json, ViewConfig())

    async def run():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        task = asyncio.create_task(session.run())
        await asyncio.sleep(1.0)
        start = session.say(_speech(1.5), "speech")
        await asyncio.sleep(3.0)
        elapsed = loop.time() - t0  # a loaded machine wakes the sleeps late: compare with the clock, not 4 s
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return start, elapsed

    start, elapsed = asyncio.run(run())
    assert 0.9 <= start <= 2.0  # queued at the stream's next chunk, which runs ahead of real time
    lead, chunk = ViewConfig().lead_ms / 1000, ViewConfig().chunk_ms / 1000
    times = [t for t, _ in sock.audio]
    assert times == pytest.approx([k * chunk for k in range(len(times))])  # contiguous sound, 160 ms chunks
    assert 0.9 * elapsed <= times[-1] + chunk <= elapsed + lead + chunk + 0.15  # real time plus the lead
    indices = [i for i, _ in sock.frames]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert all(t == pytest.approx(i / 25) for i, t in sock.frames)
    assert len(indices) + session.dropped >= 0.8 * 25 * 3.5  # idle and speech both stream
    assert sock.frames[0][1] < 0.5, "the idle stream starts before anything is said"


def test_uploads_are_checked_on_the_server(may_motion, tmp_path):
    from avatar.view.sources import SpeechSources
    from preprocess.subject import Subject

    sources = SpeechSources(Subject(may_motion), ViewConfig(max_upload_s=5.0, uploads_kept=2))
    with pytest.raises(UserError, match="not audio"):
        sources.add_upload(b"these are my notes, not a recording\n" * 100, "notes.txt")
    wav = data_file("audio", "hallo_1.wav").read_bytes()  # 7.5 s
    with pytest.raises(UserError, match="more than 5 s"):
        sources.add_upload(wav, "hallo_1.wav")
    sources = SpeechSources(Subject(may_motion), ViewConfig(uploads_kept=2))
    ids = [sources.add_upload(wav, "hallo_1.wav")[0] for _ in range(3)]
    assert sources.n_uploads == 2
    with pytest.raises(UserError, match="no longer kept"):
        sources.upload(ids[0])
    assert len(sources.upload(ids[2])) == pytest.approx(7.5 * 16000, rel=0.01)
    clips = sources.clips()
    assert clips[0].id == "own-0" and any(c.id == "sample-en-us" for c in clips)
    samples, _ = sources.clip("sample-de")
    assert len(samples) > 16000


def test_a_port_in_use_is_named_with_a_free_one_to_try():
    from avatar.view.server import bind

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(UserError) as e:
            bind("127.0.0.1", port)
        assert "in use" in e.value.problem and f"--port {port + 1}" in e.value.fix
    finally:
        taken.close()


def test_view_refuses_a_subject_that_was_never_fitted(may_subject):
    r = run_avatar("view", may_subject, "--port", "0")
    assert r.returncode != 0
    assert "avatar fit" in r.stderr


def test_bench_stream_prints_its_numbers(may_motion):
    r = run_avatar("bench", "stream", may_motion, data_file("audio", "hallo_1.wav"), "--json", "-q")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("gaussians", "fps", "first_frame_ms", "first_frame_live_ms", "width", "height", "threads",
                "peak_rss_mb"):
        assert key in out
    assert out["frames"] == round(7.5 * 25)
    assert out["fps"] == pytest.approx(out["frames"] / out["seconds"], rel=0.02)
    assert (out["width"], out["height"], out["threads"]) == (256, 256, 2)  # the fast preset's size
    assert 0 < out["first_frame_ms"] < out["first_frame_live_ms"]
    # live, the look-ahead must be heard first: at least one more chunk after the first
    assert out["first_frame_live_ms"] >= out["chunk_ms"]
