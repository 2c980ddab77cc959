"""Face tracking with a head-pose stabiliser: one joint fit over the whole clip.

Model (see ``face_model.py``): head-frame vertices ``V_f = mean + delta + expr_f @ basis``
(metres), camera point ``X = R_f V_f + t_f`` (camera-from-head, OpenCV axes as
in ``avatar/core/camera.py``), pinhole projection with one focal length for the clip
and the principal point at the image centre.

Objective, minimised jointly over all frames:
  * data: Huber loss on each landmark's 2D error (pixels), rigid landmarks
    weighted up so they carry the pose while mouth, eyes and brows are explained
    by expression; each valid frame's weights sum to 1 (units: px^2 per frame);
  * stabiliser: squared second differences of rotation (degrees) and translation
    (mm) between consecutive frames; it also carries frames without a valid face;
  * unit-Gaussian L2 prior on expression coefficients;
  * focal length: squared log-ratio to a field-of-view prior (with a face-sized
    object the focal length is only weakly observable, through perspective);
  * shared mean-shape correction ``delta`` (its depth comes from MediaPipe's
    learned z): L2 prior in mm.

Solver: Levenberg-Marquardt with iteratively reweighted Huber weights (PyTorch,
CPU, vectorised over frames). The per-frame unknowns (rotation, translation,
expression) are solved together: expression is eliminated per frame by a Schur
complement, leaving a banded (block-pentadiagonal) system in the poses, which a
sparse solver handles exactly. The smoothness prior couples every frame to its
neighbours, so first-order methods (Adam, L-BFGS) need hundreds of passes over
the clip where this needs a handful. The shared unknowns (focal length, shape
correction) take a Gauss-Newton step after every frame step; the focal length
moves along the "dolly zoom" direction (depth scaled with focal) so that only
perspective, the observable part, changes.

The raw baseline (``pnp_viewmats``) is per-frame solvePnP of the mean shape on
all landmarks with the same focal and no smoothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from avatar.core.camera import intrinsics
from avatar.core.errors import UserError
from avatar.core.progress import progress
from avatar.core.rotations import axis_angle_to_matrix
from preprocess.config import TrackingConfig
from preprocess.face_model import FaceModel, build_face_model, eye_openness, mouth_openness
from preprocess.landmark_ids import RIGID_LANDMARKS
from preprocess.subject_data import Tracking

N_POSE = 6  # per-frame rotation (axis-angle, radians) and translation (metres)


# ---------------------------------------------------------------- rotations
def axis_angle_jacobian(rvec: torch.Tensor, step: float = 1e-6) -> torch.Tensor:
    """(F, 3) float64 axis-angle -> (F, 3, 3, 3) dR/dr_j (index j second), central differences."""
    eye = torch.eye(3, dtype=rvec.dtype) * step
    return torch.stack([(axis_angle_to_matrix(rvec + e) - axis_angle_to_matrix(rvec - e)) / (2 * step)
                        for e in eye], 1)


def to_viewmats(rvecs: np.ndarray, tvecs: np.ndarray) -> np.ndarray:
    """(F, 3) axis-angle + (F, 3) translation (metres) -> (F, 4, 4) float32 viewmats."""
    view = np.tile(np.eye(4, dtype=np.float32), (len(rvecs), 1, 1))
    view[:, :3, :3] = axis_angle_to_matrix(torch.as_tensor(rvecs, dtype=torch.float64)).numpy()
    view[:, :3, 3] = tvecs
    return view


def unwrap_axis_angle(rvecs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Choose, per frame, the axis-angle representative nearest the previous valid frame.

    r and r * (1 - 2 pi / |r|) are the same rotation; PnP may return either when
    |r| is near pi, which would wreck the smoothness prior.
    """
    out = rvecs.copy()
    prev = None
    for f in np.flatnonzero(valid):
        angle = np.linalg.norm(out[f])
        if prev is not None and angle > 1e-8:
            alt = out[f] * (1 - 2 * math.pi / angle)
            if np.linalg.norm(alt - prev) < np.linalg.norm(out[f] - prev):
                out[f] = alt
        prev = out[f]
    return out


