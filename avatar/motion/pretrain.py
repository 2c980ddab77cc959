"""The person-independent prior: audio -> lower-face motion, learned once from many speakers.

``make pretrain`` (``python -m avatar.motion.pretrain``) rebuilds the shipped
weights ``avatar/motion/prior.pt`` from ``../shared/data/multispeaker/``:

1. each clip is preprocessed (256 px is plenty for landmarks) into a cache
   folder, resumable, with its ``.wav`` as sound where the video has none;
2. every subject's mesh motion goes into one shared space: vertex displacements
   from the subject's mean shape, in its head frame, divided by its eye-corner
   span, weighted like the subject loss (:func:`avatar.motion.face.vertex_weights`);
   a PCA of all subjects' displacements gives :data:`PRIOR_DIMS` shared components;
3. one :class:`~avatar.motion.predictor.AudioToExpression` learns the shared
   coefficients from speaker-normalised features of every clip, each clip's
   mouth first moved into sync with its sound (:mod:`avatar.motion.sync`: seven
   of the clips are 2-5 frames late, and a prior learnt from them as recorded
   predicted people it never saw far worse, docs/motion.md).

A subject uses it through :func:`prior_to_subject`: shared coefficients ->
displacements at the subject's scale -> the subject's own expression
coefficients by least squares, as one linear map, which is also how a
subject's predictor starts before it is fine-tuned on the subject.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avatar.core.errors import UserError
from avatar.core.files import atomic_path
from avatar.motion.config import PredictorConfig
from avatar.motion.face import vertex_weights
from avatar.motion.features import normalised_features
from avatar.motion.predictor import AudioToExpression
from avatar.motion.sync import measure_offset, shift_frames
from avatar.motion.train import TrainingData, train_predictor

log = logging.getLogger(__name__)

PRIOR_PATH = Path(__file__).with_name("prior.pt")
"""The shipped weights (package data)."""
PRIOR_DIMS = 16
"""Shared components of lower-face motion."""
PRIOR_SIZE = 256
"""Working frame side for the multispeaker clips, pixels."""
PRIOR_STEPS = 3000
"""Training steps of the prior."""


@dataclass(frozen=True)
class Prior:
    """The shipped prior: predictor of shared coefficients and the shared basis."""

    predictor: AudioToExpression
    basis: np.ndarray
    """(PRIOR_DIMS, 478, 3) float32 shared components, eye-corner spans per unit, head frame."""
    summary: dict


def preprocess_clips(data: Path, cache: Path) -> list[Path]:
    """Subject folders of every clip in ``data`` (cached in ``cache``; finished ones are reused)."""
    import dataclasses

    from preprocess.config import PreprocessConfig
    from preprocess.pipeline import run_preprocess

    cfg = PreprocessConfig()
    cfg = dataclasses.replace(cfg, decode=dataclasses.replace(cfg.decode, size=PRIOR_SIZE))
    roots = []
    for video in sorted(data.glob("*.mp4")):
        out = cache / video.stem
        wav = video.with_suffix(".wav")
        try:
            run_preprocess(video, out, cfg, audio=wav if wav.exists() else None)
        except UserError as e:
            log.warning("skipping %s: %s", video.name, e)
            continue
        roots.append(out)
    return roots


def shared_displacements(tracking) -> np.ndarray:
    """(F, 478, 3) float32 the subject's mesh motion in the shared space (weighted, span-normalised)."""
    mean = tracking.mean_shape
    span = _span(mean)
    w = np.sqrt(vertex_weights(mean))[None, :, None]
    return ((tracking.verts - mean) / span * w).astype(np.float32)


def _span(mean_shape: np.ndarray) -> float:
    from preprocess.landmark_ids import EYE_CORNERS
    return float(np.linalg.norm(mean_shape[EYE_CORNERS[0][1]] - mean_shape[EYE_CORNERS[1][1]]))


def prior_to_subject(basis: np.ndarray, tracking, ridge: float = 1e-3) -> np.ndarray:
    """(PRIOR_DIMS, K) float32 map from shared coefficients to the subject's expression coefficients.

    The shared displacement, scaled to the subject's span and unweighted,
    is matched on the weighted vertices by the subject's basis (least squares).
    """
    mean, b = tracking.mean_shape, tracking.expr_basis
    w = np.sqrt(vertex_weights(mean))[None, :, None]
    span = _span(mean)
    target = (basis * span).reshape(len(basis), -1)  # weighted displacement x span: compare with weighted basis
    design = (b * w).reshape(len(b), -1).astype(np.float64)
    normal = design @ design.T
    normal += ridge * np.trace(normal) / len(b) * np.eye(len(b))
    return np.linalg.solve(normal, design @ target.T.astype(np.float64)).T.astype(np.float32)


