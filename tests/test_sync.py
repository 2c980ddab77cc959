"""The recording's audio-video offset (avatar.motion.sync), measured on real speech and a real tracked mouth."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.motion.sync import MIN_CORRELATION, measure_offset, shift_features, shift_frames
from preprocess.subject import Subject


@pytest.fixture(scope="module")
def may(may_subject):
    s = Subject(may_subject)
    return s.audio_features, s.tracking.mouth_open, s.fps


def test_may_5s_sound_is_late_by_about_three_frames(may):
    """Measured on 7 Dec: the phones' mouth guess fits may_5s's tracked mouth best 3 frames (120 ms) later
    (correlation 0.40, -0.01 unshifted); cnn2 and most multispeaker clips peak at 0-1."""
    feats, mouth, fps = may
    off = measure_offset(feats.phone_post, mouth, fps)
    assert off.frames in (2, 3, 4), off
    assert off.correlation > MIN_CORRELATION and off.correlation > off.at_zero + 0.2, off


@pytest.mark.parametrize("extra", [-3, 2])
def test_delaying_the_sound_moves_the_measured_offset_by_as_much(may, extra):
    feats, mouth, fps = may
    base = measure_offset(feats.phone_post, mouth, fps).frames
    delayed = shift_frames(feats.phone_post, -extra)  # the sound `extra` frames later than recorded
    assert measure_offset(delayed, mouth, fps).frames == base + extra


def test_no_clear_answer_gives_no_offset(may):
    feats, mouth, fps = may
    rng = np.random.default_rng(0)
    off = measure_offset(feats.phone_post, rng.permutation(mouth), fps)  # a mouth unrelated to the sound
    assert off.frames == 0 and off.correlation < MIN_CORRELATION
    short = measure_offset(feats.phone_post[:30], mouth[:30], fps)  # too little to tell
    assert short.frames == 0 and np.isnan(short.correlation)


def test_shift_features_moves_frame_and_high_rate_rows_together(may):
    feats = may[0]
    r = len(feats.mel_hi) // len(feats.mel)
    moved = shift_features(feats, 2)
    assert np.array_equal(moved.mel[10], feats.mel[12])
    assert np.array_equal(moved.mel_hi[10 * r], feats.mel_hi[12 * r])
    assert np.array_equal(moved.vad[-1], feats.vad[-1])  # the end is held
    back = shift_features(feats, -1)
    assert np.array_equal(back.mel[5], feats.mel[4]) and np.array_equal(back.phone_post_hi[5 * r], feats.phone_post_hi[4 * r])
    assert shift_features(feats, 0) is feats


def test_shift_frames_fills_the_ends():
    x = np.arange(5)
    assert shift_frames(x, 2).tolist() == [2, 3, 4, 4, 4]
    assert shift_frames(x, -2, fill="zero").tolist() == [0, 0, 0, 1, 2]
    assert shift_frames(np.ones(4, bool), 1, fill="zero").tolist() == [True, True, True, False]
