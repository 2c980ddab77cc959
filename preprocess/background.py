"""Static background plate of a clip filmed with a fixed camera.

Per pixel, the plate is the median of that pixel over a subset of frames spread
through the clip, counting only frames where the pixel is labelled background
and lies a margin away from the person (so halos of hair and shoulders never
leak in). Pixels that no sampled frame saw as background (behind the head, for
a speaker who hardly moves) are filled by push-pull interpolation: an image
pyramid of the known pixels is built down to a coarse level where everything
is covered, then each finer level is composited over the upsampled coarser one.
That gives a smooth fill that continues the surrounding colours and gradients
across large holes without the streaks of diffusion inpainting.

Pixels seen as background by only a few samples are treated as holes too: they
lie where the person's outline moves and are the most likely to hold halo.

Only ``sample_frames`` frames are held in memory (100 frames of 512x512: 80 MB).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from avatar.core.progress import progress
from preprocess.segmentation import LABEL_BACKGROUND
from preprocess.config import BackgroundConfig

_ROWS_PER_BLOCK = 32  # rows of the frame stack sorted at once, bounds the temporary memory


def sample_indices(n_frames: int, n_samples: int) -> np.ndarray:
    """(min(n_frames, n_samples),) int64 frame indices spread evenly over [0, n_frames), first and last included."""
    if n_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    return np.unique(np.linspace(0, n_frames - 1, max(1, min(n_samples, n_frames))).round().astype(np.int64))


def estimate_background(read_frame: Callable[[int], np.ndarray], read_labels: Callable[[int], np.ndarray],
                        n_frames: int, cfg: BackgroundConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Estimate the clip's static background.

    Args:
        read_frame: ``i -> (S, S, 3) uint8`` RGB frame i (any (H, W) works).
        read_labels: ``i -> (S, S) uint8`` label map of frame i (see :mod:`preprocess.segmentation`).
        n_frames: number of frames in the clip.
        cfg: sampling and margin settings.
    Returns:
        plate: (S, S, 3) uint8 RGB background, holes filled.
        observed: (S, S) bool, True where enough sampled frames (``cfg.min_observed_fraction``) saw background;
            the plate is the median there and filled elsewhere.
    """
    cfg = cfg or BackgroundConfig()
    indices = sample_indices(n_frames, cfg.sample_frames)
    frames, usable = _sample_background_pixels(read_frame, read_labels, indices, cfg.person_margin)
    plate, count = masked_median(frames, usable)
    del frames, usable
    # Pixels seen by only a few samples sit at the edge of the person's motion,
    # where halo pixels can outvote the true background; fill them instead.
    observed = count >= max(1, int(np.ceil(cfg.min_observed_fraction * len(indices))))
    return fill_holes(plate, observed), observed


def _sample_background_pixels(read_frame: Callable[[int], np.ndarray], read_labels: Callable[[int], np.ndarray],
                              indices: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 sampled frames and (N, H, W) bool usable-background masks.

    ``margin`` is the halo guard as a fraction of the longer image side.
    """
    first = np.asarray(read_frame(int(indices[0])))
    h, w = first.shape[:2]
    margin_px = int(round(margin * max(h, w)))
    frames = np.empty((len(indices), h, w, 3), np.uint8)
    usable = np.empty((len(indices), h, w), bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1,) * 2) if margin_px > 0 else None
    for k, i in enumerate(progress(indices.tolist(), desc="background", unit="frame")):
        frame = first if k == 0 else np.asarray(read_frame(i))
        labels = np.asarray(read_labels(i))
        if frame.shape != (h, w, 3) or labels.shape != (h, w):
            raise ValueError(f"frame {i}: frame {frame.shape} and labels {labels.shape} do not match "
                             f"the first frame's ({h}, {w}, 3)")
        background = (labels == LABEL_BACKGROUND).astype(np.uint8)
        if kernel is not None:
            background = cv2.erode(background, kernel, borderType=cv2.BORDER_REPLICATE)
        frames[k] = frame
        usable[k] = background > 0
    return frames, usable


def masked_median(values: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel, per-channel median over samples where ``usable`` is True.

    Args:
        values: (N, H, W, C) uint8 samples.
        usable: (N, H, W) bool.
    Returns:
        (H, W, C) uint8 median (lower median for an even count; 0 where no sample is usable)
        and (H, W) int32 count of usable samples.
    """
    n, h, w, c = values.shape
    median = np.zeros((h, w, c), np.uint8)
    count = usable.sum(axis=0, dtype=np.int32)
    for r0 in range(0, h, _ROWS_PER_BLOCK):
        r1 = min(h, r0 + _ROWS_PER_BLOCK)
        # Unusable samples become 256 so they sort after every real value; the
        # median of the usable ones is then at index (count - 1) // 2.
        block = np.moveaxis(values[:, r0:r1], 0, -1).astype(np.uint16)  # (rows, W, C, N)
        block[~np.moveaxis(usable[:, r0:r1], 0, -1)[:, :, None, :].repeat(c, axis=2)] = 256
        block.sort(axis=-1)
        k = np.maximum(count[r0:r1] - 1, 0) // 2
        picked = np.take_along_axis(block, k[:, :, None, None].repeat(c, axis=2), axis=-1)[..., 0]
        median[r0:r1] = np.where(picked > 255, 0, picked).astype(np.uint8)
    return median, count


def fill_holes(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 ``image`` with pixels where ``known`` (H, W) bool is False filled by push-pull.

    Known pixels are returned unchanged. With no known pixel at all the result is mid-grey.
    """
    if known.all():
        return image.copy()
    if not known.any():
        return np.full_like(image, 128)
    weight = known.astype(np.float32)
    premult = image.astype(np.float32) * weight[..., None]
    # Push: halve resolution until every pixel of the coarsest level is covered.
    pyramid = [(premult, weight)]
    while pyramid[-1][1].min() <= 0 and min(pyramid[-1][1].shape) > 1:
        p, wgt = pyramid[-1]
        size = ((wgt.shape[1] + 1) // 2, (wgt.shape[0] + 1) // 2)
        pyramid.append((cv2.resize(p, size, interpolation=cv2.INTER_AREA),
                        cv2.resize(wgt, size, interpolation=cv2.INTER_AREA)))
    p, wgt = pyramid[-1]
    filled = p / np.maximum(wgt, 1e-6)[..., None]
    # Pull: composite each level (premultiplied by its coverage) over the coarser result.
    for p, wgt in reversed(pyramid[:-1]):
        coverage = np.minimum(wgt, 1.0)[..., None]
        mean = p / np.maximum(wgt, 1e-6)[..., None]
        up = cv2.resize(filled, (wgt.shape[1], wgt.shape[0]), interpolation=cv2.INTER_LINEAR)
        filled = coverage * mean + (1.0 - coverage) * up
    out = np.clip(np.round(filled), 0, 255).astype(np.uint8)
    out[known] = image[known]
    return out