def subject_predictor(prior: Prior, tracking) -> AudioToExpression:
    """The prior as a predictor of the subject's expression coefficients (its last layer mapped through
    :func:`prior_to_subject`): where a subject's own training starts."""
    p = prior.predictor
    m = torch.from_numpy(prior_to_subject(prior.basis, tracking))  # (P, K)
    net = AudioToExpression(p.in_dim, m.shape[1], p.width)
    own = net.state_dict()  # the subject's own linear part is fitted on its frames, not the prior's
    state = {k: (own[k] if k.startswith("linear.") or k == "blend" else v) for k, v in p.state_dict().items()
             if not k.startswith("out.")}
    state["out.weight"] = m.T @ p.out.weight.detach()
    state["out.bias"] = p.out.bias.detach() @ m
    net.load_state_dict(state)
    return net.eval()


def build_prior(roots: list[Path], cfg: PredictorConfig, seed: int = 0, align: bool = True) -> Prior:
    """Shared PCA + a predictor trained on all subjects in ``roots`` (each one clip).

    align: move each clip's mouth to its sound first (:mod:`avatar.motion.sync`), so the prior learns
    speech in sync instead of a blur of the clips' offsets.
    """
    from preprocess.subject import Subject

    feats, disps, usable, offsets = [], [], [], {}
    for root in roots:
        s = Subject(root)
        if s.audio_features is None:
            continue
        u = np.zeros(s.n_frames, bool)
        u[s.tracking.valid] = True
        d = shared_displacements(s.tracking).reshape(s.n_frames, -1)
        if align:
            off = measure_offset(s.audio_features.phone_post, s.tracking.mouth_open, s.fps, u)
            offsets[Path(root).name] = off.frames
            move = off.correction(s.fps)
            d, u = shift_frames(d, -move), shift_frames(u, -move, fill="zero")
        u[:10] = u[-10:] = False  # clips are joined end to end: keep windows off the joins
        feats.append(normalised_features(s.audio_features))
        disps.append(d)
        usable.append(u)
    allx = np.concatenate(disps)
    mean = allx.mean(0)
    _, sv, vt = np.linalg.svd(allx - mean, full_matrices=False)
    basis = vt[:PRIOR_DIMS]
    explained = float((sv[:PRIOR_DIMS] ** 2).sum() / (sv ** 2).sum())
    # subject means differ (identity); each subject's own mean is its origin, so centre per subject
    targets = np.concatenate([(d - d.mean(0)) @ basis.T for d in disps]).astype(np.float32)
    x = np.concatenate(feats)
    metric = np.eye(PRIOR_DIMS, dtype=np.float32) * 100.0
    data = TrainingData(x, targets, np.concatenate(usable), metric, 80, x.shape[1] // 83)
    predictor = train_predictor(data, cfg, seed=seed, desc="prior")
    summary = {"subjects": [Path(r).name for r in roots], "frames": int(len(x)), "explained_variance": explained,
               "dims": PRIOR_DIMS, "offsets_frames": offsets}
    return Prior(predictor, basis.reshape(PRIOR_DIMS, -1, 3).astype(np.float32), summary)


def save_prior(prior: Prior, path: Path = PRIOR_PATH) -> None:
    p = prior.predictor
    state = {"predictor": {"in_dim": p.in_dim, "out_dim": p.out_dim, "width": p.width, "state": p.state_dict()},
             "basis": torch.from_numpy(prior.basis), "summary": prior.summary}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_prior(path: Path = PRIOR_PATH) -> Prior | None:
    """The shipped prior, or None when the package has none."""
    if not path.exists():
        return None
    s = torch.load(path, map_location="cpu", weights_only=True)
    p = s["predictor"]
    predictor = AudioToExpression(p["in_dim"], p["out_dim"], p["width"])
    predictor.load_weights(p["state"])
    predictor.eval()
    return Prior(predictor, s["basis"].numpy(), dict(s["summary"]))


def main(argv: list[str] | None = None) -> int:
    from avatar.core.data import shared_data

    parser = argparse.ArgumentParser(prog="python -m avatar.motion.pretrain", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="folder of talking-head clips (default: "
                        "../shared/data/multispeaker)")
    parser.add_argument("--cache", type=Path, default=Path("build/multispeaker"),
                        help="where the clips' subject folders are kept between runs")
    parser.add_argument("--out", type=Path, default=PRIOR_PATH, help="weights file to write")
    parser.add_argument("--steps", type=int, default=PRIOR_STEPS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[pretrain] %(message)s")
    data = args.data or shared_data("multispeaker")
    if not data.is_dir():
        print(f"error: {data} is not there: the prior is rebuilt from the multispeaker clips", file=sys.stderr)
        return 1
    torch.set_num_threads(max(1, torch.get_num_threads()))
    roots = preprocess_clips(data, args.cache)
    prior = build_prior(roots, PredictorConfig(steps=args.steps))
    save_prior(prior, args.out)
    log.info("wrote %s: %d subjects, %d frames, %.0f%% of the motion in %d components", args.out,
             len(prior.summary["subjects"]), prior.summary["frames"], 100 * prior.summary["explained_variance"],
             PRIOR_DIMS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
