"""Audio features on real speech: shapes, frame alignment, rate invariance, pitch, energy/VAD, phones."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from preprocess.audio_features import PHONES, compute_audio_features
from preprocess.config import AudioFeatureConfig
from preprocess.decode import decode_audio
from tests.conftest import data_file

FLOAT_KEYS = ("mel", "mel_hi", "f0_hz", "f0_hi_hz", "voicing", "energy_db", "energy_hi_db", "vad",
              "phone_post", "phone_post_hi")


@pytest.fixture(scope="module")
def may_audio() -> np.ndarray:
    """may_5s.mp4's speech, (T,) float32 at 16 kHz."""
    return decode_audio(data_file("videos", "may_5s.mp4"), 16000)


@pytest.fixture(scope="module")
def may_features(may_audio) -> dict[str, np.ndarray]:
    return compute_audio_features(may_audio, 16000, 125)


def test_shapes_and_dtypes(may_features):
    f = may_features
    assert set(f) == set(FLOAT_KEYS)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in f.values())
    assert f["mel"].shape == (125, 80) and f["mel_hi"].shape == (500, 80)
    for key in ("f0_hz", "voicing", "energy_db", "vad"):
        assert f[key].shape == (125,)
    assert f["f0_hi_hz"].shape == f["energy_hi_db"].shape == (500,)
    assert f["phone_post"].shape == (125, len(PHONES)) and f["phone_post_hi"].shape == (500, len(PHONES))
    assert set(np.unique(f["vad"])) <= {0.0, 1.0}
    assert f["voicing"].min() >= 0 and f["voicing"].max() <= 1


def test_phone_posteriors_are_distributions(may_features):
    for key in ("phone_post", "phone_post_hi"):
        post = may_features[key]
        assert post.min() > 0
        np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-5)
    spoken = may_features["vad"] > 0
    # during speech the recogniser finds phones, not silence, most of the time
    assert (may_features["phone_post"][spoken].argmax(axis=1) != PHONES.index("SIL")).mean() > 0.6


def test_frame_count_from_duration_and_padding():
    wav, rate = soundfile.read(data_file("audio", "hallo_1.wav"), dtype="float32")  # 44.1 kHz stereo (T, 2)
    f = compute_audio_features(wav, rate)
    assert len(f["mel"]) == int(np.ceil(len(wav) / rate * 25 - 1e-6))
    padded = compute_audio_features(wav, rate, n_frames=len(f["mel"]) + 10)
    assert len(padded["mel"]) == len(f["mel"]) + 10
    assert (padded["energy_db"][-9:] == -100).all() and (padded["vad"][-9:] == 0).all()
    trimmed = compute_audio_features(wav, rate, n_frames=50)
    assert trimmed["mel"].shape == (50, 80) and trimmed["mel_hi"].shape == (200, 80)


def test_alignment_of_frames_and_rows():
    """A 40 ms tone burst filling exactly frame 10 ([0.40, 0.44) s) lands on frame 10 and rows 40..43."""
    t = np.arange(16000) / 16000
    burst = ((t >= 0.4) & (t < 0.44)) * 0.3 * np.sin(2 * np.pi * 200 * t)
    f = compute_audio_features(burst.astype(np.float32), 16000)
    assert f["energy_db"][9] == f["energy_db"][11] == -100 and f["energy_db"][10] > -20
    assert f["energy_hi_db"][39] == f["energy_hi_db"][44] == -100 and (f["energy_hi_db"][40:44] > -20).all()
    floor = np.log(AudioFeatureConfig().log_floor)
    # row j's 25 ms window is centred on (j + 0.5) * 10 ms: rows 38 and 45 miss the burst, rows 39 and 44
    # overlap it by the same 7.5 ms at either end, so they match only if the centring is right
    assert f["mel_hi"][38].max() == f["mel_hi"][45].max() == pytest.approx(floor, abs=1e-3)
    assert f["mel_hi"][39].max() > floor + 5
    np.testing.assert_allclose(f["mel_hi"][39], f["mel_hi"][44], atol=0.05)


