"""The avatar's Gaussians, in three groups by what carries them, and their placement per frame.

- ``face``: bound to the tracked mesh's triangles (:mod:`avatar.model.binding`):
  expressions move, turn and stretch them.
- ``head``: rigid in the head frame (hair, ears, the back of the head).
- ``torso``: in the camera frame (neck and shoulders; the fit will condition them on head pose).

Each group stores raw parameters (local means, wxyz quaternions, log-scales,
opacity logits, colour logits); :meth:`AvatarGaussians.place` turns them into
what :func:`avatar.render.rasterization` takes for one frame, in the head frame
of the subject (its "world", see :mod:`avatar.core.camera`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avatar.core.rotations import quat_to_rotmat, rotmat_to_quat
from avatar.model.binding import bind_to_mesh, triangle_frames

GROUPS = ("face", "head", "torso")


class GaussianGroup(nn.Module):
    """N Gaussians' raw parameters; ``parent`` (N,) int64 triangle indices for the face group, else empty."""

    def __init__(self, means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor,
                 color_logits: Tensor, parent: Tensor | None = None):
        super().__init__()
        self.means = nn.Parameter(means.float())  # (N, 3): triangle-local (face) or metres (head, torso)
        self.quats = nn.Parameter(quats.float())  # (N, 4) wxyz, relative to the carrier's frame
        self.log_scales = nn.Parameter(log_scales.float())  # (N, 3): log of triangle sizes (face) or metres
        self.opacity_logits = nn.Parameter(opacity_logits.float())  # (N,)
        self.color_logits = nn.Parameter(color_logits.float())  # (N, 3): sigmoid -> RGB in [0, 1]
        self.register_buffer("parent", torch.zeros(0, dtype=torch.int64) if parent is None else parent.long())

    def __len__(self) -> int:
        return len(self.means)


class AvatarGaussians(nn.Module):
    """The three groups and the triangles the face group is bound to."""

    def __init__(self, face: GaussianGroup, head: GaussianGroup, torso: GaussianGroup, faces: Tensor):
        super().__init__()
        self.face, self.head, self.torso = face, head, torso
        self.register_buffer("faces", faces.long())  # (T, 3) the mesh topology the face group binds to

    def __len__(self) -> int:
        return sum(len(getattr(self, g)) for g in GROUPS)

    @classmethod
    def from_state_dict(cls, state: dict) -> "AvatarGaussians":
        """A model with the group sizes and values of ``state`` (a :meth:`state_dict`), e.g. a checkpoint's."""
        keys = ("means", "quats", "log_scales", "opacity_logits", "color_logits")
        groups = [GaussianGroup(*(state[f"{g}.{k}"] for k in keys), parent=state[f"{g}.parent"]) for g in GROUPS]
        return cls(*groups, faces=state["faces"])

    def place(self, verts: Tensor, viewmat: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Every Gaussian for one frame: means (N, 3) metres in the head frame, quats (N, 4),
        scales (N, 3) metres, opacities (N,), colours (N, 3) RGB.

        Args:
            verts: (V, 3) float32 the frame's tracked head-frame mesh, metres.
            viewmat: (4, 4) float32 the frame's camera-from-head matrix.
        """
        face = bind_to_mesh(self.face.means, self.face.quats, self.face.log_scales, self.face.parent,
                            triangle_frames(verts, self.faces))
        # torso Gaussians live in the camera frame: bring them into the head frame
        R, t = viewmat[:3, :3], viewmat[:3, 3]
        torso_means = (self.torso.means - t) @ R
        torso_quats = rotmat_to_quat(R.T @ quat_to_rotmat(self.torso.quats))
        means = torch.cat([face.means, self.head.means, torso_means])
        quats = torch.cat([face.quats, self.head.quats, torso_quats])
        scales = torch.cat([face.scales, torch.exp(self.head.log_scales), torch.exp(self.torso.log_scales)])
        opacities = torch.sigmoid(torch.cat([g.opacity_logits for g in (self.face, self.head, self.torso)]))
        colors = torch.sigmoid(torch.cat([g.color_logits for g in (self.face, self.head, self.torso)]))
        return means, quats, scales, opacities, colors
