"""Face geometry for motion: which vertices audio drives, the eyelid model, and ARKit-style channels.

Everything here works on head-frame meshes of the MediaPipe topology (478
points, metres; :mod:`avatar.core.camera`: x to the subject's left, y down, z
away from the camera), so it is the same for every subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preprocess import face_topology as topo
from preprocess.face_model import eye_openness, mouth_openness
from preprocess.landmark_ids import CHIN, EYE_CORNERS, MOUTH_CORNERS, NOSE_BRIDGE, NOSE_TIP

OTHER_WEIGHT = 0.3
"""Weight of the upper face (brows, cheeks, forehead) in the predictor's loss, against 1 for the lower face."""
EYE_RADIUS = 0.75
"""Eye region: vertices within this many eye widths of an eye's centre (lids, not brows)."""

INNER_BROWS = (107, 336)
"""Inner ends of the brows (subject's right, left)."""
UPPER_LIP, LOWER_LIP = 0, 17
"""Middle of the outer lip contour, top and bottom."""


def eye_vertices(mean_shape: np.ndarray) -> np.ndarray:
    """Sorted int indices of the lids and irises: what blinks move, and audio must not."""
    out = set(topo.irises().tolist())
    for loop, (a, b) in zip((topo.left_eye(), topo.right_eye()), EYE_CORNERS):
        centre = mean_shape[loop].mean(0)
        width = np.linalg.norm(mean_shape[a] - mean_shape[b])
        near = np.linalg.norm(mean_shape - centre, axis=1) < EYE_RADIUS * width
        out |= set(np.flatnonzero(near).tolist())
    return np.array(sorted(out))


def vertex_weights(mean_shape: np.ndarray) -> np.ndarray:
    """(478,) float32 loss weight per vertex for audio-driven motion: 1 below the nose tip, 0 on the eyes."""
    w = np.where(mean_shape[:, 1] > mean_shape[NOSE_TIP, 1], 1.0, OTHER_WEIGHT).astype(np.float32)
    w[eye_vertices(mean_shape)] = 0.0
    return w


def weighted_metric(basis: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(K, K) float32 G with ``d @ G @ d`` = weighted mean squared vertex error of coefficient error d, in mm^2."""
    flat = basis.reshape(len(basis), -1, 3) * np.sqrt(weights)[None, :, None] * 1000.0
    flat = flat.reshape(len(basis), -1)
    return (flat @ flat.T / max(weights.sum(), 1e-6)).astype(np.float32)


def opening_metric(expr: np.ndarray, mouth_open: np.ndarray, metric: np.ndarray, weight: float) -> np.ndarray:
    """(K, K) float32 ``metric`` plus ``weight`` times a squared error of the inner-lip opening.

    The opening (inner-lip gap / mouth width, :func:`preprocess.face_model.mouth_openness`) is, over a
    subject's frames, very nearly linear in the expression (cnn2: r = 0.996), so its error is the
    projection of the coefficient error on one direction ``g`` and the term is ``weight * s * g g^T``,
    with ``s`` making it ``weight`` times the vertex error on the frames' spread of expressions (so the
    weight means the same for every subject). Why: in the vertex error the lip gap is a few of the
    lower face's vertices, yet it is what people watch (and what ``mouth_corr`` measures).

    Args:
        expr: (F, K) the subject's tracked expressions (training frames).
        mouth_open: (F,) their tracked opening.
        metric: (K, K) :func:`weighted_metric`.
    """
    if weight == 0 or len(expr) <= expr.shape[1] + 1:
        return metric
    e = np.asarray(expr, np.float64)
    design = np.concatenate([e, np.ones((len(e), 1))], axis=1)
    g = np.linalg.lstsq(design, np.asarray(mouth_open, np.float64), rcond=None)[0][:-1]
    cov = np.cov(e.T)
    spread = float(g @ cov @ g)
    if spread <= 0:
        return metric
    scale = float(np.trace(metric @ cov)) / spread
    return (metric + weight * scale * np.outer(g, g)).astype(np.float32)


@dataclass(frozen=True)
class EyelidModel:
    """Puts a given eye openness onto an expression without moving the rest of the face.

    Per eye, the lid vertices' displacement from the mean shape is a linear
    function of that eye's openness (fitted on the tracked frames); the new
    expression is the nearest one (least squares, all vertices) whose lids
    match it while the other vertices stay where they were.
    """

    offset: np.ndarray
    """(E, 3) float32 lid displacement at openness 0, metres (E = eye vertices)."""
    slope: np.ndarray
    """(E, 3) float32 lid displacement per unit openness, metres."""
    side: np.ndarray
    """(E,) int 0 for the subject's left eye, 1 for the right (the eye_open column)."""
    vertices: np.ndarray
    """(E,) int the eye vertices."""
    solve: np.ndarray
    """(K, 3E) float32 coefficient change per metre of lid mismatch."""
    lid_basis: np.ndarray
    """(K, 3E) float32 the expression basis on the eye vertices."""

    @classmethod
    def fit(cls, tracking, frames: np.ndarray, ridge: float = 1e-3) -> "EyelidModel":
        """From ``tracking`` (preprocess's Tracking) over ``frames`` (int indices of tracked frames)."""
        mean, basis = tracking.mean_shape, tracking.expr_basis
        eyes = eye_vertices(mean)
        side = _eye_side(mean, eyes)
        disp = tracking.verts[frames][:, eyes] - mean[eyes]  # (F, E, 3)
        opening = tracking.eye_open[frames][:, side]  # (F, E)
        offset, slope = np.empty((len(eyes), 3), np.float32), np.empty((len(eyes), 3), np.float32)
        for e in range(len(eyes)):
            design = np.c_[np.ones(len(frames)), opening[:, e]]
            coef, *_ = np.linalg.lstsq(design, disp[:, e], rcond=None)
            offset[e], slope[e] = coef
        b_eye = basis[:, eyes].reshape(len(basis), -1).astype(np.float64)
        others = np.setdiff1d(np.arange(basis.shape[1]), eyes)
        b_other = basis[:, others].reshape(len(basis), -1).astype(np.float64)
        normal = b_eye @ b_eye.T + b_other @ b_other.T + ridge * np.trace(b_eye @ b_eye.T) / len(basis) * np.eye(len(basis))
        return cls(offset, slope, side, eyes, np.linalg.solve(normal, b_eye).astype(np.float32),
                   b_eye.astype(np.float32))

    def apply(self, expr: np.ndarray, eye_open: np.ndarray, mean_shape: np.ndarray) -> np.ndarray:
        """(F, K) expressions with their lids set to (F, 2) openness (column 0 the subject's left eye)."""
        target = self.offset[None] + eye_open[:, self.side][..., None] * self.slope[None]  # (F, E, 3)
        current = (expr @ self.lid_basis).reshape(len(expr), -1, 3)
        del mean_shape  # displacements are relative to the mean shape on both sides
        return (expr + (target - current).reshape(len(expr), -1) @ self.solve.T).astype(np.float32)


