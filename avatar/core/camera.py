"""The one camera convention of this project. Every module follows it.

- Cameras are OpenCV pinhole cameras: x right, y down, z forward (into the scene).
- ``viewmat`` is a (4, 4) float32 **camera-from-world** matrix (world point X_w
  maps to camera point X_c = R @ X_w + t), as in gsplat's ``viewmats``.
- ``K`` is the (3, 3) float32 intrinsic matrix in **pixels**:
  [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]; pixel centres are at integer + 0.5,
  i.e. the top-left pixel covers [0, 1) x [0, 1) and its centre is (0.5, 0.5).
- World units are **metres**. For a tracked subject the "world" is the head
  frame: origin near the centre of the head, x to the subject's left as seen by
  the camera (image right), y down, z away from the camera, so an un-rotated
  head faces the camera.
- Images are (H, W, 3) uint8 RGB on disk and (H, W, C) float32 in [0, 1] in tensors.
"""

from __future__ import annotations

import numpy as np


def intrinsics(focal_px: float, width: int, height: int) -> np.ndarray:
    """(3, 3) float32 K for a centred principal point and square pixels."""
    return np.array([[focal_px, 0.0, width / 2.0],
                     [0.0, focal_px, height / 2.0],
                     [0.0, 0.0, 1.0]], dtype=np.float32)


def project(points: np.ndarray, viewmat: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Project (..., 3) world points, metres, to (..., 2) pixel coordinates."""
    pc = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    uv = pc @ K.T
    return uv[..., :2] / uv[..., 2:3]
