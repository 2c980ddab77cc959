"""A person-specific linear face model learned from the subject's own landmarks.

No 3D morphable model ships offline, so we lift MediaPipe's per-frame 3D
landmarks (x, y in pixels, z a learned relative depth in the same scale) into a
model of this one face:

1. Generalised Procrustes: every valid frame is aligned to a reference by a
   similarity transform (scale, rotation, translation) estimated on the *rigid*
   landmarks only (forehead, nose bridge, temples, cheekbones), so that head
   motion and distance changes are removed but mouth, eyes and brows keep their
   motion. The per-vertex median of the aligned frames is the mean shape.
2. Metric scale: MediaPipe's units are pixels, so the mean shape is scaled so
   its outer eye corners are ``eye_corner_distance_m`` apart (adult mean
   exocanthion distance, about 0.09 m; varies about +-6 % between adults, which
   becomes the same relative error in tracked depth, not in reprojection).
3. Head frame (``avatar/core/camera.py``): x from the subject's right to left face
   side (image right when frontal), y from forehead to chin, z = x cross y
   (away from the camera), origin ``head_centre_depth_m`` behind the nose bridge.
4. Expression basis: principal components of the aligned shapes' deviations from
   the mean shape; each basis vector is scaled by its component's RMS over the
   clip, so one coefficient unit is a typical (1-sigma) deformation and an L2
   prior on coefficients is a unit Gaussian prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preprocess.landmark_ids import (CHIN, EYE_CORNERS, EYE_LIDS, FOREHEAD_TOP, INNER_LIPS, LEFT_EYE_OUTER,
                                     MOUTH_CORNERS, NOSE_BRIDGE, RIGHT_EYE_OUTER, SYMMETRIC_PAIRS)


@dataclass
class FaceModel:
    """Linear face model: verts = mean + expr @ basis, in the head frame, metres.

    mean:  (478, 3) float32 metres.
    basis: (K, 478, 3) float32 metres per unit coefficient (unit = 1 RMS over the clip).
    """

    mean: np.ndarray
    basis: np.ndarray

    @property
    def n_expr(self) -> int:
        return len(self.basis)

    def verts(self, expr: np.ndarray) -> np.ndarray:
        """(F, K) coefficients -> (F, 478, 3) float32 head-frame vertices, metres."""
        flat = expr.astype(np.float32) @ self.basis.reshape(self.n_expr, -1)
        return self.mean + flat.reshape(len(expr), *self.mean.shape)


def similarity_align(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity transforms taking each ``src[f]`` onto ``dst`` (Umeyama).

    src: (F, N, 3) point sets; dst: (N, 3) or (F, N, 3) targets.
    Returns scale (F,), rotation (F, 3, 3), translation (F, 3) with
    ``dst ~= scale * src @ R.T + t``. Rotations are proper (det +1).
    """
    src_mean = src.mean(axis=1, keepdims=True)
    dst_mean = np.broadcast_to(dst, src.shape).mean(axis=1, keepdims=True)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = np.einsum("fni,fnj->fij", dst_c, src_c)
    u, sing, vt = np.linalg.svd(cov)
    flip = np.sign(np.linalg.det(u @ vt))  # keep det(R) = +1 (no reflection)
    d = np.ones_like(sing)
    d[:, 2] = flip
    rot = u @ (d[:, :, None] * vt)
    scale = (sing * d).sum(1) / (src_c ** 2).sum((1, 2))
    trans = dst_mean[:, 0] - scale[:, None] * np.einsum("fij,fj->fi", rot, src_mean[:, 0])
    return scale, rot, trans


def procrustes_mean(shapes: np.ndarray, rigid_idx: np.ndarray,
                    iters: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes with a robust (median) mean.

    shapes: (F, N, 3) float; rigid_idx: landmark indices that define the alignment.
    Returns aligned (F, N, 3) float64 (in the mean's frame and scale) and mean (N, 3).
    """
    shapes = shapes.astype(np.float64)
    mean = np.median(shapes, axis=0)
    for _ in range(iters):
        scale, rot, trans = similarity_align(shapes[:, rigid_idx], mean[rigid_idx])
        aligned = scale[:, None, None] * shapes @ rot.transpose(0, 2, 1) + trans[:, None]
        mean = np.median(aligned, axis=0)
    return aligned, mean


def head_frame(mean: np.ndarray, head_centre_depth_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Axes (3, 3) (rows: x, y, z in the input frame) and origin (3,) of the head frame.

    mean: (N, 3) metric mean shape in MediaPipe-like axes (x right, y down, z away).
    """
    side = mean[SYMMETRIC_PAIRS[:, 1]] - mean[SYMMETRIC_PAIRS[:, 0]]
    x = (side / np.linalg.norm(side, axis=1, keepdims=True)).mean(0)
    x /= np.linalg.norm(x)
    down = mean[CHIN] - mean[FOREHEAD_TOP]
    y = down - x * (down @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    origin = mean[NOSE_BRIDGE] + head_centre_depth_m * z
    return np.stack([x, y, z]), origin


def build_face_model(points: np.ndarray, rigid_idx: np.ndarray, n_expr: int,
                     eye_corner_distance_m: float = 0.09,
                     head_centre_depth_m: float = 0.09) -> FaceModel:
    """Learn the subject's face model from landmarks of valid frames.

    points: (F, 478, 3) MediaPipe landmarks of *valid* frames, pixels (see landmarks.py).
    rigid_idx: indices of landmarks that move only with the skull.
    n_expr: number of expression components K (at most F and 3 * 478).
    """
    aligned, mean = procrustes_mean(points, rigid_idx)
    to_metres = eye_corner_distance_m / np.linalg.norm(mean[LEFT_EYE_OUTER] - mean[RIGHT_EYE_OUTER])
    aligned, mean = aligned * to_metres, mean * to_metres
    axes, origin = head_frame(mean, head_centre_depth_m)
    mean_head = (mean - origin) @ axes.T
    deviations = ((aligned - mean) @ axes.T).reshape(len(aligned), -1)
    # SVD about the (median) mean, not the average, so zero coefficients = mean shape.
    _, sing, vt = np.linalg.svd(deviations, full_matrices=False)
    k = min(n_expr, len(sing))
    rms = sing[:k] / np.sqrt(len(deviations))
    basis = (rms[:, None] * vt[:k]).reshape(k, *mean.shape)
    return FaceModel(mean=mean_head.astype(np.float32), basis=basis.astype(np.float32))


def _pair_distance(verts: np.ndarray, pairs) -> np.ndarray:
    """(..., N, 3) verts, P index pairs -> (..., P) distances."""
    a, b = np.array(pairs).T
    return np.linalg.norm(verts[..., a, :] - verts[..., b, :], axis=-1)


def eye_openness(verts: np.ndarray) -> np.ndarray:
    """(F, 478, 3) verts -> (F, 2) float32 mean lid gap / eye width; [:, 0] subject's left eye.

    About 0.25-0.35 for an open eye and under 0.1 when closed (blink signal).
    """
    return np.stack([_pair_distance(verts, lids).mean(-1) / _pair_distance(verts, [corners])[..., 0]
                     for lids, corners in zip(EYE_LIDS, EYE_CORNERS)], axis=-1).astype(np.float32)


def mouth_openness(verts: np.ndarray) -> np.ndarray:
    """(F, 478, 3) verts -> (F,) float32 mean inner-lip gap / mouth-corner distance (0 = closed)."""
    gap = _pair_distance(verts, INNER_LIPS).mean(-1)
    return (gap / _pair_distance(verts, [MOUTH_CORNERS])[..., 0]).astype(np.float32)
