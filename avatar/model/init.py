"""First placement and colours of an avatar's Gaussians, from a subject folder.

The fit starts from a model that already looks like the person, so its
iterations refine instead of search:

- face: ``per_triangle`` Gaussians at random barycentric points of every mesh
  triangle, flat in the triangle's plane, coloured by the median of the pixels
  they project to in ``color_frames`` training frames where their triangle faces
  the camera;
- head: rays through head-label pixels outside the face mesh (hair, ears),
  met with an ellipsoid around the skull fitted to the mesh, in the head frame;
- mouth: rays through mouth-interior pixels of the most open-mouthed training
  frames, met with a plane just behind the inner lips; those below the lips'
  midline follow the jaw (lower teeth, tongue), the others the skull;
- torso: torso-label pixels lifted to just behind the head's depth, in the camera frame,
  moved back by the frame's tracked shoulder shift to where the shoulders usually are.

Sizes follow the pixel footprint, so the first render has no holes.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from avatar.model.binding import to_triangle_local, triangle_frames
from avatar.model.config import DeformConfig, InitConfig
from avatar.model.deform import make_deformation_field
from avatar.model.gaussians import AvatarGaussians, GaussianGroup, pose_code, torso_motion_at, torso_motion_m
from preprocess.face_topology import face_oval, face_triangles
from preprocess.segmentation import LABEL_EYES, LABEL_HEAD, LABEL_MOUTH, LABEL_TORSO
from preprocess.subject import Subject

IDENTITY = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
FOOTPRINT = 0.35
"""Head and torso Gaussians start this wide (standard deviation) in units of the pixel spacing of
their samples (on may_5s: 0.35 gives 25.8-26.8 dB untrained, 0.5 blurs to 25.0-25.7, 0.7 to 23.6-24.0)."""
CHIN_VERTICES = (176, 148, 152, 377, 400)
"""The chin's five face-oval vertices: their mean motion from the neutral mesh is the jaw's."""
INNER_LIPS_MID = (13, 14)
"""Inner-lip midpoints: the mouth interior above their middle is upper teeth, below it lower teeth."""
MIN_FOOTPRINT_PX = 1.5
"""...and never narrower than this many pixels, so a densely sampled region has no holes either."""


def init_avatar(subject: Subject, cfg: InitConfig = InitConfig(), deform: DeformConfig | None = None
                ) -> AvatarGaussians:
    """An untrained avatar of ``subject`` (deterministic for a given ``cfg.seed``), with a deformation
    field of settings ``deform`` when given (it starts as the identity)."""
    rng = np.random.default_rng(cfg.seed)
    train = subject.train_frames
    frames = train[np.unique(np.linspace(0, len(train) - 1, cfg.color_frames).round().astype(int))]
    views = [_View(subject, int(i)) for i in frames]
    faces = face_triangles().astype(np.int64)
    face = _face_group(subject, faces, views, cfg, rng)
    mouth = _mouth_group(subject, cfg, rng)
    head = _head_group(subject, views, cfg, rng)
    rest = _rest_pose(subject)
    torso = _torso_group(subject, views, rest, cfg, rng)
    mean_shape = torch.from_numpy(subject.tracking.mean_shape.astype(np.float32))
    field = None if deform is None else make_deformation_field(deform, subject.tracking.n_expr, mean_shape, cfg.seed)
    model = AvatarGaussians(face, mouth, head, torso, torch.from_numpy(faces), mean_shape,
                            torch.tensor(CHIN_VERTICES), torch.from_numpy(rest.astype(np.float32)), field)
    model.set_pose_range(_training_pose_codes(model, subject))
    return model


def _training_pose_codes(model: AvatarGaussians, subject: Subject) -> torch.Tensor:
    """(F, POSE_CODE) the training frames' pose codes (what the colour basis is normalised by)."""
    t = subject.tracking
    K = torch.from_numpy(t.K(subject.size))
    viewmats, affine = torch.from_numpy(t.viewmats), torch.from_numpy(subject.torso.affine)
    with torch.no_grad():
        return torch.stack([pose_code(viewmats[i], model.rest_viewmat, torso_motion_m(affine[i], model, K))
                            for i in subject.train_frames])