def fill_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(F, D) per-frame values: invalid frames linearly interpolated, ends held."""
    idx = np.flatnonzero(valid)
    frames = np.arange(len(values))
    return np.stack([np.interp(frames, idx, values[idx, d]) for d in range(values.shape[1])], 1)


def hold_ends(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(F, D) per-frame values with the invalid frames before the first / after the last valid one held."""
    idx = np.flatnonzero(valid)
    out = values.copy()
    out[: idx[0]], out[idx[-1] + 1:] = values[idx[0]], values[idx[-1]]
    return out


def solve_pnp(model_pts: np.ndarray, image_pts: np.ndarray, valid: np.ndarray, K: np.ndarray,
              desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame PnP of fixed head-frame points, no smoothing.

    model_pts: (N, 3) metres; image_pts: (F, N, 2) pixels; valid: (F,) bool.
    Returns rvecs (F, 3) and tvecs (F, 3); invalid frames are interpolated.
    """
    rvecs, tvecs = np.zeros((len(image_pts), 3)), np.zeros((len(image_pts), 3))
    obj, K = model_pts.astype(np.float64), K.astype(np.float64)
    for f in progress(np.flatnonzero(valid), desc=desc, unit="frame"):
        img = image_pts[f].astype(np.float64)
        _, r, t = cv2.solvePnP(obj, img, K, None, flags=cv2.SOLVEPNP_SQPNP)
        r, t = cv2.solvePnPRefineLM(obj, img, K, None, r, t)
        rvecs[f], tvecs[f] = r[:, 0], t[:, 0]
    return fill_invalid(unwrap_axis_angle(rvecs, valid), valid), fill_invalid(tvecs, valid)


# ---------------------------------------------------------------- the joint fit
@dataclass
class FitState:
    """Unknowns of the joint fit, float64 tensors (F frames, N vertices, K components)."""

    rvecs: torch.Tensor  # (F, 3) axis-angle, radians
    tvecs: torch.Tensor  # (F, 3) metres
    expr: torch.Tensor  # (F, K)
    log_focal: float  # log pixels
    shape_delta: torch.Tensor  # (N, 3) metres


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber cost of non-negative residual lengths: r^2 / 2 below delta, linear above."""
    return torch.where(r < delta, 0.5 * r ** 2, delta * (r - 0.5 * delta))


def second_difference_operator(n: int) -> scipy.sparse.csr_matrix:
    """(n-2, n) sparse matrix of x[f-1] - 2 x[f] + x[f+1]."""
    return scipy.sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(max(n - 2, 0), n), format="csr")


