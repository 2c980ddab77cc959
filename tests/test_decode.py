"""Decode stage on real clips: probing, head crop, 25 fps frames, audio, and input errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from avatar.core import media
from avatar.core.errors import UserError
from preprocess.decode import (CropBox, DecodeConfig, VideoInfo, choose_crop, crop_from_face_boxes,
                               decode_audio, iter_frames, probe_video, source_to_working, working_to_source)
from tests.conftest import data_file

SHORT = DecodeConfig(min_duration_s=1.0)  # some robustness clips are under the 5 s default


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(media.ffmpeg_command(["-y", *args]), check=True)


def first_frames(path, info: VideoInfo, crop: CropBox, cfg: DecodeConfig, n: int) -> list[np.ndarray]:
    """The first n working frames, closing the ffmpeg pipe early."""
    frames = []
    gen = iter_frames(path, info, crop, cfg, desc=None)
    for frame in gen:
        frames.append(frame)
        if len(frames) == n:
            break
    gen.close()
    return frames


def source_frame(path: Path, info: VideoInfo, t: float) -> np.ndarray:
    """The source frame shown at time t, full resolution, (H, W, 3) uint8 RGB."""
    raw = subprocess.run(media.ffmpeg_command(
        ["-i", path, "-vf", f"fps={SHORT.fps}:start_time=0,select=eq(n\\,{round(t * SHORT.fps)})",
         "-frames:v", "1", "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"]), capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(info.height, info.width, 3)


def face_centre(frame: np.ndarray) -> np.ndarray:
    """(2,) centre, pixels, of the largest face MediaPipe's full-range detector finds."""
    import mediapipe as mp
    with mp.solutions.face_detection.FaceDetection(model_selection=1) as detector:
        dets = detector.process(frame).detections
    assert dets, "no face detected"
    b = max((d.location_data.relative_bounding_box for d in dets), key=lambda r: r.width * r.height)
    h, w = frame.shape[:2]
    return np.array([(b.xmin + b.width / 2) * w, (b.ymin + b.height / 2) * h])


def inside(point: np.ndarray, crop: CropBox) -> bool:
    return bool(crop.x0 <= point[0] < crop.x0 + crop.side and crop.y0 <= point[1] < crop.y0 + crop.side)


def test_probe_reads_size_rate_duration_and_audio():
    info = probe_video(data_file("videos/may_5s.mp4"))
    assert (info.width, info.height, info.fps) == (512, 512, 25.0)
    assert info.duration_s == pytest.approx(5.0, abs=0.05)
    assert info.n_frames == 125 and info.source_frames == 125
    assert (info.has_audio, info.audio_sample_rate, info.audio_channels) == (True, 48000, 2)
    assert info.to_dict()["n_frames"] == 125


def test_talking_head_crop_is_whole_frame_and_frames_match_source():
    path = data_file("videos/may_5s.mp4")
    info = probe_video(path)
    crop = choose_crop(path, info)
    assert crop == CropBox(0, 0, 512)
    frames = list(iter_frames(path, info, crop, desc=None))
    assert len(frames) == info.n_frames
    assert frames[0].shape == (512, 512, 3) and frames[0].dtype == np.uint8
    reference = source_frame(path, info, 60 / 25)
    assert np.abs(frames[60].astype(int) - reference).mean() < 1.0


def test_audio_duration_matches_frames():
    path = data_file("videos/trump_10s.mp4")
    info = probe_video(path)
    audio = decode_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0 and audio.std() > 0.01
    assert len(audio) / 16000 == pytest.approx(info.n_frames / 25, abs=0.05)


def test_landscape_crop_surrounds_face_and_maps_back_to_source():
    path = data_file("multispeaker/headpose_31_1280x720.mp4")
    info = probe_video(path)
    crop = choose_crop(path, info)
    assert crop.side < info.height + 1 and crop.side < info.width
    assert 0 <= crop.x0 and crop.x0 + crop.side <= info.width and 0 <= crop.y0 and crop.y0 + crop.side <= info.height
    k = 50
    src_centre = face_centre(source_frame(path, info, k / 25))
    assert inside(src_centre, crop)
    frames = first_frames(path, info, crop, DecodeConfig(), k + 1)
    assert frames[k].shape == (512, 512, 3)
    # the face found in the working frame, pasted back, lands where it is in the source frame
    back = working_to_source(face_centre(frames[k]), crop, 512)
    assert np.linalg.norm(back - src_centre) < 0.03 * crop.side


