"""The fitted avatar rendered from motion, frame by frame: the one path ``avatar render`` and the viewer share."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from avatar.model.frame import render_picture_frame
from avatar.model.store import load_avatar
from preprocess.subject import Subject


class Picture(NamedTuple):
    """One rendered frame."""

    rgb: np.ndarray  #: (S, S, 3) uint8 RGB, the avatar over the background plate
    alpha: np.ndarray  #: (S, S) float32 in [0, 1], the avatar's coverage


class AvatarFrames:
    """A subject's fitted avatar, ready to render any expression and pose (no gradients).

    Loads ``fit/avatar.pt`` (a UserError says to run ``avatar fit`` when it is
    missing) and keeps the camera intrinsics, the plate and the face model as
    tensors, so a frame costs placement, rasterisation and compositing only.
    """

    def __init__(self, subject: Subject, backend: str = "auto"):
        self.subject = subject
        self.model, self.summary = load_avatar(subject)
        self.backend = backend
        self.size = subject.size
        t = subject.tracking
        self.K = torch.from_numpy(t.K(self.size))
        self.plate = torch.from_numpy(subject.background().astype(np.float32) / 255.0)
        self._mean_shape = torch.from_numpy(t.mean_shape)
        self._basis = torch.from_numpy(t.expr_basis)

    @property
    def n_expr(self) -> int:
        return int(self._basis.shape[0])

    @torch.no_grad()
    def render(self, expr: np.ndarray, viewmat: np.ndarray, verts: np.ndarray | None = None,
               camera: np.ndarray | None = None, torso_affine: np.ndarray | None = None) -> Picture:
        """The avatar with expression ``expr`` (K,) and head pose ``viewmat`` (4, 4) camera-from-head.

        ``verts`` (V, 3) is the mesh of ``expr`` when the caller has it (else it is
        computed); ``camera`` (4, 4) new-camera-from-training-camera, or None for
        the training view (see :mod:`avatar.talk.cameras`); ``torso_affine`` (2, 3) the
        shoulders' image motion (a subject frame's ``torso.affine``), or None:
        where they usually are.
        """
        expr_t = torch.from_numpy(np.ascontiguousarray(expr, np.float32))
        v = torch.from_numpy(np.ascontiguousarray(verts, np.float32)) if verts is not None else \
            self._mean_shape + torch.einsum("k,kvc->vc", expr_t, self._basis)
        cam = None if camera is None else torch.from_numpy(np.ascontiguousarray(camera, np.float32))
        torso = None if torso_affine is None else torch.from_numpy(np.ascontiguousarray(torso_affine, np.float32))
        rgb, alpha = render_picture_frame(self.model, v, torch.from_numpy(np.ascontiguousarray(viewmat, np.float32)),
                                          self.K, self.size, self.plate, backend=self.backend, expr=expr_t, camera=cam,
                                          torso_affine=torso)
        return Picture(rgb.numpy(), alpha.numpy())


class FramePool:
    """Runs frame jobs on ``workers`` threads, each with single-threaded kernels.

    The rasteriser's tiles split poorly across threads (1.45x on 2 cores), so
    two frames rendered at once, one thread each, give 1.6x the frames of one
    frame on two threads (the kernels release the GIL). With more than one
    worker, PyTorch's thread count (which the kernels read) is 1 for the process
    while the pool is open; :meth:`close` restores it. ``avatar render`` and the
    viewer's engine both render through one.
    """

    def __init__(self, workers: int = 2):
        self.workers = workers
        self._threads = torch.get_num_threads()
        if workers > 1:
            torch.set_num_threads(1)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="avatar-render")

    @property
    def threads(self) -> int:
        """CPU threads rendering at once."""
        return self.workers * torch.get_num_threads()

    def submit(self, job, *args) -> Future:
        """Future of ``job(*args)``, run on a worker."""
        return self._pool.submit(job, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(self._threads)

    def __enter__(self) -> "FramePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