class JointFit:
    """Objective, normal equations and Levenberg-Marquardt steps of the whole-clip fit."""

    def __init__(self, model: FaceModel, points2d: np.ndarray, valid: np.ndarray, focal_prior: float,
                 width: int, height: int, cfg: TrackingConfig, chunk: int = 512):
        f64 = torch.float64
        self.cfg, self.chunk = cfg, chunk
        self.mean = torch.as_tensor(model.mean, dtype=f64)
        self.basis = torch.as_tensor(model.basis, dtype=f64).permute(1, 2, 0).contiguous()  # (N, 3, K)
        self.basis32 = self.basis.float()
        self.target = torch.as_tensor(np.nan_to_num(points2d), dtype=f64)
        landmark_w = np.ones(len(model.mean))
        landmark_w[RIGID_LANDMARKS] = cfg.w_rigid
        # (F, N) data weights: zero on invalid frames, each valid frame sums to 1.
        self.weights = torch.as_tensor(valid[:, None] * landmark_w / landmark_w.sum(), dtype=f64)
        self.n_valid = float(valid.sum())
        self.centre = torch.tensor([width / 2.0, height / 2.0], dtype=f64)
        self.log_focal_prior = math.log(focal_prior)
        # Prior weights in the solver's units (radians, metres); the config's are in degrees, mm.
        self.c_rot = cfg.w_smooth_rot * math.degrees(1.0) ** 2
        self.c_trans = cfg.w_smooth_trans * 1e6
        self.c_shape = cfg.w_shape_l2 * 1e6 * self.n_valid / model.mean.size
        d2 = second_difference_operator(len(points2d))
        self.smooth_hessian = scipy.sparse.kron(  # of the stabiliser, over frame-major poses
            2 * (d2.T @ d2), scipy.sparse.diags([self.c_rot] * 3 + [self.c_trans] * 3), format="csr")

    # ---- forward model
    def _chunks(self, n: int):
        return (slice(s, s + self.chunk) for s in range(0, n, self.chunk))

    def _forward(self, st: FitState, sl: slice):
        """Residuals (f, N, 2) px, camera points (f, N, 3), verts (f, N, 3), rotations (f, 3, 3)."""
        verts = self.mean + st.shape_delta + torch.einsum("nck,fk->fnc", self.basis, st.expr[sl])
        rot = axis_angle_to_matrix(st.rvecs[sl])
        cam = verts @ rot.transpose(1, 2) + st.tvecs[sl, None]
        proj = math.exp(st.log_focal) * cam[..., :2] / cam[..., 2:3] + self.centre
        return proj - self.target[sl], cam, verts, rot

    def _robust_weights(self, residual: torch.Tensor, sl: slice) -> torch.Tensor:
        """(f, N) data weight x Huber IRLS weight min(1, delta / |r|)."""
        norm = residual.norm(dim=-1)
        return self.weights[sl] * torch.clamp(self.cfg.huber_px / norm.clamp_min(1e-12), max=1.0)

    def _projection_jacobian(self, cam: torch.Tensor, focal: float) -> torch.Tensor:
        """(f, N, 3) camera points -> (f, N, 2, 3) d(u, v)/d(camera point)."""
        inv_z = 1.0 / cam[..., 2]
        jac = torch.zeros(cam.shape[:2] + (2, 3), dtype=cam.dtype)
        jac[..., 0, 0] = jac[..., 1, 1] = focal * inv_z
        jac[..., :, 2] = -focal * cam[..., :2] * (inv_z ** 2)[..., None]
        return jac

    def objective(self, st: FitState) -> float:
        """Total objective (see module docstring), summed over frames."""
        delta = self.cfg.huber_px
        data = 0.0
        for sl in self._chunks(len(st.rvecs)):
            r = self._forward(st, sl)[0].norm(dim=-1)  # (f, N) landmark errors, px
            data += float((self.weights[sl] * huber(r, delta)).sum())
        pose = torch.cat([st.rvecs, st.tvecs], 1).numpy().ravel()
        smooth = 0.5 * pose @ (self.smooth_hessian @ pose)
        return (data + smooth + self.cfg.w_expr_l2 * float((st.expr ** 2).sum())
                + self.cfg.w_focal_prior * self.n_valid * (st.log_focal - self.log_focal_prior) ** 2
                + self.c_shape * float((st.shape_delta ** 2).sum()))

    # ---- per-frame step: pose and expression of every frame at once
    def frame_normal_equations(self, st: FitState) -> tuple[torch.Tensor, torch.Tensor]:
        """Gauss-Newton H (F, P, P) and gradient g (F, P) of data + expression prior, P = 6 + K."""
        n_frames, n_expr = st.expr.shape
        n_par = N_POSE + n_expr
        hess = torch.zeros(n_frames, n_par, n_par, dtype=torch.float64)
        grad = torch.zeros(n_frames, n_par, dtype=torch.float64)
        focal = math.exp(st.log_focal)
        f32 = torch.float32  # Jacobians in single precision: half the memory traffic, ample for a GN step
        for sl in self._chunks(n_frames):
            residual, cam, verts, rot = self._forward(st, sl)
            d_cam = self._projection_jacobian(cam, focal).to(f32)
            jac = torch.empty(d_cam.shape[:3] + (n_par,), dtype=f32)  # (f, N, 2, P)
            d_rot = axis_angle_jacobian(st.rvecs[sl]).to(f32)
            jac[..., :3] = torch.einsum("fnac,fjcd,fnd->fnaj", d_cam, d_rot, verts.to(f32))
            jac[..., 3:N_POSE] = d_cam
            jac[..., N_POSE:] = torch.einsum("fnad,ndk->fnak", d_cam @ rot[:, None].to(f32), self.basis32)
            jac = jac.flatten(1, 2)  # (f, 2N, P)
            jac_w = jac * self._robust_weights(residual, sl).to(f32).repeat_interleave(2, dim=1)[..., None]
            hess[sl] = (jac_w.transpose(1, 2) @ jac).double()
            grad[sl] = (jac_w.transpose(1, 2) @ residual.flatten(1, 2)[..., None].to(f32))[..., 0].double()
        hess[:, N_POSE:, N_POSE:] += 2 * self.cfg.w_expr_l2 * torch.eye(n_expr, dtype=torch.float64)
        grad[:, N_POSE:] += 2 * self.cfg.w_expr_l2 * st.expr
        return hess, grad

    def frame_step(self, st: FitState, hess: torch.Tensor, grad: torch.Tensor, damping: float) -> FitState:
        """Damped Gauss-Newton step of all poses and expressions; expression eliminated per frame."""
        n_frames = len(hess)
        diag = torch.diagonal(hess, dim1=1, dim2=2)
        hess = hess + torch.diag_embed(damping * diag + 1e-12)
        h_pp, h_pe, h_ee = hess[:, :N_POSE, :N_POSE], hess[:, :N_POSE, N_POSE:], hess[:, N_POSE:, N_POSE:]
        g_p, g_e = grad[:, :N_POSE], grad[:, N_POSE:]
        ee_inv = torch.linalg.solve(h_ee, torch.cat([h_pe.transpose(1, 2), g_e[..., None]], -1))
        schur = (h_pp - h_pe @ ee_inv[..., :N_POSE]).numpy()
        schur_g = (g_p - (h_pe @ ee_inv[..., N_POSE:])[..., 0]).numpy()
        # Block-diagonal Schur complements + the stabiliser's banded Hessian, frame-major order.
        rows = np.arange(n_frames)[:, None, None] * N_POSE + np.arange(N_POSE)[None, :, None]
        cols = rows.transpose(0, 2, 1)
        rows, cols = np.broadcast_arrays(rows, cols)
        blocks = scipy.sparse.csr_matrix((schur.ravel(), (rows.ravel(), cols.ravel())),
                                         shape=(n_frames * N_POSE,) * 2)
        smooth = self.smooth_hessian
        lhs = blocks + smooth + scipy.sparse.diags(damping * smooth.diagonal())
        pose = torch.cat([st.rvecs, st.tvecs], 1).numpy().ravel()
        rhs = -(schur_g.ravel() + smooth @ pose)
        d_pose = scipy.sparse.linalg.spsolve(lhs.tocsc(), rhs, permc_spec="NATURAL").reshape(n_frames, N_POSE)
        d_pose = torch.as_tensor(d_pose)
        d_expr = -(ee_inv[..., N_POSE:] + ee_inv[..., :N_POSE] @ d_pose[..., None])[..., 0]
        return replace(st, rvecs=st.rvecs + d_pose[:, :3], tvecs=st.tvecs + d_pose[:, 3:],
                       expr=st.expr + d_expr)

    # ---- shared step: focal length (dolly zoom) and mean-shape correction
    def global_step(self, st: FitState, damping: float) -> FitState:
        """Damped Gauss-Newton step of log-focal and shape correction, per-frame unknowns fixed.

        The focal moves along f -> f e^a, t_z -> t_z e^a, which keeps each head's
        image size and changes only perspective. Vertex offsets touch only their
        own landmark, so the system is block-diagonal (3 x 3 per vertex) bordered
        by the focal row, solved in closed form.
        """
        n_verts = len(self.mean)
        h_dd = torch.zeros(n_verts, 3, 3, dtype=torch.float64)
        g_d = torch.zeros(n_verts, 3, dtype=torch.float64)
        h_ad = torch.zeros(n_verts, 3, dtype=torch.float64)
        h_aa, g_a = 0.0, 0.0
        focal = math.exp(st.log_focal)
        for sl in self._chunks(len(st.rvecs)):
            residual, cam, _, rot = self._forward(st, sl)
            w = self._robust_weights(residual, sl)[..., None]
            j_shape = self._projection_jacobian(cam, focal) @ rot[:, None]  # (f, N, 2, 3)
            j_focal = (residual + self.target[sl] - self.centre) * (1 - st.tvecs[sl, None, 2:] / cam[..., 2:])
            j_shape_w = (j_shape * w[..., None]).transpose(2, 3)  # (f, N, 3, 2)
            h_dd += (j_shape_w @ j_shape).sum(0)
            g_d += (j_shape_w @ residual[..., None]).sum(0)[..., 0]
            h_ad += (j_shape_w @ j_focal[..., None]).sum(0)[..., 0]
            h_aa += float((w * j_focal ** 2).sum())
            g_a += float((w * j_focal * residual).sum())
        # Priors; the stabiliser's depth term scales as e^{2a} along the dolly zoom.
        dz = second_difference_operator(len(st.tvecs)) @ st.tvecs[:, 2].numpy()
        h_aa += 2 * self.cfg.w_focal_prior * self.n_valid + 4 * self.c_trans * float(dz @ dz)
        g_a += 2 * self.cfg.w_focal_prior * self.n_valid * (st.log_focal - self.log_focal_prior)
        g_a += 2 * self.c_trans * float(dz @ dz)
        h_aa *= 1 + damping
        if not self.cfg.refine_shape:
            d_focal = -g_a / h_aa
            return self._apply_global(st, d_focal, torch.zeros_like(st.shape_delta))
        h_dd += torch.diag_embed(damping * torch.diagonal(h_dd, dim1=1, dim2=2)) \
            + 2 * self.c_shape * torch.eye(3, dtype=torch.float64)
        g_d += 2 * self.c_shape * st.shape_delta
        solved = torch.linalg.solve(h_dd, torch.stack([g_d, h_ad], -1))  # H_dd^-1 [g_d, h_ad]
        schur_a = h_aa - float((h_ad * solved[..., 1]).sum())
        d_focal = -(g_a - float((h_ad * solved[..., 0]).sum())) / schur_a
        return self._apply_global(st, d_focal, -(solved[..., 0] + solved[..., 1] * d_focal))

    @staticmethod
    def _apply_global(st: FitState, d_focal: float, d_shape: torch.Tensor) -> FitState:
        tvecs = st.tvecs.clone()
        tvecs[:, 2] *= math.exp(d_focal)
        return replace(st, log_focal=st.log_focal + d_focal, tvecs=tvecs,
                       shape_delta=st.shape_delta + d_shape)


