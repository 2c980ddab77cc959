"""``avatar motion AUDIO --subject SUBJECT_DIR --out motion.json|.csv|.npz``: speech -> per-frame motion."""

from __future__ import annotations

from pathlib import Path

from avatar.cli.options import add_config_options


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "motion", parents=[common], help="turn speech into per-frame expression, blinks and head pose",
        description="Predict the subject's face motion for any speech recording (any format ffmpeg reads, any "
                    "sample rate, mono or stereo, any language) at the subject's frame rate: ARKit-style "
                    "channels (jawOpen, mouthClose, ..., eyeBlinkLeft/Right, browInnerUp; 0-1 on the "
                    "subject's range), head rotation (degrees) and translation (metres), and the raw expression "
                    "coefficients; .npz also keeps the per-frame mesh. The first run on a subject trains its "
                    "motion model on the subject's own video (about a minute), kept in SUBJECT_DIR/motion/.")
    p.add_argument("audio", type=Path, help="speech to animate (wav, mp3, m4a, flac, ogg, or a video's sound)")
    p.add_argument("--subject", type=Path, required=True, help="the subject folder (`avatar preprocess`)")
    p.add_argument("--out", type=Path, required=True, help="motion file to write: .json, .csv or .npz")
    add_motion_controls(p)
    p.add_argument("--retrain", action="store_true", help="train the subject's motion model again")
    add_config_options(p)
    p.set_defaults(func=run)


def add_motion_controls(p) -> None:
    """The controls of :class:`avatar.motion.generate.Controls` as options (shared with render and view)."""
    from avatar.motion.config import POSE_MODES

    g = p.add_argument_group("motion")
    g.add_argument("--pose", choices=POSE_MODES, default="replay",
                   help="head pose: replay the training video's (looped without jumps), generate it from the "
                        "speech (audio), or hold it still (default: replay)")
    g.add_argument("--mouth-amplitude", type=float, default=1.0, help="scale of mouth motion (default 1)")
    g.add_argument("--blink-rate", type=float, default=1.0,
                   help="blinks as a multiple of the subject's own rate (0: none; default 1)")
    g.add_argument("--head-motion", type=float, default=1.0, help="scale of head motion (0: still; default 1)")
    g.add_argument("--seed", type=int, default=0, help="seed of the generated blinks and head motion")


def controls_from(args):
    from avatar.motion.generate import Controls
    return Controls(args.pose, args.mouth_amplitude, args.blink_rate, args.head_motion, args.seed).check()


def run(args) -> int:
    import logging
    import time

    from avatar.core.errors import UserError
    from avatar.motion.generate import audio_features, motion_from_features
    from avatar.motion.model import load_or_train_motion
    from avatar.motion.motion_file import SUFFIXES, save_motion
    from avatar.settings import load_config
    from preprocess.subject import Subject

    log = logging.getLogger("avatar")
    if args.out.suffix.lower() not in SUFFIXES:
        raise UserError(f"--out {args.out} does not end in {', '.join(SUFFIXES)}",
                        "name the motion file e.g. talk.json (or .csv, .npz)")
    if not args.out.parent.exists():
        raise UserError(f"the folder of --out {args.out} does not exist", f"create {args.out.parent} first")
    controls = controls_from(args)
    cfg = load_config(args.config, args.overrides)
    subject = Subject(args.subject)
    t0 = time.perf_counter()
    feats = audio_features(args.audio, subject)
    model = load_or_train_motion(subject, cfg.motion, retrain=args.retrain)
    motion = motion_from_features(model, subject, feats, controls, meta={"audio": str(args.audio.resolve())})
    save_motion(motion, args.out)
    log.info("%s: %d frames (%.1f s at %g fps) in %.1f s", args.out, len(motion), len(motion) / motion.fps,
             motion.fps, time.perf_counter() - t0)
    return 0
