"""The shoulders' motion in the image: one 2D affine map per frame.

The tracked head pose says where the head is, not the body: a speaker sways,
leans and shifts in the chair, and the shoulders then move by more than the
head does (on cnn2 the torso was 57% of the fit's validation error while it
followed only the head). This stage measures it so that the fit can put the
torso where it is in every frame.

How: every frame is aligned to one reference frame by the affine map that best
matches its grey levels inside the *shoulder region* (ECC, :func:`cv2.findTransformECC`),
starting from the previous frame's answer (leaning in scales the shoulders, turning
narrows them: on cnn2 the affine map leaves 25% less error in the region than the
shift alone, with about the same frame-to-frame jitter, 0.41 px against 0.37;
``TorsoConfig.motion`` = translation measures the shift only). The region is the
torso label (present in at least half of the sampled frames) below the chin,
widened by a margin so that the shoulders' outline against the background is in
it (the outline is what carries the motion on a plain suit, and where the error
is when it is a few pixels off). The neck under the chin and the hair and ears
are left out: they turn with the head, which tracking already gives. Frames where the alignment fails or jumps are filled in from their
neighbours. The maps are then taken from the median one, so the identity is
where the shoulders usually are (what a render of new speech uses).

Pixel coordinates follow :mod:`avatar.core.camera`; +x right, +y down.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from preprocess.config import TorsoConfig
from preprocess.segmentation import LABEL_HEAD, LABEL_TORSO

CHIN_VERTEX = 152
"""The MediaPipe mesh vertex at the tip of the chin."""


def neck_column(landmarks2d: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
    """``(x0, x1, chin_y)`` for :func:`shoulder_region`: medians over the valid frames of the face's left and
    right edges and of the chin's height, pixels, from the tracked mesh's (F, V, 2) reprojection."""
    from preprocess.face_topology import face_oval

    pts = landmarks2d[valid]
    oval = pts[:, face_oval()]
    return (float(np.median(oval[..., 0].min(1))), float(np.median(oval[..., 0].max(1))),
            float(np.median(pts[:, CHIN_VERTEX, 1])))


def shoulder_region(read_labels: Callable[[int], np.ndarray], frames: np.ndarray, neck: tuple[float, float, float],
                    cfg: TorsoConfig) -> np.ndarray:
    """(S, S) bool: where the shoulders are matched.

    Args:
        read_labels: frame index -> (S, S) uint8 label map.
        frames: indices of the frames to take the torso's and the head's usual extent from.
        neck: ``(x0, x1, chin_y)`` pixels: the face's usual left and right edges and the chin's usual
            height. The column between the edges down to a little below the chin is the neck (it turns
            with the head) and is left out; beside it the shoulders' outline is kept at every height.
    """
    torso = head = None
    for i in frames:
        labels = read_labels(int(i))
        t, h = labels == LABEL_TORSO, labels == LABEL_HEAD
        torso, head = (t.astype(np.int32), h.astype(np.int32)) if torso is None else (torso + t, head + h)
    half = 0.5 * len(frames)
    size = torso.shape[0]
    margin = max(1, int(round(cfg.margin_fraction * size)))
    grow = lambda mask: cv2.dilate(mask.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0  # noqa: E731
    region = grow(torso >= half) & ~grow(head >= half)  # the hair and ears beside the shoulders move with the head
    x0, x1, chin_y = neck
    bottom = int(np.clip(chin_y + cfg.below_chin_fraction * size, 0, size))
    region[:bottom, int(np.clip(x0, 0, size)):int(np.clip(np.ceil(x1), 0, size))] = False
    return region


def track_shoulders(read_frame: Callable[[int], np.ndarray], n: int, region: np.ndarray, reference: int,
                    cfg: TorsoConfig, desc: str | None = "torso") -> tuple[np.ndarray, np.ndarray]:
    """Each frame's image motion of the shoulders from where they usually are.

    Returns:
        affine: (F, 2, 3) float32 ``[L | b]``: a point of the shoulders at ``x`` (working-frame pixels,
            centres at +0.5) where they usually are is at ``L x + b`` in the frame. "Usually" is where
            the element-wise median of the returned maps is the identity, so a typical frame's is near it.
        measured: (F,) bool: False where the alignment failed and the motion was interpolated.
    """
    from avatar.core.progress import progress

    scale = cfg.work_px / region.shape[0]
    small = lambda img: cv2.resize(img, (cfg.work_px, cfg.work_px), interpolation=cv2.INTER_AREA)  # noqa: E731
    mask = (small(region.astype(np.uint8) * 255) > 127).astype(np.uint8)
    template = _prepared(small(read_frame(reference)))
    found = np.full((n, 6), np.nan, np.float64)
    guess = IDENTITY
    frames = range(n) if desc is None else progress(range(n), total=n, desc=desc, unit="frame")
    for i in frames:
        image = _prepared(small(read_frame(i)))
        warp = _measure(template, image, mask, guess, cfg)
        if warp is not None:
            found[i] = warp.ravel()
            guess = warp
    measured = np.isfinite(found[:, 0])
    if not measured.any():
        return np.tile(IDENTITY, (n, 1, 1)).astype(np.float32), measured
    t = np.arange(n)
    for k in range(6):
        found[:, k] = np.interp(t, t[measured], found[measured, k])
    homogeneous = np.tile(np.eye(3), (n, 1, 1))
    homogeneous[:, :2] = found.reshape(n, 2, 3)
    # ECC's pixel centres are at integers, ours at +0.5 (avatar.core.camera), and the frames were shrunk by scale
    to_ours = np.array([[1 / scale, 0, 0.5 / scale], [0, 1 / scale, 0.5 / scale], [0, 0, 1]])
    homogeneous = to_ours @ homogeneous @ np.linalg.inv(to_ours)
    relative = homogeneous
    for _ in range(4):  # with scale and turn in the maps, one division leaves the median a little off the identity
        relative = relative @ np.linalg.inv(np.median(relative[measured], axis=0))
    return relative[:, :2].astype(np.float32), measured


IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
"""The 2 x 3 affine map that moves nothing."""


def _prepared(rgb: np.ndarray) -> np.ndarray:
    """Grey levels in [0, 1], lightly blurred (ECC converges from further away on smooth images)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return cv2.GaussianBlur(grey, (0, 0), 1.0)