def levenberg_marquardt(fit: JointFit, st: FitState, iters: int, damping: float,
                        rel_tol: float) -> tuple[FitState, list[float]]:
    """Alternate damped frame and global steps, keeping only those that lower the objective.

    Returns the final state and the objective after every iteration.
    """
    obj = fit.objective(st)
    history = [obj]
    lam = {"frame": damping, "global": damping}
    for _ in progress(range(iters), desc="tracking", unit="it"):
        start = obj
        hess, grad = fit.frame_normal_equations(st)
        steps = {"frame": lambda s, d: fit.frame_step(s, hess, grad, d), "global": fit.global_step}
        for name, step in steps.items():
            for _ in range(6):  # raise the damping until the step helps
                cand = step(st, lam[name])
                cand_obj = fit.objective(cand)
                if cand_obj < obj:
                    st, obj, lam[name] = cand, cand_obj, max(lam[name] / 3, 1e-7)
                    break
                lam[name] *= 4
        history.append(obj)
        if start - obj <= rel_tol * abs(start):
            break
    return st, history


# ---------------------------------------------------------------- public API
def fit_tracking(points: np.ndarray, valid: np.ndarray, width: int, height: int,
                 cfg: TrackingConfig | None = None) -> Tracking:
    """Build the subject's face model and fit focal, poses and expressions to the clip.

    points: (F, 478, 3) float32 landmarks from ``detect_landmarks`` (pixels, NaN where none).
    valid:  (F,) bool, frames with exactly one face; the others are interpolated.
    width, height: working-frame size, pixels.
    Deterministic: no random initialisation anywhere.
    """
    cfg = cfg or TrackingConfig()
    if points.ndim != 3 or points.shape[2] != 3 or len(valid) != len(points):
        raise ValueError(f"expected points (F, N, 3) and valid (F,), "
                         f"got {points.shape} and {np.shape(valid)}")
    valid = np.asarray(valid, bool) & np.isfinite(points).all((1, 2))
    if valid.sum() < cfg.min_valid_frames:
        raise UserError(f"only {int(valid.sum())} frames show exactly one face; tracking needs "
                        f"at least {cfg.min_valid_frames}",
                        "use a video where one face is visible and facing the camera most of the time")
    model = build_face_model(points[valid], RIGID_LANDMARKS, cfg.n_expr,
                             cfg.eye_corner_distance_m, cfg.head_centre_depth_m)
    points2d = points[..., :2]
    focal_prior = (width / 2.0) / math.tan(math.radians(cfg.focal_prior_fov_deg) / 2.0)
    rvecs, tvecs = solve_pnp(model.mean[RIGID_LANDMARKS], points2d[:, RIGID_LANDMARKS], valid,
                             intrinsics(focal_prior, width, height), desc="pose init")
    f64 = torch.float64
    init = FitState(rvecs=torch.as_tensor(rvecs, dtype=f64), tvecs=torch.as_tensor(tvecs, dtype=f64),
                    expr=torch.zeros(len(points), model.n_expr, dtype=f64), log_focal=math.log(focal_prior),
                    shape_delta=torch.zeros(model.mean.shape, dtype=f64))
    fit = JointFit(model, points2d, valid, focal_prior, width, height, cfg)
    state, _ = levenberg_marquardt(fit, init, cfg.iters, cfg.damping, cfg.rel_tol)
    return assemble_result(state, model, points2d, valid, width, height)


