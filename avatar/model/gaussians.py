"""The avatar's Gaussians, in four groups by what carries them, and their placement per frame.

- ``face``: bound to the tracked mesh's triangles (:mod:`avatar.model.binding`):
  expressions move, turn and stretch them.
- ``mouth``: the mouth interior, in the head frame. Upper teeth and palate
  (``jaw`` = 0) are rigid with the skull; lower teeth and tongue (``jaw`` = 1)
  follow the jaw: they move by the chin's displacement from the neutral mesh, so
  the teeth do not smear when the mouth opens. The lips are face Gaussians in
  front of them, so a closed mouth hides them.
- ``head``: rigid in the head frame (hair, ears, the back of the head).
- ``torso``: in the camera frame (neck and shoulders), each following the head's
  motion away from the rest pose by a learned fraction (``follow``: about 1 on
  the neck under the chin, 0 on the shoulders), so the neck turns with the head
  without a seam, and the shoulders' tracked motion (``torso``, see
  :mod:`preprocess.torso`) by the rest of it: the shoulders go where the body is.

Each group stores raw parameters (local means, wxyz quaternions, log-scales,
opacity logits, colour logits, and a colour basis: how each colour logit changes
with the frame's pose code, see :func:`pose_code`; the light is fixed in the
studio, so a turned head, a leaning body and a shifted collar shade and show
differently); :meth:`AvatarGaussians.place` turns them into
what :func:`avatar.render.rasterization` takes for one frame, in the head frame
of the subject (its "world", see :mod:`avatar.core.camera`), in the order of
:data:`GROUPS`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from avatar.core.rotations import quat_left_matrix, rotmat_to_quat
from avatar.model.binding import bind_to_mesh, triangle_frames

GROUPS = ("face", "mouth", "head", "torso")
PARAMS = ("means", "quats", "log_scales", "opacity_logits", "color_logits", "follow_logits", "color_basis")
"""The learned per-Gaussian tensors of a group, in the order :class:`GaussianGroup` takes them."""
BUFFERS = ("parent", "jaw")
POSE_CODE = 12
"""Entries of :func:`pose_code`: the head's turn (3) and shift (3) from the rest pose, the shoulders' motion (6)."""
POSE_CODE_CLAMP = 3.0
"""A pose code entry is clamped to this many training standard deviations (the basis is linear: far outside
the poses it was fitted on it would invent colours)."""
"""Per-Gaussian fixed attributes: a face Gaussian's triangle; how much a mouth Gaussian follows the jaw."""


class GaussianGroup(nn.Module):
    """N Gaussians' raw parameters.

    ``parent`` (N,) int64 triangle indices (face group, else empty) and ``jaw``
    (N,) float32 in [0, 1] (mouth group, else empty) are per-Gaussian buffers:
    densified children copy them from their parent Gaussian.
    """

    def __init__(self, means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor,
                 color_logits: Tensor, follow_logits: Tensor | None = None, color_basis: Tensor | None = None,
                 parent: Tensor | None = None, jaw: Tensor | None = None):
        super().__init__()
        self.means = nn.Parameter(means.float())  # (N, 3): triangle-local (face) or metres
        self.quats = nn.Parameter(quats.float())  # (N, 4) wxyz, relative to the carrier's frame
        self.log_scales = nn.Parameter(log_scales.float())  # (N, 3): log of triangle sizes (face) or metres
        self.opacity_logits = nn.Parameter(opacity_logits.float())  # (N,)
        self.color_logits = nn.Parameter(color_logits.float())  # (N, 3): sigmoid -> RGB in [0, 1]
        # (N,): sigmoid -> how much a torso Gaussian follows the head (kept, unused, in the other groups)
        self.follow_logits = nn.Parameter(torch.zeros(len(means)) if follow_logits is None else follow_logits.float())
        # (N, 3, POSE_CODE): colour logits' change per unit of the normalised pose code (zeros: none)
        self.color_basis = nn.Parameter(torch.zeros(len(means), 3, POSE_CODE) if color_basis is None
                                        else color_basis.float())
        self.register_buffer("parent", torch.zeros(0, dtype=torch.int64) if parent is None else parent.long())
        self.register_buffer("jaw", torch.zeros(0) if jaw is None else jaw.float())

    def __len__(self) -> int:
        return len(self.means)