class _View:
    """One training frame: image, labels, camera, mesh."""

    def __init__(self, subject: Subject, i: int):
        t = subject.tracking
        self.image = subject.frame(i).astype(np.float32) / 255.0
        self.labels = subject.labels(i)
        self.view = t.viewmats[i].astype(np.float64)
        self.K = t.K(subject.size).astype(np.float64)
        self.verts = t.verts[i]
        self.landmarks2d = t.landmarks2d[i]
        self.torso_affine = subject.torso.affine[i].astype(np.float64)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return points @ self.view[:3, :3].T + self.view[:3, 3]

    def pixels(self, cam: np.ndarray) -> np.ndarray:
        """(N, 2) int pixel indices (column, row) of camera points; -1 where behind the camera."""
        uv = cam @ self.K.T
        uv = uv[:, :2] / np.maximum(uv[:, 2:], 1e-9)
        px = np.floor(uv).astype(np.int64)
        px[cam[:, 2] <= 0] = -1
        return px

    def sample(self, px: np.ndarray, labels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Colours (N, 3) at pixels and whether each is inside the image on one of ``labels``."""
        h, w = self.labels.shape
        inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        x, y = np.clip(px[:, 0], 0, w - 1), np.clip(px[:, 1], 0, h - 1)
        return self.image[y, x], inside & np.isin(self.labels[y, x], labels)

    def camera_rays(self, px: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame directions through pixel centres, scaled to z = 1."""
        return np.c_[px + 0.5, np.ones(len(px))] @ np.linalg.inv(self.K).T

    def ray(self, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Head-frame origin (3,) and unit directions (N, 3) of rays through pixel centres."""
        R, t = self.view[:3, :3], self.view[:3, 3]
        d = self.camera_rays(px) @ R  # = (R^T d^T)^T
        return -R.T @ t, d / np.linalg.norm(d, axis=1, keepdims=True)


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 1e-3, 1 - 1e-3)
    return np.log(x / (1 - x))


def _group(means, quats, log_scales, colors, opacity: float, parent=None, jaw=None) -> GaussianGroup:
    n = len(means)
    return GaussianGroup(torch.as_tensor(means, dtype=torch.float32), torch.as_tensor(quats, dtype=torch.float32),
                         torch.as_tensor(log_scales, dtype=torch.float32),
                         torch.full((n,), float(_logit(np.array(opacity)))),
                         torch.as_tensor(_logit(colors), dtype=torch.float32),
                         parent=None if parent is None else torch.as_tensor(parent),
                         jaw=None if jaw is None else torch.as_tensor(jaw, dtype=torch.float32))


def _face_group(subject: Subject, faces: np.ndarray, views: list[_View], cfg: InitConfig,
                rng: np.random.Generator) -> GaussianGroup:
    n_tri = len(faces)
    parent = np.repeat(np.arange(n_tri), cfg.per_triangle)
    r1, r2 = rng.random(len(parent)), rng.random(len(parent))
    bary = np.stack([1 - np.sqrt(r1), np.sqrt(r1) * (1 - r2), np.sqrt(r1) * r2], 1)  # uniform on a triangle
    mean_shape = torch.from_numpy(subject.tracking.mean_shape.astype(np.float64))
    frames = triangle_frames(mean_shape, torch.from_numpy(faces))
    corners = mean_shape.numpy()[faces[parent]]  # (N, 3 corners, 3)
    points = torch.from_numpy((bary[:, :, None] * corners).sum(1))
    n = len(parent)
    spread = np.log(0.5 / np.sqrt(cfg.per_triangle))  # about the spacing of the samples, in triangle sizes
    local_means = to_triangle_local(points, torch.from_numpy(parent), frames)
    log_scales = np.tile([spread, spread, np.log(0.05)], (n, 1))
    colors = _face_colors(views, faces, parent, bary)
    return _group(local_means.numpy(), np.tile(IDENTITY, (n, 1)), log_scales, colors, cfg.opacity, parent)


def _face_colors(views: list[_View], faces: np.ndarray, parent: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """(N, 3) median colour of each face Gaussian over the views where its triangle faces the camera."""
    samples = np.full((len(views), len(parent), 3), np.nan, np.float32)
    for k, v in enumerate(views):
        corners = v.to_camera(v.verts.astype(np.float64))[faces]  # (T, 3, 3) camera frame
        normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        facing = (normal * corners.mean(1)).sum(1) < 0  # toward the camera
        cam = (bary[:, :, None] * corners[parent]).sum(1)
        color, ok = v.sample(v.pixels(cam), (LABEL_HEAD, LABEL_MOUTH, LABEL_EYES))
        ok &= facing[parent]
        samples[k, ok] = color[ok]
    seen = ~np.isnan(samples[..., 0]).all(0)
    colors = np.full((len(parent), 3), 0.5, np.float32)  # grey where no view saw it (inside the mouth, say)
    colors[seen] = np.nanmedian(samples[:, seen], axis=0)
    return colors


def _skull(mean_shape: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre and semi-axes (metres, head frame) of an ellipsoid around the skull, from the face mesh."""
    lo, hi = mean_shape.min(0), mean_shape.max(0)
    width, height = hi[0] - lo[0], hi[1] - lo[1]
    # the mesh stops at the forehead: the skull reaches higher, so the centre sits above the mesh's middle
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2 - 0.15 * height, 0.0])
    axes = np.array([0.5 * width, 0.55 * height, 0.6 * width]) * margin
    return centre, axes