def assemble_result(st: FitState, model: FaceModel, points2d: np.ndarray, valid: np.ndarray,
                    width: int, height: int) -> Tracking:
    """Read the fitted unknowns out into a Tracking.

    Poses of face-less frames inside the clip are the stabiliser's smooth fill;
    before the first and after the last valid frame (where it would extrapolate
    linearly) they are held. Their expressions are interpolated linearly.
    """
    focal = math.exp(st.log_focal)
    rvecs, tvecs = (hold_ends(x.numpy(), valid) for x in (st.rvecs, st.tvecs))
    expr = fill_invalid(st.expr.numpy(), valid)
    final = FaceModel(mean=(model.mean + st.shape_delta.numpy()).astype(np.float32), basis=model.basis)
    expr = expr.astype(np.float32)
    verts = final.verts(expr)
    viewmats = to_viewmats(rvecs, tvecs)
    K = intrinsics(focal, width, height)
    cam = np.einsum("fij,fnj->fni", viewmats[:, :3, :3], verts) + viewmats[:, None, :3, 3]
    landmarks2d = (focal * cam[..., :2] / cam[..., 2:3] + K[:2, 2]).astype(np.float32)
    err = np.linalg.norm(landmarks2d - points2d, axis=-1).mean(-1)
    pnp_r, pnp_t = solve_pnp(final.mean, points2d, valid, K, desc="raw PnP")
    return Tracking(
        focal_px=focal, viewmats=viewmats, pnp_viewmats=to_viewmats(pnp_r, pnp_t), expr=expr,
        mean_shape=final.mean, expr_basis=model.basis, verts=verts, landmarks2d=landmarks2d,
        reproj_px=np.where(valid, err, np.nan).astype(np.float32),
        eye_open=eye_openness(verts), mouth_open=mouth_openness(verts), valid=np.asarray(valid, bool))


def pose_jitter_deg(viewmats: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean change of head angular velocity between consecutive frames, degrees.

    With R_k the rotations of ``viewmats`` (F, 4, 4), w_k = axis-angle(R_{k+1} R_k^T)
    in degrees and jitter = mean |w_{k+1} - w_k| over triples of consecutive
    valid frames. 0 for a head turning at constant speed; NaN if no such triple.
    """
    rot = np.asarray(viewmats, np.float64)[:, :3, :3]
    ok = np.ones(len(rot), bool) if valid is None else np.asarray(valid, bool)
    triple = ok[:-2] & ok[1:-1] & ok[2:]
    if not triple.any():
        return float("nan")
    rel = rot[1:] @ rot[:-1].transpose(0, 2, 1)
    w = np.degrees(np.stack([cv2.Rodrigues(r)[0][:, 0] for r in rel]))
    return float(np.linalg.norm(w[1:] - w[:-1], axis=-1)[triple].mean())