class AvatarGaussians(nn.Module):
    """The groups, the triangles the face group is bound to and the neutral mesh the jaw moves from."""

    def __init__(self, face: GaussianGroup, mouth: GaussianGroup, head: GaussianGroup, torso: GaussianGroup,
                 faces: Tensor, mean_shape: Tensor, jaw_vertices: Tensor, rest_viewmat: Tensor,
                 deform: nn.Module | None = None):
        super().__init__()
        self.face, self.mouth, self.head, self.torso = face, mouth, head, torso
        self.deform = deform  # a DeformationField (avatar.model.deform), or None
        self._encoded: tuple[tuple, Tensor] | None = None  # see _face_encoding
        self._frozen: tuple[tuple, _Frozen] | None = None  # see _frozen_parts
        self.register_buffer("faces", faces.long())  # (T, 3) the mesh topology the face group binds to
        self.register_buffer("mean_shape", mean_shape.float())  # (V, 3) neutral head-frame mesh, metres
        self.register_buffer("jaw_vertices", jaw_vertices.long())  # (J,) vertices whose motion is the jaw's
        self.register_buffer("rest_viewmat", rest_viewmat.float())  # (4, 4) the pose the torso was placed at
        # the training frames' pose codes' mean and standard deviation (see pose_code), to normalise a frame's
        self.register_buffer("pose_mean", torch.zeros(POSE_CODE))
        self.register_buffer("pose_scale", torch.ones(POSE_CODE))

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups())

    def groups(self) -> list[GaussianGroup]:
        """The groups in :data:`GROUPS` order (the order of :meth:`place`'s output)."""
        return [getattr(self, g) for g in GROUPS]

    @classmethod
    def from_state_dict(cls, state: dict, deform: nn.Module | None = None) -> "AvatarGaussians":
        """A model with the group sizes and values of ``state`` (a :meth:`state_dict`), e.g. a checkpoint's.

        ``deform``: a freshly made deformation field of the same settings when the
        state has one (its weights are loaded from ``state``)."""
        # an avatar fitted before the colour basis existed has none: zeros, the colours it was fitted with
        groups = [GaussianGroup(*(state.get(f"{g}.{k}") if k == "color_basis" else state[f"{g}.{k}"] for k in PARAMS),
                                **{b: state[f"{g}.{b}"] for b in BUFFERS}) for g in GROUPS]
        model = cls(*groups, faces=state["faces"], mean_shape=state["mean_shape"],
                    jaw_vertices=state["jaw_vertices"], rest_viewmat=state["rest_viewmat"], deform=deform)
        for name in ("pose_mean", "pose_scale"):
            if name in state:
                getattr(model, name).copy_(state[name])
        if deform is not None:
            deform.load_state_dict({k[len("deform."):]: v for k, v in state.items() if k.startswith("deform.")})
        return model

    def set_pose_range(self, codes: Tensor) -> None:
        """Normalise pose codes by these (F, POSE_CODE) of the training frames (:func:`pose_code`): their mean
        and standard deviation (1 where an entry never changes, e.g. shoulders that were not tracked)."""
        std = codes.std(0) if len(codes) > 1 else torch.zeros(POSE_CODE)
        self.pose_mean.copy_(codes.mean(0))
        self.pose_scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def normalised_pose(self, viewmat: Tensor, torso: Tensor) -> Tensor:
        """(POSE_CODE,) the frame's :func:`pose_code` in training standard deviations, clamped to
        +-POSE_CODE_CLAMP."""
        code = (pose_code(viewmat, self.rest_viewmat, torso) - self.pose_mean) / self.pose_scale
        return code.clamp(-POSE_CODE_CLAMP, POSE_CODE_CLAMP)

    def jaw_offset(self, verts: Tensor) -> Tensor:
        """(3,) metres: how far the jaw has moved from the neutral mesh in this frame (head frame)."""
        j = self.jaw_vertices
        return (verts[j] - self.mean_shape[j]).mean(0)

    def _face_encoding(self) -> Tensor:
        """The deformation field's grid features of the face Gaussians at the neutral mesh.

        They change only when the face's local parameters or the grid table do, so
        without gradients (rendering, a viewer) they are computed once and reused
        until one of those tensors is modified (PyTorch's version counters say when):
        that saves the neutral placement and the grid lookup every frame.
        """
        f, grid = self.face, self.deform.grid.table
        key = (id(f.means), f.means._version, f.quats._version, f.log_scales._version, id(grid), grid._version)
        if not torch.is_grad_enabled() and self._encoded is not None and self._encoded[0] == key:
            return self._encoded[1]
        neutral = bind_to_mesh(f.means, f.quats, f.log_scales, f.parent, triangle_frames(self.mean_shape, self.faces))
        encoded = self.deform.encode(neutral.means)
        self._encoded = (key, encoded) if not torch.is_grad_enabled() else None
        return encoded

    def place(self, verts: Tensor, viewmat: Tensor, expr: Tensor | None = None, torso: Tensor | None = None
              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Every Gaussian for one frame: means (N, 3) metres in the head frame, quats (N, 4),
        scales (N, 3) metres, opacities (N,), colours (N, 3) RGB.

        Args:
            verts: (V, 3) float32 the frame's tracked head-frame mesh, metres.
            viewmat: (4, 4) float32 the frame's camera-from-head matrix.
            expr: (E,) float32 the frame's expression code, for the deformation field
                (None: neutral, zeros); ignored without one.
            torso: (3, 4) float32 the shoulders' motion from their usual place in the camera frame,
                ``p -> torso[:, :3] p + torso[:, 3]`` (metres), or None: none; see :func:`torso_motion_m`.
        """
        torso = torch.eye(3, 4).to(verts) if torso is None else torso.to(verts)
        if self.deform is None and not torch.is_grad_enabled() and verts.device.type == "cpu":
            return self._place_compiled(verts, viewmat, torso)
        f = self.face
        means, quats, log_scales = f.means, f.quats, f.log_scales
        face_color, face_opacity = f.color_logits, f.opacity_logits
        if self.deform is not None:
            code = expr if expr is not None else verts.new_zeros(self.deform.n_expr)
            d = self.deform.offsets(self._face_encoding(), code)
            means, log_scales = means + d.means, log_scales + d.log_scales
            quats = quats / quats.norm(dim=-1, keepdim=True) + d.quats
            face_color, face_opacity = face_color + d.color_logits, face_opacity + d.opacity_logits
        face = bind_to_mesh(means, quats, log_scales, f.parent, triangle_frames(verts, self.faces))
        mouth_means = self.mouth.means + self.mouth.jaw[:, None] * self.jaw_offset(verts)
        # torso Gaussians live in the camera frame; the head has moved there by viewmat @ rest^-1
        R, t = viewmat[:3, :3], viewmat[:3, 3]
        rest_R, rest_t = self.rest_viewmat[:3, :3], self.rest_viewmat[:3, 3]
        motion_R = R @ rest_R.T
        followed = self.torso.means @ motion_R.T + (t - motion_R @ rest_t)
        follow = torch.sigmoid(self.torso.follow_logits)[:, None]
        moved = self.torso.means @ torso[:, :3].T + torso[:, 3]
        torso_cam = self.torso.means + follow * (followed - self.torso.means) + (1 - follow) * (moved - self.torso.means)
        torso_means = (torso_cam - t) @ R  # into the head frame
        torso_quats = self.torso.quats @ quat_left_matrix(rotmat_to_quat(R.T)).T  # one rotation for all
        means = torch.cat([face.means, mouth_means, self.head.means, torso_means])
        quats = torch.cat([face.quats, self.mouth.quats, self.head.quats, torso_quats])
        scales = torch.cat([face.scales] + [torch.exp(g.log_scales) for g in (self.mouth, self.head, self.torso)])
        rest = self.groups()[1:]
        opacities = torch.sigmoid(torch.cat([face_opacity] + [g.opacity_logits for g in rest]))
        code = self.normalised_pose(viewmat, torso)
        logits = [face_color + f.color_basis @ code] + [g.color_logits + g.color_basis @ code for g in rest]
        colors = torch.sigmoid(torch.cat(logits))
        return means, quats, scales, opacities, colors

    def _frozen_parts(self) -> "_Frozen":
        """What :meth:`place` computes from the parameters alone, for rendering without gradients: worked out
        once and reused until a parameter changes (PyTorch's version counters say when), like
        :meth:`_face_encoding`. Two render threads may both build it at first; either result is the same."""
        tensors = [t for g in self.groups() for t in (*g.parameters(), g.parent, g.jaw)]
        key = tuple((id(t), t._version) for t in tensors)
        if self._frozen is not None and self._frozen[0] == key:
            return self._frozen[1]
        f, m, h, t = self.face, self.mouth, self.head, self.torso
        c = _plain
        parts = _Frozen(
            parent=f.parent.contiguous(), face_means=c(f.means),
            face_quats=c(f.quats / f.quats.norm(dim=-1, keepdim=True)), face_scales=c(torch.exp(f.log_scales)),
            mouth_means=c(m.means), mouth_jaw=c(m.jaw), head_means=c(h.means),
            rigid_quats=c(torch.cat([m.quats, h.quats])), torso_means=c(t.means),
            torso_follow=c(torch.sigmoid(t.follow_logits)), torso_quats=c(t.quats),
            scales_rest=c(torch.exp(torch.cat([m.log_scales, h.log_scales, t.log_scales]))),
            opacities=c(torch.sigmoid(torch.cat([g.opacity_logits for g in self.groups()]))),
            colors=c(torch.sigmoid(torch.cat([g.color_logits for g in self.groups()]))),
            color_logits=c(torch.cat([g.color_logits for g in self.groups()])),
            color_basis=c(torch.cat([g.color_basis for g in self.groups()])) if any(
                bool(g.color_basis.any()) for g in self.groups()) else None)
        self._frozen = (key, parts)
        return parts

    def _place_compiled(self, verts: Tensor, viewmat: Tensor, torso: Tensor
                        ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """:meth:`place` without gradients or a deformation field, on the CPU: the same numbers from one pass
        of the compiled ``place`` kernel (cuda_ext/csrc/place.cpp) over the cached constants, 0.64 ms for 47k
        Gaussians on one core where the PyTorch path takes 7.7-8.9 ms; opacities are the cached tensor, and so
        are the colours unless the avatar has a colour basis (then one matrix-vector product a frame)."""
        import cuda_ext

        p = self._frozen_parts()
        c = _plain
        means, quats, scales = cuda_ext.load("place").place(
            c(verts), self.faces.contiguous(), c(viewmat), c(self.rest_viewmat), p.parent, p.face_means, p.face_quats,
            p.face_scales, p.mouth_means, p.mouth_jaw, c(self.jaw_offset(verts)), p.head_means, p.rigid_quats,
            p.torso_means, p.torso_follow, p.torso_quats, c(torso), p.scales_rest)
        if p.color_basis is None:
            return means, quats, scales, p.opacities, p.colors
        colors = torch.sigmoid(torch.addmv(p.color_logits.view(-1), p.color_basis.view(-1, POSE_CODE),
                                           self.normalised_pose(viewmat, torso)).view(-1, 3))
        return means, quats, scales, p.opacities, colors


def pose_code(viewmat: Tensor, rest_viewmat: Tensor, torso: Tensor) -> Tensor:
    """(POSE_CODE,) float32 what the colour basis is driven by, from a frame's camera-from-head ``viewmat``
    (4, 4), the avatar's ``rest_viewmat`` (4, 4) and the shoulders' camera-frame motion ``torso`` (3, 4)
    (see :meth:`AvatarGaussians.place`): the head's rotation from rest as twice its quaternion's vector part
    (radians, for the small turns of a talking head), its shift from rest (metres), the shoulders' linear
    map minus the identity (2 x 2, row-major) and their shift (metres, x and y)."""
    motion_R = viewmat[:3, :3] @ rest_viewmat[:3, :3].T
    turn = 2.0 * rotmat_to_quat(motion_R)[1:]  # w >= 0
    shift = viewmat[:3, 3] - rest_viewmat[:3, 3]
    shoulders = torso[:2, :2] - torch.eye(2).to(torso)
    return torch.cat([turn, shift, shoulders.reshape(4), torso[:2, 3]]).float()


def torso_motion_m(affine_px: Tensor, model: AvatarGaussians, K: Tensor) -> Tensor:
    """(3, 4) float32 camera-frame motion of the shoulders from their image motion ``affine_px`` (2, 3)
    (a subject frame's ``torso.affine``: pixel x -> L x + b), at their depth.

    The shoulders sit about at one depth z, the torso Gaussians' median, and keep it (motion in depth is
    not tracked, only its effect in the image): a camera point p there is seen at f p / z + c, so the image
    map moves it to p' = L p + (z / f)(L c + b - c) in x and y."""
    z = model.torso.means.detach()[:, 2].median() if len(model.torso) else model.rest_viewmat[2, 3]
    return torso_motion_at(affine_px, z, K)


def torso_motion_at(affine_px: Tensor, z: Tensor, K: Tensor) -> Tensor:
    """:func:`torso_motion_m` for shoulders at depth ``z`` () metres."""
    z = torch.as_tensor(z, dtype=torch.float32)
    affine = affine_px.to(z)
    L, b = affine[:, :2], affine[:, 2]
    c = K[:2, 2].to(z)
    out = torch.eye(3, 4).to(z)
    out[:2, :2] = L
    out[:2, 3] = (L @ c + b - c) * z / K[0, 0].to(z)
    return out


def _plain(x: Tensor) -> Tensor:
    """``x`` as the compiled kernel takes it: detached, float32, contiguous (the same tensor when it is)."""
    return x.detach().float().contiguous()


class _Frozen(NamedTuple):
    """:meth:`AvatarGaussians._frozen_parts`: the constants the ``place`` kernel takes, and the opacities and
    colours of every Gaussian (GROUPS order)."""

    parent: Tensor  # (Nf,) int64
    face_means: Tensor  # (Nf, 3) triangle-local
    face_quats: Tensor  # (Nf, 4) unit, triangle-local
    face_scales: Tensor  # (Nf, 3) in units of the triangle's size
    mouth_means: Tensor  # (Nm, 3) head frame, metres
    mouth_jaw: Tensor  # (Nm,)
    head_means: Tensor  # (Nh, 3) head frame, metres
    rigid_quats: Tensor  # (Nm + Nh, 4) mouth, then head
    torso_means: Tensor  # (Nt, 3) camera frame, metres
    torso_follow: Tensor  # (Nt,) in [0, 1]
    torso_quats: Tensor  # (Nt, 4) camera frame
    scales_rest: Tensor  # (Nm + Nh + Nt, 3) metres
    opacities: Tensor  # (N,)
    colors: Tensor  # (N, 3) at the mean pose, what an avatar without a colour basis always shows
    color_logits: Tensor  # (N, 3)
    color_basis: Tensor | None  # (N, 3, POSE_CODE), None when it is all zeros
