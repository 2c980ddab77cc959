"""Render the avatar for one tracked frame: place the Gaussians, rasterise, composite over the plate."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from avatar.model.gaussians import AvatarGaussians, torso_motion_m
from avatar.render import rasterization, render_picture


class RenderedFrame(NamedTuple):
    """One rendered frame and what the fit needs from it."""

    rgb: Tensor  #: (S, S, 3) float32 RGB in [0, 1], composited over the background
    alpha: Tensor  #: (S, S, 1) float32 accumulated opacity of the avatar
    meta: dict  #: the rasteriser's meta (``means2d``, ``radii``, ... of the one camera)
    scales: Tensor  #: (N, 3) the placed Gaussians' standard deviations, metres


def render_frame(model: AvatarGaussians, verts: Tensor, viewmat: Tensor, K: Tensor, size: int,
                 background: Tensor | None = None, backend: str = "auto", expr: Tensor | None = None,
                 camera: Tensor | None = None, torso_affine: Tensor | None = None) -> RenderedFrame:
    """The avatar at one frame's tracked mesh and pose.

    Args:
        verts: (V, 3) float32 tracked head-frame mesh of the frame, metres.
        viewmat: (4, 4) float32 camera-from-head; K: (3, 3) float32 intrinsics, pixels.
        size: S, the square image side in pixels.
        background: (S, S, 3) float32 plate composited behind the avatar, or None (black).
        expr: (E,) float32 the frame's expression code (for the deformation field, if the model has one).
        camera: (4, 4) float32 new-camera-from-training-camera, to see the frame from elsewhere (None: the
            training camera). The Gaussians are placed for the head pose ``viewmat`` first (the torso
            follows the head as it does in the video), then seen through ``camera @ viewmat``.
        torso_affine: (2, 3) float32 the shoulders' motion in the training camera's image, pixels (the
            subject's ``torso.affine`` of the frame), or None: where they usually are.
    """
    (means, quats, scales, opacities, colors), seen_from = _placed(model, verts, viewmat, K, expr, camera, torso_affine)
    rgb, alpha, meta = rasterization(means, quats, scales, opacities, colors, seen_from[None], K[None],
                                     size, size, backend=backend)
    rgb, alpha = rgb[0], alpha[0]
    if background is not None:
        rgb = rgb + (1.0 - alpha) * background
    return RenderedFrame(rgb, alpha, meta, scales)


def render_picture_frame(model: AvatarGaussians, verts: Tensor, viewmat: Tensor, K: Tensor, size: int,
                         plate: Tensor, backend: str = "auto", expr: Tensor | None = None,
                         camera: Tensor | None = None, torso_affine: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The frame of :func:`render_frame` as a picture to look at, without gradients: (rgb (S, S, 3) uint8
    over ``plate`` (S, S, 3) float32 in [0, 1], alpha (S, S) float32). See :func:`avatar.render.render_picture`:
    on the CPU the kernel composites and rounds as it draws, 17% faster a frame than render_frame + composite."""
    (means, quats, scales, opacities, colors), seen_from = _placed(model, verts, viewmat, K, expr, camera, torso_affine)
    rgb, alpha = render_picture(means, quats, scales, opacities, colors, seen_from[None], K[None], size, size,
                                plate[None], backend=backend)
    return rgb[0], alpha[0]


def _placed(model: AvatarGaussians, verts: Tensor, viewmat: Tensor, K: Tensor, expr: Tensor | None,
            camera: Tensor | None, torso_affine: Tensor | None):
    """The placed Gaussians and the camera-from-head matrix they are seen through."""
    torso = None if torso_affine is None else torso_motion_m(torso_affine, model, K)
    return model.place(verts, viewmat, expr, torso), (viewmat if camera is None else camera @ viewmat)