def _eye_side(mean: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    left = mean[topo.left_eye()].mean(0)
    right = mean[topo.right_eye()].mean(0)
    return (np.linalg.norm(mean[eyes] - right, axis=1) < np.linalg.norm(mean[eyes] - left, axis=1)).astype(int)


CHANNELS: tuple[str, ...] = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmileLeft",
                             "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp")
"""ARKit blendshape names measured from the mesh; each is 0-1 on the subject's own range."""


def raw_channels(verts: np.ndarray) -> np.ndarray:
    """(F, len(CHANNELS)) float32 raw geometric measures of (F, 478, 3) head-frame meshes.

    Distances are divided by the face's eye-corner span, so they have no unit;
    each grows with its channel (see :class:`ChannelCalibration` for 0-1).
    """
    v = verts.astype(np.float64)
    span = np.linalg.norm(v[:, EYE_CORNERS[0][1]] - v[:, EYE_CORNERS[1][1]], axis=-1)  # outer eye corners
    up = v[:, NOSE_BRIDGE] - v[:, CHIN]
    up /= np.linalg.norm(up, axis=-1, keepdims=True)
    jaw = np.linalg.norm(v[:, CHIN] - v[:, NOSE_BRIDGE], axis=-1) / span
    gap = mouth_openness(verts).astype(np.float64)
    width = np.linalg.norm(v[:, MOUTH_CORNERS[0]] - v[:, MOUTH_CORNERS[1]], axis=-1) / span
    outer = np.linalg.norm(v[:, UPPER_LIP] - v[:, LOWER_LIP], axis=-1) / span
    centre = 0.5 * (v[:, UPPER_LIP] + v[:, LOWER_LIP])
    smile = [np.einsum("fi,fi->f", v[:, c] - centre, up) / span for c in (MOUTH_CORNERS[1], MOUTH_CORNERS[0])]
    eyes = eye_openness(verts).astype(np.float64)
    brow_centre = v[:, NOSE_BRIDGE]
    brow = np.mean([np.einsum("fi,fi->f", v[:, b] - brow_centre, up) for b in INNER_BROWS], axis=0) / span
    raw = np.stack([jaw, jaw - gap * width, outer / np.maximum(width, 1e-6), -width, smile[0], smile[1],
                    -eyes[:, 0], -eyes[:, 1], brow], axis=1)
    return raw.astype(np.float32)


@dataclass(frozen=True)
class ChannelCalibration:
    """Maps raw measures to 0-1 by the subject's own range (2nd to 98th percentile over the clip; the
    blinks from the eye's median openness, so an open eye reads 0)."""

    lo: np.ndarray
    """(C,) float32 raw value that maps to 0."""
    hi: np.ndarray
    """(C,) float32 raw value that maps to 1."""

    @classmethod
    def fit(cls, verts: np.ndarray) -> "ChannelCalibration":
        raw = raw_channels(verts)
        lo, hi = np.percentile(raw, 2, axis=0), np.percentile(raw, 98, axis=0)
        blink = [CHANNELS.index("eyeBlinkLeft"), CHANNELS.index("eyeBlinkRight")]
        lo[blink] = np.median(raw[:, blink], axis=0)  # an eye at its usual openness is not blinking at all
        return cls(lo.astype(np.float32), np.maximum(hi, lo + 1e-6).astype(np.float32))

    def __call__(self, verts: np.ndarray) -> np.ndarray:
        """(F, C) float32 channels in [0, 1]."""
        return np.clip((raw_channels(verts) - self.lo) / (self.hi - self.lo), 0.0, 1.0).astype(np.float32)