def _head_group(subject: Subject, views: list[_View], cfg: InitConfig, rng: np.random.Generator) -> GaussianGroup:
    centre, axes = _skull(subject.tracking.mean_shape.astype(np.float64), cfg.skull_margin)
    per_view = int(np.ceil(cfg.head_gaussians / len(views)))
    means, colors, sizes = [], [], []
    for v in views:
        oval = np.zeros(v.labels.shape, np.uint8)
        cv2.fillPoly(oval, [np.round(v.landmarks2d[face_oval()]).astype(np.int32)], 1)
        ys, xs = np.nonzero((v.labels == LABEL_HEAD) & (oval == 0))
        if len(xs) == 0:
            continue
        pick = rng.choice(len(xs), size=min(per_view, len(xs)), replace=False)
        px = np.c_[xs[pick], ys[pick]]
        origin, d = v.ray(px)
        points = _hit_ellipsoid(origin, d, centre, axes)
        means.append(points)
        colors.append(v.image[px[:, 1], px[:, 0]])
        sizes.append(_footprint(len(xs), len(pick)) * v.to_camera(points)[:, 2] / v.K[0, 0])
    return _rigid_group(means, colors, sizes, cfg)


def _footprint(region_px: int, samples: int) -> float:
    """Standard deviation, pixels, of Gaussians sampled ``samples`` times from ``region_px`` pixels."""
    return max(MIN_FOOTPRINT_PX, FOOTPRINT * np.sqrt(region_px / max(samples, 1)))


