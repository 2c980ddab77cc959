"""Per-frame 3D face landmarks with MediaPipe FaceMesh (478 points).

Uses the legacy ``mp.solutions.face_mesh`` solution of mediapipe 0.10.21 (the
last version whose wheel bundles its models) in video mode with
``refine_landmarks=True``: 468 mesh vertices plus 10 iris points.

Coordinates follow ``avatar/core/camera.py``: MediaPipe's normalised x (y) is a
fraction of the image width (height) measured from the left (top) image edge,
so ``x * W`` is already the continuous pixel coordinate in which pixel centres
sit at +0.5. MediaPipe's z is relative depth (smaller = closer to the camera,
head centre near 0) in the same normalised scale as x, so ``z * W`` puts it in
pixels too; it is a learned estimate, good for a shape prior, not a measurement.

A frame is *valid* when exactly one face is seen. We ask MediaPipe for up to
``max_faces`` (2) faces only so that a second person can be noticed: such frames
are flagged ``valid=False`` but still carry the larger face's points (largest
2D bounding box), since the subject is usually the face closest to the camera.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from avatar.core.progress import progress
from preprocess.config import LandmarkConfig
from preprocess.landmark_ids import NUM_LANDMARKS
from preprocess.subject_data import Landmarks

N_LANDMARKS = NUM_LANDMARKS
"""468 FaceMesh vertices + 2 x 5 iris points (``refine_landmarks=True``)."""


def _face_to_pixels(face, width: int, height: int) -> np.ndarray:
    """MediaPipe NormalizedLandmarkList -> (478, 3) float32 pixels."""
    xyz = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
    return xyz * np.array([width, height, width], dtype=np.float32)


def _box(points: np.ndarray) -> np.ndarray:
    """(4,) [x0, y0, x1, y1] 2D bounding box of (N, 3) points."""
    return np.concatenate([points[:, :2].min(0), points[:, :2].max(0)])


def _box_area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])])
    i = _box_area(inter)
    return i / max(_box_area(a) + _box_area(b) - i, 1e-9)


def distinct_faces(faces: list[np.ndarray], duplicate_iou: float) -> list[np.ndarray]:
    """Faces sorted largest first, dropping any that overlap a larger one by > ``duplicate_iou``.

    In video mode MediaPipe can briefly track the same face twice (a fresh
    detection next to the tracked one); that is not a second person.
    """
    boxes = [_box(f) for f in faces]
    order = sorted(range(len(faces)), key=lambda i: -_box_area(boxes[i]))
    kept: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= duplicate_iou for j in kept):
            kept.append(i)
    return [faces[i] for i in kept]


def make_face_mesh(cfg: LandmarkConfig):
    """A MediaPipe FaceMesh in video (tracking) mode; use it as a context manager."""
    import mediapipe as mp  # heavy import (about 1 s), only when landmarks are needed

    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False, max_num_faces=cfg.max_faces, refine_landmarks=True,
        min_detection_confidence=cfg.min_detection_confidence,
        min_tracking_confidence=cfg.min_tracking_confidence)


def detect_landmarks(frames: Iterable[np.ndarray], n_frames: int,
                     cfg: LandmarkConfig | None = None) -> Landmarks:
    """Run FaceMesh over a clip, frame by frame (frames are streamed, never all held).

    frames:   iterable of (H, W, 3) uint8 RGB frames in temporal order.
    n_frames: number of frames the iterable yields (for allocation and progress).
    Raises ValueError if the iterable yields a different number of frames.
    """
    cfg = cfg or LandmarkConfig()
    points = np.full((n_frames, N_LANDMARKS, 3), np.nan, dtype=np.float32)
    n_faces = np.zeros(n_frames, dtype=np.int8)
    count = 0
    with make_face_mesh(cfg) as mesh:
        for i, frame in enumerate(progress(frames, total=n_frames, desc="landmarks", unit="frame")):
            if i >= n_frames:
                raise ValueError(f"frames yielded more than n_frames={n_frames} frames")
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frame {i}: expected (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
            height, width = frame.shape[:2]
            result = mesh.process(np.ascontiguousarray(frame))
            faces = [_face_to_pixels(f, width, height) for f in (result.multi_face_landmarks or [])]
            faces = distinct_faces(faces, cfg.duplicate_iou)
            n_faces[i] = len(faces)
            if faces:
                points[i] = faces[0]
            count = i + 1
    if count != n_frames:
        raise ValueError(f"frames yielded {count} frames, expected n_frames={n_frames}")
    return Landmarks(points=points, n_faces=n_faces, valid=n_faces == 1)
