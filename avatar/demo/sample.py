"""The demo's synthetic sample: a still portrait made to talk, so ``make demo`` needs no footage.

Nothing here is downloaded and no third-party video ships with the project. The
portrait is scikit-image's ``astronaut`` (NASA's portrait of Eileen Collins, in
the public domain), which its wheel carries. MediaPipe's face mesh is fitted to
it once; then every frame moves those 468 points and warps the image after them:

- the mouth follows the phonemes espeak-ng says (:mod:`avatar.demo.visemes`):
  the jaw and lower lip drop, the lips spread or round, and the gap between the
  lips is painted as a dark mouth with the upper teeth showing;
- the eyes blink every few seconds (the upper lids come down onto the lower);
- the head sways a little (roll, nod, turn, shift), smoothly and at random.

The warp is piecewise linear between the moved points, a ring of points round the
hair that moves with the head, and fixed points further out and on the frame's
border, so the background and the body stay still. It is a cartoon of speech, not
a person: the demo says so. Its only job is to give the real pipeline a clip with
a face, speech and matching mouth motion to fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.interpolate import LinearNDInterpolator

from avatar.core.errors import UserError

FPS = 25.0
"""Frame rate of the sample, frames per second."""
SIZE = 512
"""Side of the square sample video, pixels."""
PORTRAIT_CROP = (60, 0, 380, 320)
"""(x0, y0, x1, y1) of the astronaut image kept: the head, the neck ring and the shoulders, pixels."""

# MediaPipe FaceMesh vertex indices (subject's right first)
_UPPER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415)
_LOWER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324)
_LIP_CORNERS = (61, 291, 78, 308)
_INNER_LIP_RING = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
# per eye: upper-lid contour, the crease above it (moves half as far), lower-lid contour
_EYES = (((246, 161, 160, 159, 158, 157, 173), (247, 30, 29, 27, 28, 56, 190),
          (33, 7, 163, 144, 145, 153, 154, 155, 133)),
         ((466, 388, 387, 386, 385, 384, 398), (467, 260, 259, 257, 258, 286, 414),
          (263, 249, 390, 373, 374, 380, 381, 382, 362)))
_CHIN, _FOREHEAD, _CHEEKS = 152, 10, (234, 454)


@dataclass(frozen=True)
class Face:
    """The portrait and its face mesh."""

    image: np.ndarray
    """(SIZE, SIZE, 3) uint8 RGB."""
    points: np.ndarray
    """(468, 3) float32: x, y in pixels of ``image``, z in pixels (MediaPipe's, larger is further away)."""

    @property
    def height(self) -> float:
        """Forehead top to chin, pixels."""
        return float(self.points[_CHIN, 1] - self.points[_FOREHEAD, 1])

    @property
    def width(self) -> float:
        """Cheek to cheek, pixels."""
        return float(self.points[_CHEEKS[1], 0] - self.points[_CHEEKS[0], 0])


def portrait() -> np.ndarray:
    """The astronaut portrait cropped to the head and shoulders: (SIZE, SIZE, 3) uint8 RGB."""
    try:
        from skimage import data
    except ImportError:
        raise UserError("the demo's sample portrait comes from scikit-image, which is not installed",
                        "run `make setup` (or `pip install scikit-image`)") from None
    x0, y0, x1, y1 = PORTRAIT_CROP
    crop = data.astronaut()[y0:y1, x0:x1]
    return cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def fit_face(image: np.ndarray) -> Face:
    """MediaPipe's face mesh on one still image (raises UserError if it finds no face)."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        result = mesh.process(np.ascontiguousarray(image))
    if not result.multi_face_landmarks:
        raise UserError("MediaPipe found no face in the demo's portrait", "reinstall mediapipe==0.10.21")
    h, w = image.shape[:2]
    lm = result.multi_face_landmarks[0].landmark
    points = np.array([(p.x * w, p.y * h, p.z * w) for p in lm[:468]], np.float32)
    return Face(image, points)


@dataclass(frozen=True)
class Pose:
    """One frame's motion of the sample."""

    open: float = 0.0
    """Mouth opening, 0 (lips closed) to 1 (wide open)."""
    spread: float = 0.0
    """Lips spread (to 1) or rounded (to -1)."""
    blink: float = 0.0
    """Eyelids, 0 open to 1 closed."""
    roll_deg: float = 0.0
    """Head tilt in the image plane, degrees."""
    yaw: float = 0.0
    """Head turn, radians (small)."""
    pitch: float = 0.0
    """Head nod, radians (small)."""
    shift: tuple[float, float] = (0.0, 0.0)
    """Head shift, pixels."""


def move_points(face: Face, pose: Pose) -> np.ndarray:
    """Where the face's points go in a frame: (468, 2) float32 pixels."""
    src = face.points
    out = src[:, :2].copy()
    fh = face.height
    # -- mouth: the gap between the inner lips goes from what the portrait shows to what the phoneme wants
    gap0 = float(src[14, 1] - src[13, 1])
    gap = pose.open * 0.13 * fh
    centre = src[list(_LIP_CORNERS), :2].mean(0)
    half_width = 0.5 * float(src[291, 0] - src[61, 0])
    across = np.clip(np.abs(src[:, 0] - centre[0]) / half_width, 0.0, 1.5)
    taper = 1.0 - 0.6 * np.minimum(across, 1.0) ** 2  # the lips open less towards the corners
    lower = np.zeros(len(src), bool)
    lower[list(_LOWER_LIP)] = True
    upper = np.zeros(len(src), bool)
    upper[list(_UPPER_LIP)] = True
    drop = 0.8 * (gap - gap0)
    out[lower, 1] += drop * taper[lower]
    out[upper, 1] -= 0.2 * (gap - gap0) * taper[upper]
    # the chin and jaw below the mouth follow the lower lip, fading out towards the jaw's angles
    below = np.clip((src[:, 1] - centre[1] - 0.03 * fh) / (0.06 * fh), 0.0, 1.0)
    side = np.clip(1.0 - (np.abs(src[:, 0] - centre[0]) - 0.25 * face.width) / (0.3 * face.width), 0.0, 1.0)
    jaw = below * side * ~lower * ~upper
    out[:, 1] += max(drop, 0.5 * drop) * jaw
    lips = lower | upper
    lips[list(_LIP_CORNERS)] = True
    scale = 1.0 + (0.08 if pose.spread > 0 else 0.2) * pose.spread
    out[lips, 0] = centre[0] + (src[lips, 0] - centre[0]) * scale
    # -- eyes: the upper lid (and half as much the crease above it) comes down onto the lower lid
    for lid, crease, low in _EYES:
        low_xy = src[list(low), :2]
        order = np.argsort(low_xy[:, 0])
        for ids, amount in ((lid, 0.95), (crease, 0.45)):
            ids = list(ids)
            target = np.interp(src[ids, 0], low_xy[order, 0], low_xy[order, 1])
            out[ids, 1] += pose.blink * amount * (target - src[ids, 1])
    return _move_head(out, src[:, 2], face, pose)


def _move_head(xy: np.ndarray, z: np.ndarray, face: Face, pose: Pose) -> np.ndarray:
    """The head's rigid motion on image points (N, 2): turn and nod by depth, then tilt and shift."""
    out = xy.copy()
    out[:, 0] += pose.yaw * (z - z.mean())
    out[:, 1] += pose.pitch * (z - z.mean())
    pivot = np.array([face.points[_CHIN, 0], face.points[_CHIN, 1] + 0.2 * face.height], np.float32)
    a = np.deg2rad(pose.roll_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    return ((out - pivot) @ rot.T + pivot + np.asarray(pose.shift, np.float32)).astype(np.float32)


def _head_ring(face: Face, scale: float, n: int = 24) -> np.ndarray:
    """(n, 2) points on an ellipse round the head (the hair's outline at scale 1), pixels."""
    centre = np.array([face.points[:, 0].mean(), face.points[_FOREHEAD, 1] + 0.25 * face.height])
    radii = np.array([0.75 * face.width, 0.8 * face.height]) * scale
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return (centre + radii * np.stack([np.cos(a), np.sin(a)], 1)).astype(np.float32)


def render_frame(face: Face, pose: Pose) -> np.ndarray:
    """One frame of the sample: (SIZE, SIZE, 3) uint8 RGB."""
    h, w = face.image.shape[:2]
    moved = move_points(face, pose)
    hair = _head_ring(face, 1.0)
    hair_moved = _move_head(hair, np.full(len(hair), face.points[:, 2].mean(), np.float32), face, pose)
    fixed = np.concatenate([_head_ring(face, 1.6, 32), _border(w, h)])
    src = np.concatenate([face.points[:, :2], hair, fixed])
    dst = np.concatenate([moved, hair_moved, fixed])
    # backward warp: at each output pixel, where in the portrait to read (the interpolated displacement)
    step = 2
    gy, gx = np.mgrid[0:h:step, 0:w:step].astype(np.float32)
    field = LinearNDInterpolator(dst, src - dst, fill_value=0.0)(gx, gy).astype(np.float32)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frame = cv2.remap(face.image, xx + field[..., 0], yy + field[..., 1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT)
    return _paint_mouth(frame, face, moved)


def _paint_mouth(frame: np.ndarray, face: Face, moved: np.ndarray) -> np.ndarray:
    """Darken the gap between the inner lips below the upper teeth, feathered."""
    ring = moved[list(_INNER_LIP_RING)]
    gap = float(moved[14, 1] - moved[13, 1])
    if gap < 1.0:
        return frame
    mask = np.zeros(frame.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(ring * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
    # the upper teeth: a band under the upper lip as tall as the teeth the portrait shows
    teeth = min(0.6 * gap, float(face.points[14, 1] - face.points[13, 1]))
    yy = np.arange(frame.shape[0], dtype=np.float32)[:, None]
    top = np.interp(np.arange(frame.shape[1]), *_sorted_x(moved[[78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]]))
    mask *= np.clip((yy - top[None, :] - teeth) / 2.0, 0.0, 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.8)[..., None]
    cavity = np.array([52, 18, 22], np.float32)
    return (frame * (1.0 - mask) + cavity * mask).astype(np.uint8)


def _sorted_x(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]


def _border(w: int, h: int, n: int = 8) -> np.ndarray:
    t = np.linspace(0, 1, n, endpoint=False)
    edges = [np.stack([t * w, np.zeros(n)], 1), np.stack([np.full(n, w), t * h], 1),
             np.stack([w - t * w, np.full(n, h)], 1), np.stack([np.zeros(n), h - t * h], 1)]
    return np.concatenate(edges).astype(np.float32)


def motion_track(mouth: np.ndarray, seed: int = 0) -> list[Pose]:
    """Per-frame poses: the mouth track (F, 2) from :func:`avatar.demo.visemes.mouth_track`, with blinks
    every 2-5 s and a slow random head sway, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    n = len(mouth)
    t = np.arange(n) / FPS
    blink = np.zeros(n, np.float32)
    at = rng.uniform(0.6, 1.5)
    while at < t[-1] if n else False:
        blink = np.maximum(blink, np.clip(1.0 - np.abs(t - at) / 0.09, 0.0, 1.0))
        at += rng.uniform(2.0, 5.0)

    def sway(amplitude: float) -> np.ndarray:
        # a sum of slow sines with random phases: smooth, never periodic within a clip
        freqs = rng.uniform(0.1, 0.5, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        return amplitude * np.sin(2 * np.pi * freqs[None] * t[:, None] + phases[None]).mean(1)

    roll, yaw, pitch = sway(3.0), sway(0.08), sway(0.05)
    # a small nod with the syllables: the head dips as the jaw opens
    pitch = pitch + 0.02 * np.convolve(mouth[:, 0], np.ones(5) / 5, mode="same")
    sx, sy = sway(4.0), sway(2.0)
    return [Pose(float(mouth[k, 0]), float(mouth[k, 1]), float(blink[k]), float(roll[k]), float(yaw[k]),
                 float(pitch[k]), (float(sx[k]), float(sy[k]))) for k in range(n)]


def make_sample(out: Path, text: str, voice: str = "en-us", seed: int = 0) -> Path:
    """Write the talking sample to ``out`` (.mp4, H.264 + AAC at FPS): the portrait saying ``text``."""
    import soundfile as sf

    from avatar.core.files import atomic_path
    from avatar.core.progress import progress
    from avatar.core.video import VideoWriter
    from avatar.demo.visemes import mouth_track
    from avatar.talk.tts import speak

    speech = speak(text, voice)
    duration = len(speech.samples) / speech.rate
    poses = motion_track(mouth_track(speech.phonemes, duration, FPS), seed)
    face = fit_face(portrait())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.with_suffix(".wav")) as wav:
        sf.write(wav, speech.samples, speech.rate, subtype="PCM_16", format="WAV")
    with VideoWriter(out, SIZE, SIZE, FPS, audio=out.with_suffix(".wav"), preset="veryfast") as video:
        for pose in progress(poses, total=len(poses), desc="sample", unit="frame"):
            video.write(render_frame(face, pose))
    out.with_suffix(".wav").unlink()
    return out