def _measure(template: np.ndarray, image: np.ndarray, mask: np.ndarray, guess: np.ndarray,
             cfg: TorsoConfig) -> np.ndarray | None:
    """(2, 3) :func:`_align`'s map of ``cfg.motion`` from the previous frame's answer ``guess``; after a failure
    (a jump, a frame the guess is far from), the shift from the start first and the full map from there."""
    warp = _align(template, image, mask, guess, cfg, cfg.motion)
    if warp is not None:
        return warp
    shift = _align(template, image, mask, IDENTITY, cfg, "translation")
    if shift is None or cfg.motion == "translation":
        return shift
    return _align(template, image, mask, shift, cfg, cfg.motion)


def _align(template: np.ndarray, image: np.ndarray, mask: np.ndarray, guess: np.ndarray,
           cfg: TorsoConfig, motion: str) -> np.ndarray | None:
    """(2, 3) the map W (working pixels, ECC's) taking ``template``'s region onto ``image``, or None.

    ECC finds W with image(W x) = template(x) over the template's mask: the shoulders seen at x in the
    reference are at W x in the frame. ``motion``: affine (all six numbers) or translation (the shift;
    the linear part stays the guess's)."""
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, cfg.iterations, 1e-4)
    warp = np.array(guess, np.float32)
    mode = cv2.MOTION_AFFINE if motion == "affine" else cv2.MOTION_TRANSLATION
    try:
        rho, warp = cv2.findTransformECC(template, image, warp, mode, criteria, mask, 5)
    except cv2.error:
        return None
    return warp.astype(np.float64) if rho >= cfg.min_correlation else None
