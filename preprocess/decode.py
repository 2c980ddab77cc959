"""Decode stage: probe a video, choose one stable head crop, stream frames, extract audio.

Probing reads the file's structures with PyAV (:func:`avatar.core.media.probe_media`);
frames and audio are decoded by the ffmpeg binary bundled with imageio-ffmpeg
(never a system ffmpeg, run through :mod:`avatar.core.media`), so any container
and codec that build reads works.

Time base. Frames come out at ``DecodeConfig.fps`` on the container's timeline:
working frame ``k`` covers ``[k / fps, (k + 1) / fps)`` seconds and sample 0 of
:func:`decode_audio` is time 0 of the same timeline, so frames and audio stay in
sync whatever the source frame rate (29.97 and 30 fps sources are resampled by
ffmpeg's ``fps`` filter, which picks the source frame nearest each output time).

Crop. One square :class:`CropBox` in source pixels is used for the whole clip
(a moving crop would make the background move). :func:`choose_crop` documents
how it is chosen. Working-frame pixel coordinates map to source pixels with
:func:`working_to_source` (and back with :func:`source_to_working`).
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from avatar.core import media
from avatar.core.errors import UserError
from avatar.core.progress import progress
from preprocess.config import DecodeConfig


@dataclass
class VideoInfo:
    """What :func:`probe_video` learned about a source video."""

    path: str
    """Path of the source file."""
    video_stream: str
    """ffmpeg specifier of the video stream used, e.g. "0:0"."""
    width: int
    """Displayed frame width in source pixels (after the rotation flag is applied)."""
    height: int
    """Displayed frame height in source pixels."""
    fps: float
    """Source (average) frame rate, frames per second, to 0.01 as ffmpeg shows it (29.97 for 30000/1001)."""
    duration_s: float
    """Time at which the readable video stream ends on the file's timeline (0 = start of the file), seconds."""
    n_frames: int
    """Number of working frames at ``DecodeConfig.fps``; :func:`iter_frames` yields exactly this many."""
    source_frames: int
    """Number of frames (packets) in the source video stream."""
    has_audio: bool
    """Whether the file has an audio stream."""
    audio_sample_rate: int
    """Source audio sample rate, Hz (0 without audio)."""
    audio_channels: int
    """Source audio channel count (0 without audio)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class CropBox:
    """A square region of the source frame, in source pixels.

    Covers columns ``[x0, x0 + side)`` and rows ``[y0, y0 + side)``. It may
    extend past the frame; :func:`iter_frames` then pads with black.
    :func:`choose_crop` never produces such a box (it shifts the square inside
    the frame instead), but boxes read back from a file or made by hand may.
    """

    x0: int
    """Left edge, source pixels (may be negative)."""
    y0: int
    """Top edge, source pixels (may be negative)."""
    side: int
    """Side of the square, source pixels."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- probe

def probe_video(path: str | Path, cfg: DecodeConfig = DecodeConfig()) -> VideoInfo:
    """Read size, frame rate, duration and audio layout of a video, and check it is usable.

    The facts come from :func:`avatar.core.media.probe_media` (PyAV). Raises
    UserError (naming the problem and the fix) for a missing file, a file that
    is not a video or is corrupt or truncated, zero decodable frames, a clip
    shorter than ``cfg.min_duration_s``, or a frame side outside
    ``[cfg.min_side_px, cfg.max_side_px]``.
    """
    probe = media.probe_media(path)
    path, video = Path(path), probe.video
    if video is None:
        raise UserError(f"{path} has no video stream", "give a video file of the person talking")
    if video.packets == 0 or not video.first_frame_decodes:
        raise UserError(f"{path} has no decodable video frames",
                        "the file is damaged or uses a codec this ffmpeg cannot decode; re-export it as H.264 mp4")
    duration = video.end_s if video.end_s is not None else video.packets / video.fps
    header_duration = probe.duration_s
    if probe.ended_early or (header_duration is not None and duration < 0.9 * header_duration - 1.0):
        raise UserError(f"{path} looks truncated: only {duration:.1f} s of video can be read"
                        + (f" of the {header_duration:.1f} s its header promises" if header_duration else ""),
                        "re-download or re-export the complete file")
    if duration < cfg.min_duration_s:
        raise UserError(f"{path} is too short ({duration:.1f} s)",
                        f"give at least {cfg.min_duration_s:.0f} s of video (a few minutes works best)")
    if cfg.max_duration_s is not None:
        duration = min(duration, cfg.max_duration_s)
    width, height = video.display_size  # ffmpeg auto-rotates frames on decode
    if max(width, height) > cfg.max_side_px or min(width, height) < cfg.min_side_px:
        raise UserError(f"{path} has an unsupported resolution {width}x{height}",
                        f"resize it so both sides are between {cfg.min_side_px} and {cfg.max_side_px} pixels")
    audio = probe.audio
    return VideoInfo(path=str(path), video_stream=video.spec, width=width, height=height,
                     fps=round(video.fps, 2), duration_s=duration, n_frames=int(np.floor(duration * cfg.fps + 0.5)),
                     source_frames=video.packets, has_audio=audio is not None,
                     audio_sample_rate=audio.sample_rate if audio else 0,
                     audio_channels=audio.channels if audio else 0)


