"""Per-frame semantic label maps: background, head, neck+torso, mouth interior, eyes.

The person comes from MediaPipe selfie segmentation (bundled with the wheel, no
download); everything finer comes from face-mesh geometry:

- head (1): the face-oval polygon, plus every person pixel above a *cut line*
  parallel to the line through the jaw corners and a little below it (hair,
  ears), except the neck under the chin.
- neck + torso (2): person pixels below the cut line, and the person pixels
  under the jaw arc between the jaw corners (the neck when the chin is up).
- mouth interior (3): the inner-lip polygon (empty when the lips are closed).
- eyes (4): the two eye-opening polygons.

Frames without landmarks (no face, or a second face) are excluded from training
anyway; their only use is the person/background split for the background
plate. Every person pixel of such a frame is labelled head (1) so that it is
never taken for background and never feeds torso statistics.

Pixel coordinates follow :mod:`avatar.core.camera`: pixel centres at integer + 0.5.
"""

from __future__ import annotations


import cv2
import mediapipe as mp
import numpy as np

from preprocess import face_topology as topo
from preprocess.config import SegmentationConfig

LABEL_BACKGROUND = 0
LABEL_HEAD = 1
LABEL_TORSO = 2
LABEL_MOUTH = 3
LABEL_EYES = 4
LABELS = {
    LABEL_BACKGROUND: "background",
    LABEL_HEAD: "head (face, hair, ears)",
    LABEL_TORSO: "neck and torso",
    LABEL_MOUTH: "mouth interior",
    LABEL_EYES: "eyes",
}
"""Label value -> meaning, for uint8 label maps."""

_SUBPIXEL_BITS = 4  # cv2 polygon vertices in 1/16 pixel
_FAR = 8.0  # half-planes are drawn as quads reaching this many image sizes out


class Segmenter:
    """Label maps for frames of one clip; owns a MediaPipe SelfieSegmentation graph.

    Use as a context manager (``with Segmenter(cfg) as seg: labels = seg(rgb, lm)``)
    or call :meth:`close` when done.
    """

    def __init__(self, cfg: SegmentationConfig | None = None):
        self.cfg = cfg or SegmentationConfig()
        self._selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(
            model_selection=self.cfg.model_selection)

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graph."""
        if self._selfie is not None:
            self._selfie.close()
            self._selfie = None

    def __call__(self, rgb: np.ndarray, landmarks2d: np.ndarray | None) -> np.ndarray:
        """Label one frame.

        Args:
            rgb: (H, W, 3) uint8 RGB frame.
            landmarks2d: (478, 2) float32 MediaPipe landmarks in pixels (or (468+, >=2);
                extra columns are ignored), or None / all-NaN when no face was found.
        Returns:
            (H, W) uint8 label map with values in :data:`LABELS`.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        if self._selfie is None:
            raise RuntimeError("Segmenter used after close()")
        person = self.person_mask(rgb)
        if landmarks2d is None or not np.all(np.isfinite(landmarks2d[:topo.NUM_MESH_VERTICES, :2])):
            return np.where(person, LABEL_HEAD, LABEL_BACKGROUND).astype(np.uint8)
        return label_from_landmarks(person, np.asarray(landmarks2d, np.float32)[:, :2], self.cfg)

    def person_mask(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) bool person mask of one (H, W, 3) uint8 RGB frame, edges smoothed, specks removed."""
        prob = self._selfie.process(rgb).segmentation_mask
        if self.cfg.edge_blur_sigma_px > 0:
            prob = cv2.GaussianBlur(prob, (0, 0), self.cfg.edge_blur_sigma_px)
        person = (prob > self.cfg.person_threshold).astype(np.uint8)
        return _drop_small_blobs(person, self.cfg.min_blob_fraction * person.size)


def _drop_small_blobs(mask: np.ndarray, min_area: float) -> np.ndarray:
    """(H, W) bool: the uint8 0/1 ``mask`` without connected components under ``min_area`` pixels."""
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False  # component 0 is the background
    return keep[comp]


def label_from_landmarks(person: np.ndarray, lm: np.ndarray, cfg: SegmentationConfig) -> np.ndarray:
    """(H, W) uint8 labels from a (H, W) bool person mask and (>=468, 2) float32 landmarks in pixels."""
    h, w = person.shape
    torso_zone = np.zeros((h, w), np.uint8)
    below_cut, under_chin = _torso_polygons(lm, cfg.neck_cut_offset, far=_FAR * max(h, w))
    _fill(torso_zone, [below_cut, under_chin])
    labels = np.where(person, np.where(torso_zone > 0, LABEL_TORSO, LABEL_HEAD),
                      LABEL_BACKGROUND).astype(np.uint8)
    _fill(labels, [lm[topo.face_oval()]], LABEL_HEAD)
    _fill(labels, [lm[topo.lips_inner()]], LABEL_MOUTH, cfg.mouth_dilate_px)
    _fill(labels, [lm[topo.left_eye()], lm[topo.right_eye()]], LABEL_EYES, cfg.eye_dilate_px)
    return labels


def _torso_polygons(lm: np.ndarray, offset: float, far: float) -> tuple[np.ndarray, np.ndarray]:
    """Two (N, 2) float32 pixel polygons whose union is where person pixels are neck+torso.

    ``below_cut``: the half-plane below the cut line (a far-reaching quad).
    ``under_chin``: the jaw arc closed by two far points straight "down" from the
    jaw corners, where down is perpendicular to the jaw-corner line, toward the chin.
    """
    right, left = lm[topo.JAW_CORNERS[0]], lm[topo.JAW_CORNERS[1]]
    across = left - right
    width = float(np.linalg.norm(across)) or 1.0
    across = across / width
    down = np.array([-across[1], across[0]], np.float32)
    if np.dot(lm[topo.CHIN] - (left + right) / 2, down) < 0:
        down = -down
    cut_r = right + down * offset * width
    cut_l = left + down * offset * width
    below_cut = np.stack([cut_r - across * far, cut_l + across * far,
                          cut_l + across * far + down * far, cut_r - across * far + down * far])
    under_chin = np.concatenate([lm[topo.jaw()], [left + down * far, right + down * far]])
    return below_cut.astype(np.float32), under_chin.astype(np.float32)


def _fill(img: np.ndarray, polygons: list[np.ndarray], value: int = 1, dilate_px: int = 0) -> None:
    """Set ``img`` to ``value`` inside (N, 2) pixel-coordinate polygons, grown by ``dilate_px``."""
    # Landmark pixel centres are at +0.5, cv2's at integers; draw at 1/16 px.
    pts = [np.round((p - 0.5) * (1 << _SUBPIXEL_BITS)).astype(np.int32) for p in polygons]
    mask = np.zeros(img.shape[:2], np.uint8)
    # One call per polygon: fillPoly's even-odd rule would cancel overlaps.
    for p in pts:
        cv2.fillPoly(mask, [p], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    if dilate_px > 0:
        # Also keeps a trace of polygons with zero area (eyes or lips shut).
        cv2.polylines(mask, pts, True, 1, thickness=1 + 2 * dilate_px, lineType=cv2.LINE_8,
                      shift=_SUBPIXEL_BITS)
    img[mask > 0] = value
