"""avatar.fit.video: the real | rendered | error evaluation video and its heat map."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile as sf

from avatar.core.errors import UserError
from avatar.core.media import probe_media
from avatar.fit.video import SideBySideWriter, error_heatmap

SIZE, FPS = 64, 25.0


def _frames(n: int, size: int = SIZE, seed: int = 0):
    """n (real, rendered) pairs: a moving gradient, and a darker, slightly noisy copy.

    Smooth images: yuv420p halves the colour resolution, so per-pixel colour
    noise would not survive the encoding to be compared.
    """
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for i in range(n):
        real = np.stack([np.roll(ramp, 3 * i)[None, :].repeat(size, 0),
                         ramp[:, None].repeat(size, 1), np.full((size, size), 128.0)], axis=-1)
        rendered = 0.8 * real + 10 + rng.normal(0, 2, real.shape)
        yield real.astype(np.uint8), np.clip(rendered, 0, 255).astype(np.uint8)


@pytest.fixture
def wav(tmp_path):
    """1 s of a 440 Hz sine, mono 16 kHz."""
    rate = 16000
    t = np.arange(rate) / rate
    path = tmp_path / "audio.wav"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32), rate)
    return path


def _decoded_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _audio_duration_s(path) -> float:
    """Duration of the audio stream as the container states it (what players honour), seconds.

    Decoding gives up to one AAC frame (1024 samples) more: the decoder does
    not trim the last frame to the edit list.
    """
    with av.open(str(path)) as c:
        audio = c.streams.audio[0]
        return float(audio.duration * audio.time_base)


def _decoded_audio(path) -> np.ndarray:
    """The first audio stream as (T,) float32 mono at its own rate (16 kHz here: the wav's)."""
    with av.open(str(path)) as c:
        chunks = [f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)]
    return np.concatenate(chunks).astype(np.float32)


def test_video_with_sound(tmp_path, wav):
    out = tmp_path / "eval.mp4"
    with SideBySideWriter(out, SIZE, FPS, audio=wav, audio_start_s=0.2) as video:
        for real, rendered in _frames(10):
            video.write(real, rendered)
    assert video.frames == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.wav", "eval.mp4"]  # no temporary left

    info = probe_media(out)
    assert (info.video.width, info.video.height) == (3 * SIZE, SIZE)
    assert info.video.packets == 10
    assert info.video.fps == pytest.approx(FPS)
    assert info.audio is not None
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert c.streams.audio[0].codec_context.name == "aac"
    # the sound ends with the video (10 frames = 0.4 s), not with the 0.8 s left in the wav
    assert _audio_duration_s(out) == pytest.approx(0.4, abs=0.03)
    assert len(_decoded_frames(out)) == 10


def test_panels_are_real_rendered_error(tmp_path):
    out = tmp_path / "eval.mp4"
    pairs = list(_frames(3))
    with SideBySideWriter(out, SIZE, FPS) as video:
        for real, rendered in pairs:
            video.write(real, rendered)
    first = _decoded_frames(out)[0].astype(np.float32)
    real, rendered = pairs[0]
    assert np.abs(first[:, :SIZE] - real).mean() < 6  # H.264 at crf 18: small differences only
    assert np.abs(first[:, SIZE:2 * SIZE] - rendered).mean() < 6
    assert np.abs(first[:, 2 * SIZE:] - error_heatmap(real, rendered)).mean() < 6
    assert probe_media(out).audio is None


def test_audio_shorter_than_video_keeps_every_frame(tmp_path, wav):
    out = tmp_path / "eval.mp4"
    with SideBySideWriter(out, SIZE, FPS, audio=wav, audio_start_s=0.9) as video:  # 0.1 s of sound left
        for real, rendered in _frames(10):
            video.write(real, rendered)
    info = probe_media(out)
    assert info.video.packets == 10 and info.audio is not None
    assert _audio_duration_s(out) == pytest.approx(0.4, abs=0.03)  # padded with silence


def test_audio_is_cut_from_audio_start(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    tone = np.where(t >= 0.5, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0)  # silent for 0.5 s, then a tone
    wav = tmp_path / "step.wav"
    sf.write(wav, tone.astype(np.float32), rate)
    out = tmp_path / "eval.mp4"
    with SideBySideWriter(out, SIZE, FPS, audio=wav, audio_start_s=0.3) as video:
        for real, rendered in _frames(10):
            video.write(real, rendered)
    sound = _decoded_audio(out)
    rms = lambda a, b: float(np.sqrt(np.mean(sound[int(a * rate):int(b * rate)] ** 2)))  # noqa: E731
    assert rms(0.02, 0.17) < 0.02  # 0.3-0.47 s of the file: silence
    assert rms(0.23, 0.38) > 0.25  # 0.53-0.68 s of the file: the tone (rms 0.35)


def test_odd_size_is_padded_to_even(tmp_path):
    out = tmp_path / "odd.mp4"
    with SideBySideWriter(out, 33, FPS) as video:
        for real, rendered in _frames(2, size=33):
            video.write(real, rendered)
    info = probe_media(out)
    assert (info.video.width, info.video.height) == (100, 34)


def test_exception_leaves_nothing(tmp_path, wav):
    out = tmp_path / "eval.mp4"
    with pytest.raises(KeyError):
        with SideBySideWriter(out, SIZE, FPS, audio=wav) as video:
            for real, rendered in _frames(3):
                video.write(real, rendered)
            raise KeyError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.wav"]


def test_wrong_frame_is_rejected_and_leaves_nothing(tmp_path):
    out = tmp_path / "eval.mp4"
    real, rendered = next(_frames(1))
    with pytest.raises(ValueError, match="rendered"):
        with SideBySideWriter(out, SIZE, FPS) as video:
            video.write(real, rendered[:32])
    assert list(tmp_path.iterdir()) == []


def test_unreadable_audio_is_a_user_error(tmp_path):
    bad = tmp_path / "audio.wav"
    bad.write_bytes(b"not a wav file" * 10)
    out = tmp_path / "eval.mp4"
    with pytest.raises(UserError, match="ffmpeg failed"):
        with SideBySideWriter(out, SIZE, FPS, audio=bad) as video:
            for real, rendered in _frames(3):
                video.write(real, rendered)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.wav"]


def test_missing_audio_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nope.wav"):
        with SideBySideWriter(tmp_path / "eval.mp4", SIZE, FPS, audio=tmp_path / "nope.wav"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_heatmap_dark_for_identical_bright_for_different():
    real, _ = next(_frames(1))
    same = error_heatmap(real, real.copy())
    assert same.shape == real.shape and same.dtype == np.uint8
    assert same.max() <= 8  # inferno starts at (0, 0, 4)

    far = error_heatmap(np.zeros_like(real), np.full_like(real, 255))
    assert far.mean(axis=(0, 1)) == pytest.approx([252, 255, 164], abs=3)  # inferno's top, RGB order
    # a quarter of full range is already the top of the scale
    quarter = error_heatmap(np.zeros_like(real), np.full_like(real, 64))
    np.testing.assert_array_equal(quarter, far)


def test_heatmap_is_rgb_not_bgr():
    a = np.zeros((4, 4, 3), np.uint8)
    mid = error_heatmap(a, np.full_like(a, 32))  # half scale: inferno's orange-red, red > blue
    assert mid[0, 0, 0] > mid[0, 0, 2]