def test_portrait_small_face_gets_small_crop():
    path = data_file("multispeaker/latentsync_demo1_1080x1920.mp4")
    info = probe_video(path)
    assert (info.width, info.height) == (1080, 1920)
    crop = choose_crop(path, info)
    assert crop.side < 0.6 * info.width
    assert inside(face_centre(source_frame(path, info, 5.0)), crop)


@pytest.mark.parametrize("name", ["multispeaker/vexpress_aoc_29.97fps.mp4",
                                  "multispeaker/styletalk_feifeili_clip2_short.mp4"])
def test_30fps_sources_come_out_at_25fps(name):
    path = data_file(name)
    info = probe_video(path, SHORT)
    assert info.fps in (29.97, 30.0)
    assert abs(info.n_frames - info.duration_s * 25) <= 1
    crop = CropBox(0, 0, min(info.width, info.height))
    cfg = DecodeConfig(size=128, min_duration_s=1.0)
    assert sum(1 for _ in iter_frames(path, info, crop, cfg, desc=None)) == info.n_frames


def test_long_30fps_hevc_frame_count_and_audio_sync(tmp_path):
    path = data_file("multispeaker/latentsync_demo3_1080x1920_30fps.mp4")
    full = probe_video(path)
    assert full.n_frames == 500  # 600 frames at 30 fps = 20 s
    assert len(decode_audio(path)) / 16000 == pytest.approx(full.n_frames / 25, abs=0.04)
    head = tmp_path / "head.mp4"
    ffmpeg("-i", str(path), "-t", "6", "-c", "copy", str(head))  # decode only 6 s of it
    info = probe_video(head)
    assert info.duration_s == pytest.approx(6.0, abs=0.25)  # the copy cuts at a packet boundary
    assert abs(info.n_frames - info.duration_s * 25) <= 1
    cfg = DecodeConfig(size=64)
    assert sum(1 for _ in iter_frames(head, info, CropBox(0, 420, 1080), cfg, desc=None)) == info.n_frames


def test_late_video_stream_stays_in_sync_with_audio(tmp_path):
    src = data_file("videos/may_5s.mp4")
    late = tmp_path / "late.mp4"  # video starts 0.5 s (12.5 frames) after the audio
    ffmpeg("-itsoffset", "0.5", "-i", str(src), "-i", str(src), "-map", "0:v", "-map", "1:a", "-c", "copy", str(late))
    info = probe_video(late)
    assert info.n_frames == 138  # 5.5 s of video on the file timeline
    frames = list(iter_frames(late, info, CropBox(0, 0, 512), DecodeConfig(size=128), desc=None))
    original = first_frames(src, probe_video(src), CropBox(0, 0, 512), DecodeConfig(size=128), 60)
    assert len(frames) == info.n_frames
    # source frame 50 is shown at 0.5 s + 2.0 s = working frame 62 or 63 (12.5-frame shift)
    diffs = [np.abs(frames[i].astype(int) - original[50]).mean() for i in (61, 62, 63, 64)]
    assert min(diffs[1], diffs[2]) < 1.0 and min(diffs[1], diffs[2]) < min(diffs[0], diffs[3])
    assert len(decode_audio(late)) / 16000 == pytest.approx(5.0, abs=0.05)


def test_video_without_audio_track():
    path = data_file("multispeaker/styletalk_Obama_clip1.mp4")
    info = probe_video(path)
    assert not info.has_audio and info.audio_channels == 0
    assert decode_audio(path) is None
    assert choose_crop(path, info) == CropBox(0, 0, 256)


def test_decode_audio_reads_wav_and_resamples():
    path = data_file("audio/hallo_1.wav")  # 44.1 kHz stereo
    audio = decode_audio(path, 16000)
    assert len(audio) / 16000 == pytest.approx(7.5, abs=0.1)
    assert np.abs(audio).max() <= 1.0


def rotated_phone_clip(tmp_path: Path) -> Path:
    """A 5.2 s clip stored 180x320 (the landscape picture turned clockwise) with a display
    matrix that turns it 90 degrees counter-clockwise, so players show it 320x180, upright."""
    src = data_file("multispeaker/headpose_31_1280x720.mp4")
    stored = tmp_path / "stored_portrait.mp4"
    ffmpeg("-t", "5.2", "-i", str(src), "-an", "-vf", "scale=320:180,transpose=clock",
           "-c:v", "libx264", "-preset", "ultrafast", str(stored))
    flagged = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(stored), "-c", "copy", str(flagged))
    return flagged


def test_rotated_phone_video_reports_display_size(tmp_path):
    flagged = rotated_phone_clip(tmp_path)
    info = probe_video(flagged)
    assert (info.width, info.height) == (320, 180)
    frame = first_frames(flagged, info, CropBox(0, 0, 180), DecodeConfig(size=180), 1)[0]
    assert frame.shape == (180, 180, 3)