def _hit_ellipsoid(origin: np.ndarray, d: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(N, 3) first hit of rays ``origin + s d`` with the ellipsoid; the point nearest its centre on a miss."""
    o, dd = (origin - centre) / axes, d / axes
    a, b, c = (dd * dd).sum(1), 2 * (dd @ o), o @ o - 1
    disc = b * b - 4 * a * c
    near = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    s = np.where(disc >= 0, near, -b / (2 * a))
    return origin + s[:, None] * d


def _mouth_group(subject: Subject, cfg: InitConfig, rng: np.random.Generator) -> GaussianGroup:
    t = subject.tracking
    train = subject.train_frames
    widest = train[np.argsort(-t.mouth_open[train], kind="stable")[:cfg.color_frames]]
    chin = list(CHIN_VERTICES)
    per_view = int(np.ceil(cfg.mouth_gaussians / len(widest)))
    means, colors, sizes, jaws = [], [], [], []
    for i in widest:
        v = _View(subject, int(i))
        ys, xs = np.nonzero(v.labels == LABEL_MOUTH)
        if len(xs) == 0 or per_view == 0:
            continue
        pick = rng.choice(len(xs), size=min(per_view, len(xs)), replace=False)
        px = np.c_[xs[pick], ys[pick]]
        origin, d = v.ray(px)
        depth = v.verts[list(INNER_LIPS_MID)].astype(np.float64)[:, 2].mean() + cfg.mouth_depth_m
        points = origin + ((depth - origin[2]) / d[:, 2])[:, None] * d  # the plane z = depth, head frame
        midline = v.landmarks2d[list(INNER_LIPS_MID), 1].mean()
        jaw = (px[:, 1] + 0.5 > midline).astype(np.float32)
        offset = (v.verts[chin] - t.mean_shape[chin]).mean(0)
        means.append(points - jaw[:, None] * offset)  # stored at the neutral jaw
        colors.append(v.image[px[:, 1], px[:, 0]])
        sizes.append(_footprint(len(xs), len(pick)) * v.to_camera(points)[:, 2] / v.K[0, 0])
        jaws.append(jaw)
    group = _rigid_group(means, colors, sizes, cfg)
    group.jaw = torch.from_numpy(np.concatenate(jaws)) if jaws else torch.zeros(0)
    return group


def _rest_pose(subject: Subject) -> np.ndarray:
    """(4, 4) the training frame's viewmat nearest the mean head position: where the torso starts out."""
    views = subject.tracking.viewmats[subject.train_frames].astype(np.float64)
    centre = views[:, :3, 3].mean(0)
    return views[np.argmin(np.linalg.norm(views[:, :3, 3] - centre, axis=1))]


def _neck_follow(cam_points: np.ndarray, subject: Subject, rest: np.ndarray) -> np.ndarray:
    """(N,) first follow weights of torso Gaussians at camera points: 0.95 (following the head) at the
    chin, fading to 0.05 one face height below it, where the shoulders are."""
    shape = subject.tracking.mean_shape.astype(np.float64)
    cam_shape = shape @ rest[:3, :3].T + rest[:3, 3]
    chin_y = cam_shape[:, 1].max()
    face_h = cam_shape[:, 1].max() - cam_shape[:, 1].min()
    return np.clip(1.0 - (cam_points[:, 1] - chin_y) / face_h, 0.05, 0.95)


def _to_rest(points: np.ndarray, w: np.ndarray, view: np.ndarray, rest: np.ndarray, shoulders: np.ndarray
             ) -> np.ndarray:
    """Camera points seen at ``view`` -> where they sit at the rest pose, given their follow weights and
    the frame's shoulder motion ``shoulders`` (3, 4) (p -> T p + t): the inverse of
    ``p = p_rest + w (M p_rest - p_rest) + (1 - w) (T p_rest - p_rest)``, M the head's motion from rest to
    ``view`` (see ``AvatarGaussians.place``)."""
    motion = view @ np.linalg.inv(rest)
    A = (1 - w)[:, None, None] * shoulders[:, :3] + w[:, None, None] * motion[:3, :3]
    b = points - w[:, None] * motion[:3, 3] - (1 - w)[:, None] * shoulders[:, 3]
    return np.linalg.solve(A, b[..., None])[..., 0]


def _torso_group(subject: Subject, views: list[_View], rest: np.ndarray, cfg: InitConfig,
                 rng: np.random.Generator) -> GaussianGroup:
    per_view = int(np.ceil(cfg.torso_gaussians / len(views)))
    means, colors, sizes, follow = [], [], [], []
    for v in views:
        ys, xs = np.nonzero(v.labels == LABEL_TORSO)
        if len(xs) == 0:
            continue
        pick = rng.choice(len(xs), size=min(per_view, len(xs)), replace=False)
        px = np.c_[xs[pick], ys[pick]]
        depth = v.view[2, 3] + cfg.torso_depth_m
        seen = v.camera_rays(px) * depth  # camera frame, z = depth
        w = _neck_follow(seen, subject, rest)
        shoulders = torso_motion_at(torch.from_numpy(v.torso_affine), depth, torch.from_numpy(v.K)).double().numpy()
        means.append(_to_rest(seen, w, v.view, rest, shoulders))
        follow.append(w)
        colors.append(v.image[px[:, 1], px[:, 0]])
        sizes.append(np.full(len(px), _footprint(len(xs), len(pick)) * depth / v.K[0, 0]))
    group = _rigid_group(means, colors, sizes, cfg)
    if follow:
        group.follow_logits.data = torch.from_numpy(_logit(np.concatenate(follow)).astype(np.float32))
    return group


def _rigid_group(means: list, colors: list, sizes: list, cfg: InitConfig) -> GaussianGroup:
    if not means:
        empty = np.zeros((0, 3))
        return _group(empty, np.zeros((0, 4)), empty, empty + 0.5, cfg.opacity)
    means, colors, sizes = np.concatenate(means), np.concatenate(colors), np.concatenate(sizes)
    n = len(means)
    return _group(means, np.tile(IDENTITY, (n, 1)), np.log(np.repeat(sizes[:, None], 3, 1)), colors, cfg.opacity)