# --------------------------------------------------------------------------- crop

def choose_crop(path: str | Path, info: VideoInfo, cfg: DecodeConfig = DecodeConfig()) -> CropBox:
    """One stable square around the head for the whole clip.

    MediaPipe face detection (full-range model, so small faces in half-body or
    portrait shots are found) runs on ``cfg.crop_sample_frames`` frames spread
    over the clip; each frame contributes its largest face. The square is
    ``crop_scale`` times the median face-box side, grown by how far the face
    centre moves (10th to 90th percentile), centred horizontally on the middle of
    that motion, with the face-box centre at ``crop_face_centre_y`` of its height.

    Rule for using the whole frame: a square source (sides within 2%) whose
    ideal crop already spans ``whole_frame_min_fill`` of its side is an existing
    talking-head crop (cnn2 and styletalk clips, ER-NeRF 512 crops): it is only
    resized, since re-cropping would just trade resolution for a slightly
    different framing. Otherwise the square is clipped to the shorter frame side
    and shifted to lie inside the frame (never padded).

    Raises UserError when fewer than ``min_face_fraction`` of the sampled frames
    show a face (saying so, with the ffmpeg command that fixes it, when the
    faces are there but the picture is upside down or on its side), or the face
    is smaller than ``min_face_px``.
    """
    frames, scale = _sample_frames(Path(path), info, cfg)
    with _face_detector() as detector:
        boxes, several = _largest_face_boxes(frames, detector)
        if several > cfg.max_several_faces_fraction * len(frames):
            raise UserError(f"{path}: {several} of {len(frames)} sampled frames show more than one face "
                            "of similar size", "use a video of one person alone in the frame "
                            "(crop it, or cut the parts with others)")
        if len(boxes) < cfg.turned_check_fraction * len(frames):
            _refuse_if_turned(Path(path), frames, len(boxes), detector, cfg.turned_check_fraction)
    boxes = boxes / scale
    return crop_from_face_boxes(boxes, len(frames), info.width, info.height, cfg)


def _sample_frames(path: Path, info: VideoInfo, cfg: DecodeConfig) -> tuple[list[np.ndarray], float]:
    """``cfg.crop_sample_frames`` RGB frames evenly spread over the clip, and their downscale factor."""
    scale = min(1.0, cfg.detection_max_side_px / max(info.width, info.height))
    w, h = max(2, round(info.width * scale)), max(2, round(info.height * scale))
    n = cfg.crop_sample_frames
    vf = f"fps={n / info.duration_s:.6f},scale={w}:{h}:flags=area"
    res = media.run_ffmpeg(["-i", path, "-map", info.video_stream, "-vf", vf, "-frames:v", str(n),
                            "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"])
    frame_bytes = w * h * 3
    count = len(res.stdout) // frame_bytes
    if count == 0:
        raise UserError(f"{path}: no frames could be decoded ({media.ffmpeg_reason(res.stderr)})",
                        "re-export the video as H.264 mp4")
    frames = np.frombuffer(res.stdout[:count * frame_bytes], np.uint8).reshape(count, h, w, 3)
    return list(frames), scale


def _face_detector():
    """MediaPipe's full-range face detector, as a context manager; each ``process`` call is one still image."""
    import mediapipe as mp  # heavy import (seconds): only when a crop is chosen

    return mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)


def _largest_face_boxes(frames: list[np.ndarray], detector, desc: str = "face detection") -> tuple[np.ndarray, int]:
    """(M, 4) float64 boxes (x0, y0, x1, y1) in the frames' pixels: the largest face of each
    frame that has one; and the number of frames with a second face at least half as large."""
    boxes = []
    several = 0
    for frame in progress(frames, desc=desc, unit="frame"):
        result = detector.process(frame)
        if not result.detections:
            continue
        h, w = frame.shape[:2]
        rel = [d.location_data.relative_bounding_box for d in result.detections]
        areas = sorted((r.width * r.height for r in rel), reverse=True)
        several += int(len(areas) > 1 and areas[1] >= 0.5 * areas[0])
        b = max(rel, key=lambda r: r.width * r.height)
        boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), several


