"""The training frames as the loss needs them: real image, person mask, loss weights, head box.

Frames are read from the subject folder once and kept as uint8 (0.8 MB a
512x512 frame with its labels; cnn2's 1,600 training frames take 1.5 GB), so
peak memory stays bounded and nothing is decoded twice. Tensors are made per
step.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from avatar.fit.config import LossConfig
from preprocess.face_topology import lips_outer
from preprocess.segmentation import LABEL_BACKGROUND, LABEL_EYES, LABEL_HEAD, LABEL_MOUTH, LABEL_TORSO
from preprocess.subject import Subject

REGION_DILATE = 0.01
"""Mouth and eye regions are grown by this fraction of the image side (lip edges, lashes)."""


@dataclass
class TrainingFrame:
    """One frame, compact: what a step turns into tensors."""

    image: np.ndarray  #: (S, S, 3) uint8 RGB
    labels: np.ndarray  #: (S, S) uint8 segmentation labels
    mouth: np.ndarray  #: (S, S) bool lips and mouth interior
    eyes: np.ndarray  #: (S, S) bool eyes and lids
    head_box: tuple[int, int, int, int]  #: (x0, y0, x1, y1) pixels: the head label's box, grown down to the neck

    def tensors(self, cfg: LossConfig) -> tuple[Tensor, Tensor, Tensor]:
        """(S, S, 3) float32 RGB in [0, 1], (S, S, 1) person mask, (S, S, 1) L1 weights."""
        rgb = torch.from_numpy(self.image).float().div_(255.0)
        person = torch.from_numpy(self.labels != LABEL_BACKGROUND).float()[..., None]
        weight = 1.0 + cfg.mouth * torch.from_numpy(self.mouth).float() + cfg.eyes * torch.from_numpy(self.eyes).float()
        return rgb, person, weight[..., None]


class TrainingFrames:
    """Lazily loaded, cached :class:`TrainingFrame` s of a subject."""

    def __init__(self, subject: Subject):
        self.subject = subject
        self._cache: dict[int, TrainingFrame] = {}
        self._lips = lips_outer()

    def __getitem__(self, i: int) -> TrainingFrame:
        if i not in self._cache:
            self._cache[i] = self._load(i)
        return self._cache[i]

    def _load(self, i: int) -> TrainingFrame:
        image, labels = self.subject.frame(i), self.subject.labels(i)
        mouth = np.zeros(labels.shape, np.uint8)
        lips = np.round(self.subject.tracking.landmarks2d[i][self._lips]).astype(np.int32)
        cv2.fillPoly(mouth, [lips], 1)
        mouth = _dilate(mouth.astype(bool) | (labels == LABEL_MOUTH))
        return TrainingFrame(image, labels, mouth, _dilate(labels == LABEL_EYES), _head_box(np.isin(labels, (LABEL_HEAD, LABEL_MOUTH, LABEL_EYES))))


def _dilate(mask: np.ndarray) -> np.ndarray:
    """(S, S) bool mask grown by :data:`REGION_DILATE` of the side."""
    r = max(1, int(round(REGION_DILATE * mask.shape[0])))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


NECK_FRACTION = 0.3
"""The head box is grown down by this fraction of its height, to take in the neck and its seam."""


def _head_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    if len(xs) == 0:
        return 0, 0, w, h
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    return int(xs.min()), y0, int(xs.max()) + 1, min(h, y1 + int(NECK_FRACTION * (y1 - y0)))


def head_and_neck(frame: TrainingFrame) -> np.ndarray:
    """(S, S) bool: head, mouth and eye labels, and the torso label inside the head box (the neck)."""
    head = np.isin(frame.labels, (LABEL_HEAD, LABEL_MOUTH, LABEL_EYES))
    x0, y0, x1, y1 = frame.head_box
    neck = np.zeros_like(head)
    neck[y0:y1, x0:x1] = frame.labels[y0:y1, x0:x1] == LABEL_TORSO
    return head | neck
