"""The pieces of `avatar render` on their own: cameras, paste-back blending, local TTS, the mp4 writer."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from avatar.core.errors import UserError
from avatar.talk import cameras


def test_yaw_turns_the_face_toward_image_left_about_a_fixed_pivot():
    pivot = np.array([0.0, 0.0, 0.6])
    nose = np.array([0.0, 0.0, 0.5, 1.0])  # 10 cm in front of the head's centre, towards the camera
    one = lambda v: np.array([v])  # noqa: E731
    yaw = cameras.camera_from_angles(one(20), one(0), one(0), one(0), pivot)[0]
    pitch = cameras.camera_from_angles(one(0), one(20), one(0), one(0), pivot)[0]
    dolly = cameras.camera_from_angles(one(0), one(0), one(0), one(0.1), pivot)[0]
    assert (yaw @ nose)[0] < -0.03 and (pitch @ nose)[1] > 0.03  # image left; lower (seen from above)
    for cam in (yaw, pitch):
        assert np.allclose(cam @ np.r_[pivot, 1.0], np.r_[pivot, 1.0], atol=1e-6)  # the pivot stays put
    assert (dolly @ nose)[2] == pytest.approx(0.4)  # 10 cm closer
    assert np.allclose(yaw[:3, :3] @ yaw[:3, :3].T, np.eye(3), atol=1e-6)


def test_orbit_starts_at_the_training_view_and_swings_both_ways():
    cams = cameras.orbit(100, 25.0, np.array([0, 0, 0.6]), amplitude_deg=10, period_s=4.0)
    assert np.allclose(cams[0], np.eye(4), atol=1e-6)
    yaw = np.degrees(np.arctan2(cams[:, 0, 2], cams[:, 0, 0]))
    assert yaw.max() == pytest.approx(10, abs=0.1) and yaw.min() == pytest.approx(-10, abs=0.1)
    assert cameras.camera_path("fixed", 5, 25.0, np.tile(np.eye(4), (5, 1, 1))) is None
    with pytest.raises(UserError, match="orbit-deg"):
        cameras.orbit(10, 25.0, np.zeros(3), amplitude_deg=120)


def test_a_camera_file_is_interpolated_and_held(tmp_path):
    path = tmp_path / "cam.json"
    path.write_text(json.dumps({"keyframes": [{"time_s": 0}, {"time_s": 1, "yaw_deg": 10, "dolly_m": 0.1}]}))
    cams = cameras.from_file(path, 50, 25.0, np.array([0, 0, 0.6]))
    yaw = np.degrees(np.arctan2(cams[:, 0, 2], cams[:, 0, 0]))
    assert yaw[0] == pytest.approx(0, abs=1e-4) and yaw[12] == pytest.approx(4.8, abs=0.05)
    assert np.allclose(yaw[25:], 10, atol=1e-4)  # held after the last keyframe


@pytest.mark.parametrize("content, words", [
    ("not json", "not readable JSON"),
    ('{"frames": []}', 'no "keyframes"'),
    ('{"keyframes": [{"time_s": 0, "yaw": 3}]}', "unknown keys yaw"),
    ('{"keyframes": [{"yaw_deg": 3}]}', "no time_s"),
    ('{"keyframes": [{"time_s": 1}, {"time_s": 1}]}', "must increase"),
    ('{"keyframes": [{"time_s": 0, "yaw_deg": 100}]}', "beyond"),
    ('{"keyframes": [{"time_s": 0, "yaw_deg": "left"}]}', "not a number"),
])
def test_bad_camera_files_are_refused_by_name(tmp_path, content, words):
    path = tmp_path / "cam.json"
    path.write_text(content)
    with pytest.raises(UserError, match=words):
        cameras.from_file(path, 10, 25.0, np.zeros(3))


def _paste(width, height, crop, size=64, feather=0.1):
    from avatar.talk.paste_back import PasteBack

    subject = types.SimpleNamespace(manifest=types.SimpleNamespace(crop=crop), size=size,
                                    background=lambda: np.full((size, size, 3), 100, np.uint8),
                                    paths=types.SimpleNamespace(root="subject"))
    return PasteBack(subject, width, height, feather=feather, person_margin=0.02)


def test_paste_back_ramps_only_at_crop_edges_inside_the_frame():
    paste = _paste(320, 160, {"x0": 100, "y0": 0, "side": 160})  # touches the top and bottom of the frame
    w = paste._edge_ramp(0.1)
    assert w.shape == (160, 160)
    assert w[80, 80] == 1.0 and w[0, 80] == 1.0 and w[-1, 80] == 1.0  # no ramp at the frame's own edges
    assert w[80, 0] < 0.01 and w[80, -1] < 0.01  # ...but at the crop's sides
    assert np.all(np.diff(w[80, :17]) >= 0)


def test_paste_back_keeps_the_source_outside_and_the_avatar_inside():
    from avatar.talk.frames import Picture

    paste = _paste(320, 160, {"x0": 100, "y0": 0, "side": 160})
    source = np.random.default_rng(0).integers(0, 255, (160, 320, 3), dtype=np.uint8)
    avatar = Picture(np.full((64, 64, 3), 200, np.uint8), np.ones((64, 64), np.float32))
    out = paste.composite(source, avatar, np.zeros((64, 64), np.uint8))
    assert np.array_equal(out[:, :100], source[:, :100]) and np.array_equal(out[:, 260:], source[:, 260:])
    assert np.all(out[:, 150:210] == 200)
    # no avatar and no person in the source frame: its live background shows, not the plate
    empty = Picture(np.full((64, 64, 3), 100, np.uint8), np.zeros((64, 64), np.float32))
    out = paste.composite(source, empty, np.zeros((64, 64), np.uint8))
    assert np.abs(out.astype(int) - source).max() <= 1
    # where the source had a person but the avatar is not: the plate, so no ghost of the real head
    person = np.zeros((64, 64), np.uint8)
    person[20:44, 20:44] = 1
    out = paste.composite(source, empty, person)
    assert np.abs(out[55:105, 155:205].astype(int) - 100).max() <= 1  # rows, cols 50-110 and 150-210 in source pixels


@pytest.mark.skipif(not __import__("importlib").util.find_spec("espeakng_loader"),
                    reason="espeak-ng is not installed (pip install espeakng-loader; `make setup` does)")
def test_local_tts_speaks_languages_and_refuses_unknown_voices(tmp_path):
    import soundfile as sf

    from avatar.talk import tts

    langs = {v.language for v in tts.list_voices()}
    assert {"en-us", "en-gb", "de", "fr-fr", "es", "cmn"} <= langs
    short, rate = tts.synthesise("Hello.")
    long, _ = tts.synthesise("Hello. This sentence is a good deal longer than the first one.")
    assert rate == 22050 and 0.2 < len(short) / rate < len(long) / rate
    assert 0.05 < np.abs(long).max() <= 1.0
    german, _ = tts.synthesise("Guten Abend, meine Damen und Herren.", "de")
    assert len(german) / rate > 1.0
    path = tts.synthesise_to_file("Good evening.", tmp_path / "s.wav")
    data, file_rate = sf.read(path)
    assert file_rate == rate and len(data) > 0.3 * rate
    with pytest.raises(UserError, match="no voice 'xx-none'"):
        tts.synthesise("Hello", "xx-none")
    with pytest.raises(UserError, match="empty"):
        tts.synthesise("   ")


def test_the_video_writer_takes_any_frame_size(tmp_path):
    from avatar.core.media import probe_media
    from avatar.core.video import VideoWriter

    out = tmp_path / "wide.mp4"
    with VideoWriter(out, 320, 180, 25.0, preset="veryfast") as video:
        for k in range(10):
            video.write(np.full((180, 320, 3), 20 * k, np.uint8))
    info = probe_media(out).video
    assert (info.width, info.height, info.packets) == (320, 180, 10)
    with pytest.raises(ValueError, match=r"\(180, 320, 3\)"):
        with VideoWriter(tmp_path / "bad.mp4", 320, 180, 25.0) as video:
            video.write(np.zeros((320, 180, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.mp4"]