# Counter-clockwise quarter turns (np.rot90's k) that bring the picture upright ->
# how the video looks, and the ffmpeg filter that turns it upright. ffmpeg's
# transpose=1 turns a quarter clockwise, transpose=2 a quarter counter-clockwise.
# 180 degrees first: a phone held upside down is the commonest case.
_TURNS = {
    2: ("upside down (rotated by 180 degrees)", "transpose=2,transpose=2"),
    1: ("rotated by 90 degrees clockwise (lying on its right side)", "transpose=2"),
    3: ("rotated by 90 degrees counter-clockwise (lying on its left side)", "transpose=1"),
}


def _refuse_if_turned(path: Path, frames: list[np.ndarray], upright_faces: int, detector,
                      min_fraction: float) -> None:
    """Raise UserError naming the turn and its fix when faces show up mainly in turned copies of ``frames``.

    Called only after faces were found in few frames as they are, so a normal
    run costs nothing: the detector is trained on upright faces and finds few or
    none in a picture that is upside down or on its side. A turn counts when it
    shows a face in at least ``min_fraction`` of the frames and in
    twice as many as upright; otherwise this returns and the usual checks decide.
    """
    found = {k: len(_largest_face_boxes([np.ascontiguousarray(np.rot90(f, k)) for f in frames], detector,
                                        desc=f"face detection, turned {90 * k} degrees")[0])
             for k in _TURNS}
    k = max(found, key=found.get)  # ties keep _TURNS order
    if found[k] < max(2 * upright_faces, min_fraction * len(frames)):
        return
    looks, vf = _TURNS[k]
    upright = path.with_name(f"{path.stem}_upright{path.suffix or '.mp4'}")
    raise UserError(f"{path}: the video looks {looks}: a face shows in {found[k]} of {len(frames)} sampled "
                    f"frames once they are turned, in {upright_faces} as they are",
                    f"turn it upright and use that copy: ffmpeg -i {shlex.quote(str(path))} "
                    f'-vf "{vf}" -c:a copy {shlex.quote(str(upright))}')