def test_pitch_of_a_tone():
    t = np.arange(16000) / 16000
    f = compute_audio_features((0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    assert (f["voicing"][3:-3] == 1).all()
    np.testing.assert_allclose(f["f0_hz"][3:-3], 200, rtol=0.01)


@pytest.mark.parametrize("rate", [48000, 22050])
def test_same_features_at_any_input_rate(may_features, rate):
    wav = decode_audio(data_file("videos", "may_5s.mp4"), rate)
    g = compute_audio_features(wav, rate, 125)
    f = may_features
    loud = f["energy_db"] > -60
    assert np.abs(g["mel"] - f["mel"])[loud].mean() < 0.1
    assert np.median(np.abs(g["energy_db"] - f["energy_db"])) < 0.2
    assert (g["vad"] == f["vad"]).mean() > 0.95
    both = (g["f0_hz"] > 0) & (f["f0_hz"] > 0)
    assert ((g["f0_hz"] > 0) == (f["f0_hz"] > 0)).mean() > 0.9
    assert np.median(np.abs(g["f0_hz"][both] / f["f0_hz"][both] - 1)) < 0.02


def test_energy_and_vad_follow_speech_and_silence():
    speech = decode_audio(data_file("videos", "trump_10s.mp4"), 16000)
    rng = np.random.default_rng(0)
    silence = (1e-4 * rng.standard_normal(2 * 16000)).astype(np.float32)  # quiet room noise, -80 dBFS
    cut = 4 * 16000  # at 4.0 s = frame 100, mid-sentence
    wav = np.concatenate([speech[:cut], silence, speech[cut:]])
    f = compute_audio_features(wav, 16000)
    quiet = slice(101, 149)
    assert (f["vad"][quiet] == 0).all() and f["energy_db"][quiet].max() < -70
    spoken = np.r_[75:100, 150:225]  # trump speaks from 2.8 s on
    assert f["vad"][spoken].mean() > 0.8
    assert np.median(f["energy_db"][spoken]) > -40


@pytest.mark.parametrize("name", ["videos/may_5s.mp4", "videos/trump_10s.mp4"])
def test_pitch_in_speaking_range(name):
    f = compute_audio_features(decode_audio(data_file(*name.split("/")), 16000), 16000)
    voiced = f["f0_hz"][f["f0_hz"] > 0]
    assert len(voiced) > 0.3 * len(f["f0_hz"])
    assert 80 <= np.median(voiced) <= 400
    assert ((voiced >= 80) & (voiced <= 400)).mean() > 0.95
    assert (f["voicing"][f["f0_hz"] > 0] >= 0.5).all() and (f["f0_hz"][f["voicing"] < 0.5] == 0).all()


@pytest.mark.parametrize("seconds", [0.0, 0.01, 1.0, 2.0])
def test_silence_and_very_short_input(seconds):
    f = compute_audio_features(np.zeros(int(seconds * 16000), np.float32), 16000)
    n = max(1, int(np.ceil(seconds * 25)))
    assert f["mel"].shape == (n, 80)
    assert (f["vad"] == 0).all() and (f["f0_hz"] == 0).all()
    assert (f["phone_post"].argmax(axis=1) == PHONES.index("SIL")).all()


def test_one_second_of_speech_and_non_english():
    may = decode_audio(data_file("videos", "may_5s.mp4"), 16000)
    f = compute_audio_features(may[16000:32000], 16000)
    assert f["phone_post"].shape == (25, len(PHONES))
    wav, rate = soundfile.read(data_file("audio", "dreamtalk_german1.wav"), dtype="float32")
    g = compute_audio_features(wav, rate)
    assert g["vad"].mean() > 0.5
    assert len(np.unique(g["phone_post"].argmax(axis=1))) > 15  # German speech still yields many phones