def test_crop_past_the_frame_is_padded_black():
    path = data_file("videos/may_5s.mp4")
    info = probe_video(path)
    frame = first_frames(path, info, CropBox(-128, 0, 512), DecodeConfig(size=256), 1)[0]
    assert frame[:, :60].max() == 0  # the 128 padded source columns are 64 working columns
    assert frame[:, 70:].mean() > 20


def test_working_and_source_pixels_round_trip():
    crop = CropBox(x0=100, y0=-20, side=640)
    corners = np.array([[0.0, 0.0], [512.0, 512.0]])
    assert np.allclose(working_to_source(corners, crop, 512), [[100, -20], [740, 620]])
    pts = np.random.default_rng(0).uniform(0, 512, size=(5, 2))
    assert np.allclose(source_to_working(working_to_source(pts, crop, 512), crop, 512), pts)


def test_crop_rule_on_face_boxes():
    boxes = np.array([[500.0, 300.0, 700.0, 500.0]] * 10)  # face centred at (600, 400), 200 px
    crop = crop_from_face_boxes(boxes, 10, 1920, 1080)
    assert crop.side == 400 and crop.x0 == 400 and crop.y0 == 400 - round(0.55 * 400)
    with pytest.raises(UserError, match="no face"):
        crop_from_face_boxes(boxes[:1], 30, 1920, 1080)
    with pytest.raises(UserError, match="too small"):
        crop_from_face_boxes(boxes / 10, 10, 1920, 1080)


# ------------------------------------------------------------------ bad input

def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        probe_video(tmp_path / "nope.mp4")


