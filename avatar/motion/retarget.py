"""Reenactment: another person's tracked face motion, retargeted onto this subject (``avatar render --motion OTHER``).

Both subjects' meshes share MediaPipe's topology, vertex for vertex. A frame of
the other person becomes the displacement of their mesh from their own mean
shape, in their head frame, scaled by the ratio of the two faces' sizes; the
subject's expression coefficients are the least-squares fit of that
displacement in its own basis (blinks, lips and brows alike, since every vertex
counts). The head pose is the other person's deviation from their mean pose,
applied about this subject's mean pose (``keep_pose``), or this subject's own
replayed poses.
"""

from __future__ import annotations

import numpy as np

from avatar.core.errors import UserError
from avatar.motion.motion_file import Motion
from avatar.motion.pose import MeanPose, replay, stabilise
from preprocess.subject import Subject

RIDGE = 1e-6
"""Tikhonov weight of the least-squares fit, relative to the basis' mean energy (keeps it well posed)."""


def face_size(mean_shape: np.ndarray) -> float:
    """Root-mean-square distance of the face vertices from their centroid, metres."""
    face = mean_shape[:468]
    return float(np.sqrt(((face - face.mean(0)) ** 2).sum(-1).mean()))


def retarget_expressions(source_verts: np.ndarray, source_mean: np.ndarray, target_mean: np.ndarray,
                         target_basis: np.ndarray) -> np.ndarray:
    """(F, K) float32 target coefficients whose mesh best matches (F, V, 3) source meshes' displacements."""
    scale = face_size(target_mean) / face_size(source_mean)
    disp = ((source_verts - source_mean) * scale).reshape(len(source_verts), -1).astype(np.float64)
    basis = target_basis.reshape(len(target_basis), -1).astype(np.float64)
    gram = basis @ basis.T
    gram += RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    return np.linalg.solve(gram, basis @ disp.T).T.astype(np.float32)


def reenact(source: Subject, target: Subject, replay_deviations: np.ndarray | None = None,
            keep_pose: bool = True) -> Motion:
    """The motion of ``source``'s whole clip for ``target``.

    ``replay_deviations``: (T, 6) the target's own pose deviations to replay when
    ``keep_pose`` is off (from its motion model).
    """
    if abs(source.fps - target.fps) > 1e-3:
        raise UserError(f"{source.paths.root} is at {source.fps:g} fps, {target.paths.root} at {target.fps:g}",
                        "preprocess both at the same frame rate (--set preprocess.decode.fps=25)")
    s, t = source.tracking, target.tracking
    expr = retarget_expressions(s.verts, s.mean_shape, t.mean_shape, t.expr_basis)
    target_pose = MeanPose.of(t.viewmats[target.train_frames])
    if keep_pose:
        dev = MeanPose.of(s.viewmats[source.train_frames]).deviations(s.viewmats)
        dev[:, 3:] *= face_size(t.mean_shape) / face_size(s.mean_shape)
        dev = stabilise(dev, source.fps)
    else:
        if replay_deviations is None:
            raise ValueError("keep_pose=False needs the target's replay deviations")
        dev = replay(replay_deviations, len(expr))
    verts = t.mean_shape + np.einsum("fk,kvc->fvc", expr, t.expr_basis)
    meta = {"subject": str(target.paths.root), "reenacted_from": str(source.paths.root), "keep_pose": keep_pose}
    if source.manifest.has_audio:
        meta["audio"] = str(source.paths.audio.resolve())
    from avatar.motion.face import ChannelCalibration

    calibration = ChannelCalibration.fit(t.verts[target.train_frames])
    return Motion(float(target.fps), expr, target_pose.viewmats(dev), calibration(verts), verts.astype(np.float32),
                  meta)
