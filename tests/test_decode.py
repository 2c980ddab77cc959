"""Decode stage on real clips: probing, head crop, 25 fps frames, audio, and input errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from avatar.errors import UserError
from preprocess.decode import (CropBox, DecodeConfig, VideoInfo, choose_crop, crop_from_face_boxes,
                               decode_audio, iter_frames, probe_video, source_to_working, working_to_source)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHORT = DecodeConfig(min_duration_s=1.0)  # some robustness clips are under the 5 s default


def clip(rel: str) -> Path:
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"test data {path} is absent (it lives in ../shared/data beside the repo)")
    return path


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *args], check=True)


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
    import imageio_ffmpeg
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path),
                          "-vf", f"fps={SHORT.fps}:start_time=0,select=eq(n\\,{round(t * SHORT.fps)})",
                          "-frames:v", "1", "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"],
                         capture_output=True, check=True).stdout
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
    info = probe_video(clip("videos/may_5s.mp4"))
    assert (info.width, info.height, info.fps) == (512, 512, 25.0)
    assert info.duration_s == pytest.approx(5.0, abs=0.05)
    assert info.n_frames == 125 and info.source_frames == 125
    assert (info.has_audio, info.audio_sample_rate, info.audio_channels) == (True, 48000, 2)
    assert info.to_dict()["n_frames"] == 125


def test_talking_head_crop_is_whole_frame_and_frames_match_source():
    path = clip("videos/may_5s.mp4")
    info = probe_video(path)
    crop = choose_crop(path, info)
    assert crop == CropBox(0, 0, 512)
    frames = list(iter_frames(path, info, crop, desc=None))
    assert len(frames) == info.n_frames
    assert frames[0].shape == (512, 512, 3) and frames[0].dtype == np.uint8
    reference = source_frame(path, info, 60 / 25)
    assert np.abs(frames[60].astype(int) - reference).mean() < 1.0


def test_audio_duration_matches_frames():
    path = clip("videos/trump_10s.mp4")
    info = probe_video(path)
    audio = decode_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0 and audio.std() > 0.01
    assert len(audio) / 16000 == pytest.approx(info.n_frames / 25, abs=0.05)


def test_landscape_crop_surrounds_face_and_maps_back_to_source():
    path = clip("multispeaker/headpose_31_1280x720.mp4")
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
    path = clip("multispeaker/latentsync_demo1_1080x1920.mp4")
    info = probe_video(path)
    assert (info.width, info.height) == (1080, 1920)
    crop = choose_crop(path, info)
    assert crop.side < 0.6 * info.width
    assert inside(face_centre(source_frame(path, info, 5.0)), crop)


@pytest.mark.parametrize("name", ["multispeaker/vexpress_aoc_29.97fps.mp4",
                                  "multispeaker/styletalk_feifeili_clip2_short.mp4"])
def test_30fps_sources_come_out_at_25fps(name):
    path = clip(name)
    info = probe_video(path, SHORT)
    assert info.fps in (29.97, 30.0)
    assert abs(info.n_frames - info.duration_s * 25) <= 1
    crop = CropBox(0, 0, min(info.width, info.height))
    cfg = DecodeConfig(size=128, min_duration_s=1.0)
    assert sum(1 for _ in iter_frames(path, info, crop, cfg, desc=None)) == info.n_frames


def test_long_30fps_hevc_frame_count_and_audio_sync(tmp_path):
    path = clip("multispeaker/latentsync_demo3_1080x1920_30fps.mp4")
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
    src = clip("videos/may_5s.mp4")
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
    path = clip("multispeaker/styletalk_Obama_clip1.mp4")
    info = probe_video(path)
    assert not info.has_audio and info.audio_channels == 0
    assert decode_audio(path) is None
    assert choose_crop(path, info) == CropBox(0, 0, 256)


def test_decode_audio_reads_wav_and_resamples():
    path = clip("audio/hallo_1.wav")  # 44.1 kHz stereo
    audio = decode_audio(path, 16000)
    assert len(audio) / 16000 == pytest.approx(7.5, abs=0.1)
    assert np.abs(audio).max() <= 1.0


def test_rotated_phone_video_reports_display_size(tmp_path):
    src = clip("multispeaker/headpose_31_1280x720.mp4")
    stored = tmp_path / "stored_portrait.mp4"
    ffmpeg("-t", "5.2", "-i", str(src), "-an", "-vf", "scale=320:180,transpose=clock",
           "-c:v", "libx264", "-preset", "ultrafast", str(stored))
    flagged = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(stored), "-c", "copy", str(flagged))
    info = probe_video(flagged)
    assert (info.width, info.height) == (320, 180)
    frame = first_frames(flagged, info, CropBox(0, 0, 180), DecodeConfig(size=180), 1)[0]
    assert frame.shape == (180, 180, 3)


def test_crop_past_the_frame_is_padded_black():
    path = clip("videos/may_5s.mp4")
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
    data = clip("videos/trump_10s.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"  # index (moov) at the end: nothing can be opened
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable media file"):
        probe_video(cut)
    faststart = tmp_path / "faststart.mp4"  # index first: opens, but the frames stop early
    ffmpeg("-i", str(clip("videos/trump_10s.mp4")), "-c", "copy", "-movflags", "+faststart", str(faststart))
    cut_fs = tmp_path / "cut_faststart.mp4"
    cut_fs.write_bytes(faststart.read_bytes()[: len(data) * 2 // 3])
    with pytest.raises(UserError, match="truncated"):
        probe_video(cut_fs)


def test_too_short_clip(tmp_path):
    short = tmp_path / "short.mp4"
    ffmpeg("-i", str(clip("videos/may_5s.mp4")), "-t", "2", "-c", "copy", str(short))
    with pytest.raises(UserError, match=r"too short \(2\.\d s\)"):  # copy cuts at a packet boundary
        probe_video(short)


def test_audio_file_is_not_a_video():
    with pytest.raises(UserError, match="no video stream"):
        probe_video(clip("audio/hallo_1.wav"))


def test_tiny_resolution(tmp_path):
    tiny = tmp_path / "tiny.mp4"
    ffmpeg("-i", str(clip("videos/may_5s.mp4")), "-vf", "scale=48:48", "-c:v", "libx264",
           "-preset", "ultrafast", str(tiny))
    with pytest.raises(UserError, match="resolution 48x48"):
        probe_video(tiny)