def test_text_file_named_mp4(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(UserError, match="not a readable media file"):
        probe_video(fake)


def test_truncated_mp4(tmp_path):
    data = data_file("videos/trump_10s.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"  # index (moov) at the end: nothing can be opened
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable media file"):
        probe_video(cut)
    faststart = tmp_path / "faststart.mp4"  # index first: opens, but the frames stop early
    ffmpeg("-i", str(data_file("videos/trump_10s.mp4")), "-c", "copy", "-movflags", "+faststart", str(faststart))
    cut_fs = tmp_path / "cut_faststart.mp4"
    cut_fs.write_bytes(faststart.read_bytes()[: len(data) * 2 // 3])
    with pytest.raises(UserError, match="truncated"):
        probe_video(cut_fs)


def test_too_short_clip(tmp_path):
    short = tmp_path / "short.mp4"
    ffmpeg("-i", str(data_file("videos/may_5s.mp4")), "-t", "2", "-c", "copy", str(short))
    with pytest.raises(UserError, match=r"too short \(2\.\d s\)"):  # copy cuts at a packet boundary
        probe_video(short)


def test_audio_file_is_not_a_video():
    with pytest.raises(UserError, match="no video stream"):
        probe_video(data_file("audio/hallo_1.wav"))


def test_tiny_resolution(tmp_path):
    tiny = tmp_path / "tiny.mp4"
    ffmpeg("-i", str(data_file("videos/may_5s.mp4")), "-vf", "scale=48:48", "-c:v", "libx264",
           "-preset", "ultrafast", str(tiny))
    with pytest.raises(UserError, match="resolution 48x48"):
        probe_video(tiny)


# ------------------------------------------------------------------ structured probing (avatar.core.media)

def test_media_probe_of_real_clips():
    may = media.probe_media(data_file("videos/may_5s.mp4"))
    v = may.video
    assert (v.index, v.spec, v.width, v.height, v.fps, v.rotation_deg) == (0, "0:0", 512, 512, 25.0, 0.0)
    assert v.packets == 125 and v.end_s == pytest.approx(5.0, abs=1e-6) and v.first_frame_decodes
    assert may.duration_s == pytest.approx(5.0, abs=0.01) and may.start_s == 0.0 and not may.ended_early
    assert (may.audio.index, may.audio.sample_rate, may.audio.channels) == (1, 48000, 2)
    hevc = media.probe_media(data_file("multispeaker/latentsync_demo3_1080x1920_30fps.mp4")).video
    assert (hevc.width, hevc.height, hevc.fps, hevc.packets) == (1080, 1920, 30.0, 600)
    assert hevc.end_s == pytest.approx(20.0, abs=1e-6)
    ntsc = media.probe_media(data_file("multispeaker/vexpress_aoc_29.97fps.mp4")).video
    assert ntsc.fps == pytest.approx(30000 / 1001, abs=1e-3)  # exact here; VideoInfo shows 29.97


def test_media_probe_reads_rotation_and_truncation(tmp_path):
    flagged = rotated_phone_clip(tmp_path)
    v = media.probe_media(flagged).video
    assert (v.width, v.height, v.rotation_deg) == (180, 320, 90.0)  # stored portrait, turned ccw for display
    assert v.display_size == (320, 180)
    with av.open(str(flagged)) as c:  # PyAV without VideoFrame.rotation: the display matrix gives the same
        frame = next(c.decode(video=0))
    assert media._rotation(type("OldFrame", (), {"side_data": frame.side_data})()) == pytest.approx(90.0)
    data = data_file("videos/trump_10s.mp4")
    faststart = tmp_path / "faststart.mp4"
    ffmpeg("-i", data, "-c", "copy", "-movflags", "+faststart", faststart)
    assert not media.probe_media(faststart).ended_early
    cut = tmp_path / "cut.mp4"  # the index promises 10 s; the sample data stops after about 6
    cut.write_bytes(faststart.read_bytes()[: data.stat().st_size * 2 // 3])
    probe = media.probe_media(cut)
    assert probe.ended_early and probe.duration_s == pytest.approx(10.0, abs=0.01)
    assert media.probe_media(cut).ended_early  # again: libav's log repeats itself, PyAV must not drop it
    assert 5.0 < probe.video.end_s < 7.0 and probe.video.packets < 250


def test_probe_reads_streams_not_ffmpeg_wording(tmp_path):
    """Audio first in a 3.0 layout, a title that reads like a video stream line, video second,
    stereo audio third, cover art: the regex parsing of `ffmpeg -i` got the channels (and,
    through the title, the video stream) wrong; the structured probe does not."""
    src = data_file("videos/may_5s.mp4")
    cover = tmp_path / "cover.png"
    ffmpeg("-i", src, "-frames:v", "1", "-vf", "scale=64:64", cover)
    mixed = tmp_path / "mixed.mp4"
    ffmpeg("-i", src, "-i", cover, "-map", "0:a", "-map", "0:v", "-map", "0:a", "-map", "1:v",
           "-c:v:0", "copy", "-c:v:1", "png", "-disposition:v:1", "attached_pic",
           "-filter:a:0", "aresample=22050,aformat=channel_layouts=3.0", "-c:a:0", "aac", "-c:a:1", "copy",
           "-metadata:s:a:0", "title=Stream #0:9: Video: h264, 16x16, 1 fps", mixed)
    with av.open(str(mixed)) as c:  # the file really has the cover art as a second video stream
        assert sum(bool(s.disposition & av.stream.Disposition.attached_pic) for s in c.streams.video) == 1
    info = probe_video(mixed)
    assert (info.video_stream, info.width, info.height, info.fps) == ("0:1", 512, 512, 25.0)
    assert info.n_frames == 125 and info.source_frames == 125
    assert (info.audio_sample_rate, info.audio_channels) == (22050, 3)
    assert len(decode_audio(mixed)) / 16000 == pytest.approx(5.0, abs=0.05)


def test_media_module_imports_no_heavy_library():
    code = "import sys, avatar.core.media; print([m for m in ('av', 'imageio_ffmpeg') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


# ------------------------------------------------------------------ turned videos

def test_upside_down_video_is_refused_naming_the_turn(tmp_path):
    upside = tmp_path / "upside.mp4"
    ffmpeg("-i", data_file("videos/may_5s.mp4"), "-t", "6", "-vf", "vflip,hflip",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", upside)
    with pytest.raises(UserError, match="upside down") as err:
        choose_crop(upside, probe_video(upside))
    assert "180 degrees" in err.value.problem
    assert 'ffmpeg -i' in err.value.fix and '-vf "transpose=2,transpose=2"' in err.value.fix


def test_sideways_video_is_refused_and_the_given_fix_turns_it_upright(tmp_path):
    sideways = tmp_path / "sideways.mp4"  # the picture turned a quarter clockwise
    ffmpeg("-i", data_file("videos/may_5s.mp4"), "-t", "6", "-vf", "transpose=clock",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", sideways)
    with pytest.raises(UserError, match="rotated by 90 degrees clockwise") as err:
        choose_crop(sideways, probe_video(sideways))
    vf = re.search(r'-vf "([^"]+)"', err.value.fix).group(1)
    assert vf == "transpose=2"
    fixed = tmp_path / "fixed.mp4"  # applying the suggested filter gives back the upright talking head
    ffmpeg("-i", sideways, "-vf", vf, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", fixed)
    assert choose_crop(fixed, probe_video(fixed)) == CropBox(0, 0, 512)