def crop_from_face_boxes(boxes: np.ndarray, n_sampled: int, width: int, height: int,
                         cfg: DecodeConfig = DecodeConfig()) -> CropBox:
    """The crop rule of :func:`choose_crop`, from (M, 4) face boxes (x0, y0, x1, y1) in source pixels."""
    if len(boxes) < max(1, cfg.min_face_fraction * n_sampled):
        raise UserError(f"no face found in {n_sampled - len(boxes)} of {n_sampled} sampled frames",
                        "use a video where one person's face is visible and facing the camera most of the time")
    face_side = float(np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    if face_side < cfg.min_face_px:
        raise UserError(f"the face is too small ({face_side:.0f} px across, {cfg.min_face_px:.0f} needed)",
                        "film closer to the person or at a higher resolution")
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    lo, hi = np.percentile(centres, 10, axis=0), np.percentile(centres, 90, axis=0)
    mid = 0.5 * (lo + hi)
    short = min(width, height)
    side = cfg.crop_scale * face_side + float(np.max(hi - lo))
    is_square = abs(width - height) <= 0.02 * max(width, height)
    if is_square and side >= cfg.whole_frame_min_fill * short:
        return CropBox(x0=(width - short) // 2, y0=(height - short) // 2, side=short)
    side = int(round(min(side, short)))
    x0 = int(round(mid[0] - 0.5 * side))
    y0 = int(round(mid[1] - cfg.crop_face_centre_y * side))
    return CropBox(x0=int(np.clip(x0, 0, width - side)), y0=int(np.clip(y0, 0, height - side)), side=side)


def working_to_source(points: np.ndarray, crop: CropBox, size: int) -> np.ndarray:
    """Map (..., 2) working-frame pixel coordinates (x, y) to source-frame pixels.

    Exact for continuous coordinates under the project's pixel convention (pixel
    centres at +0.5): working [0, size) maps onto source [x0, x0 + side).
    """
    offset = np.array([crop.x0, crop.y0], dtype=np.float64)
    return np.asarray(points, dtype=np.float64) * (crop.side / size) + offset


def source_to_working(points: np.ndarray, crop: CropBox, size: int) -> np.ndarray:
    """Inverse of :func:`working_to_source`: (..., 2) source pixels to working-frame pixels."""
    offset = np.array([crop.x0, crop.y0], dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) - offset) * (size / crop.side)


# --------------------------------------------------------------------------- frames

def _frame_filter(info: VideoInfo, crop: CropBox, cfg: DecodeConfig) -> str:
    """ffmpeg filter chain: resample to cfg.fps on the container timeline, pad, crop, resize."""
    chain = [f"fps=fps={cfg.fps}:start_time=0"]
    left, top = max(0, -crop.x0), max(0, -crop.y0)
    right = max(0, crop.x0 + crop.side - info.width)
    bottom = max(0, crop.y0 + crop.side - info.height)
    if left or top or right or bottom:
        chain.append(f"pad={info.width + left + right}:{info.height + top + bottom}:{left}:{top}:color=black")
    if (crop.x0, crop.y0, crop.side, crop.side) != (0, 0, info.width, info.height):
        chain.append(f"crop={crop.side}:{crop.side}:{crop.x0 + left}:{crop.y0 + top}")
    if crop.side != cfg.size:
        flags = "area" if crop.side > cfg.size else "bicubic"  # area averages when shrinking, no aliasing
        chain.append(f"scale={cfg.size}:{cfg.size}:flags={flags}")
    return ",".join(chain)


def iter_frames(path: str | Path, info: VideoInfo, crop: CropBox, cfg: DecodeConfig = DecodeConfig(), *,
                desc: str | None = "decode") -> Iterator[np.ndarray]:
    """Stream exactly ``info.n_frames`` working frames, (cfg.size, cfg.size, 3) uint8 RGB, at cfg.fps.

    One ffmpeg process does frame-rate conversion, crop/pad and resize; frames
    are read one at a time so memory stays at one frame whatever the length.
    When the stream ends at most 2 frames early (rounding at its end) the last
    frame is repeated; ending earlier raises UserError. ``info`` must come from
    :func:`probe_video` with the same ``cfg.fps``. ``desc`` labels the progress
    bar (None: no bar).
    """
    cmd = media.ffmpeg_command(["-i", path, "-map", info.video_stream, "-vf", _frame_filter(info, crop, cfg),
                                "-frames:v", str(info.n_frames), "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"])
    frame_bytes = cfg.size * cfg.size * 3
    bar = progress(total=info.n_frames, desc=desc or "", unit="frame") if desc else None
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, bufsize=frame_bytes)
        last, count = None, 0
        try:
            while count < info.n_frames:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    break
                last = np.frombuffer(buf, np.uint8).reshape(cfg.size, cfg.size, 3)
                count += 1
                if bar is not None:
                    bar.update()
                yield last
        finally:
            proc.stdout.close()
            proc.kill()
            proc.wait()
            if bar is not None:
                bar.close()
        missing = info.n_frames - count
        if missing > 2 or last is None:
            err.seek(0)
            reason = media.ffmpeg_reason(err.read())
            raise UserError(f"{path}: decoding stopped after {count} of {info.n_frames} frames ({reason})",
                            "the file is damaged; re-export or re-download it")
        for _ in range(missing):
            yield last


# --------------------------------------------------------------------------- audio

def decode_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray | None:
    """The first audio stream of any media file as (T,) float32 mono in [-1, 1] at ``sample_rate`` Hz.

    Returns None when the file has no audio stream. Sample 0 is time 0 of the
    container timeline (a late-starting stream is padded with silence), so it
    lines up with :func:`iter_frames`. Channels are averaged; resampling is soxr.
    """
    audio = media.probe_media(path).audio
    if audio is None:
        return None
    channels = max(1, audio.channels)
    res = media.run_ffmpeg(["-i", path, "-map", audio.spec, "-vn",
                            "-af", f"aresample={sample_rate}:resampler=soxr:async=1:first_pts=0",
                            "-ac", str(channels), "-f", "f32le", "pipe:1"])
    if res.returncode != 0 and not res.stdout:
        raise UserError(f"{path}: its audio cannot be decoded ({media.ffmpeg_reason(res.stderr)})",
                        "re-export the file with AAC, MP3 or WAV audio")
    samples = np.frombuffer(res.stdout, np.float32)
    samples = samples[: len(samples) // channels * channels].reshape(-1, channels)
    return np.clip(samples.mean(axis=1), -1.0, 1.0).astype(np.float32)
