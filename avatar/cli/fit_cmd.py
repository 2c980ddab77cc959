"""``avatar fit VIDEO_OR_SUBJECT_DIR [--out SUBJECT_DIR]``: preprocess if needed, then fit the avatar."""

from __future__ import annotations

from pathlib import Path

from avatar.cli.options import add_config_options, minutes_override


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "fit", parents=[common], help="fit a 3D Gaussian avatar to a video or a subject folder",
        description="Preprocess the video (when given one; cached like `avatar preprocess`), then train "
                    "the avatar within a time budget. Interrupted fits resume where their last checkpoint "
                    "left them when the same command runs again, and end with the same avatar as an "
                    "uninterrupted fit of the same number of steps. Writes SUBJECT_DIR/fit/avatar.pt "
                    "when it finishes, previews in SUBJECT_DIR/fit/previews/ while it trains.")
    p.add_argument("input", type=Path, help="a video of one person talking, or a subject folder made by "
                   "`avatar preprocess`")
    p.add_argument("--out", type=Path, default=None,
                   help="subject folder to create or resume (needed with a video; default: the input folder)")
    p.add_argument("--minutes", type=float, default=None,
                   help="training time budget in minutes (default: the preset's fit.minutes); the fit stops "
                        "there with the avatar so far")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="only continue an interrupted fit (an error when there is none)")
    g.add_argument("--restart", action="store_true", help="discard this folder's earlier fit and start over")
    p.add_argument("--with-motion", action="store_true",
                   help="also train the subject's motion model now, with this preset's motion settings (otherwise "
                        "the first `avatar render` or `avatar motion` does; `avatar batch` fits this way, so that "
                        "its renders of the subject do not wait for one another)")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from avatar.fit.run import run_fit
    from avatar.model.store import avatar_path
    from avatar.settings import load_config

    log = logging.getLogger("avatar")
    cfg = load_config(args.config, args.overrides + minutes_override(args.minutes))
    root = _subject_root(args, cfg)
    trainer = run_fit(root, cfg.fit, resume_only=args.resume, restart=args.restart)
    log.info("avatar ready: %s (%d steps in %.1f min, %d Gaussians); `avatar eval %s` measures it",
             avatar_path(root), trainer.iteration, trainer.elapsed_s / 60, len(trainer.model), root)
    if args.with_motion:
        from avatar.motion.model import load_or_train_motion
        from preprocess.subject import Subject
        load_or_train_motion(Subject(root), cfg.motion)
        log.info("motion model ready: %s", root / "motion")
    return 0


def _subject_root(args, cfg) -> Path:
    """The subject folder to fit: the input folder, or --out after preprocessing the input video."""
    from avatar.core.errors import UserError

    if args.input.is_dir():
        if args.out is not None and args.out.resolve() != args.input.resolve():
            raise UserError(f"{args.input} is a subject folder; --out {args.out} would be another one",
                            "leave out --out to fit the folder in place")
        return args.input
    if args.out is None:
        raise UserError(f"{args.input} is a video: --out SUBJECT_DIR is needed for its subject folder",
                        f"add --out FOLDER, e.g. `avatar fit {args.input} --out subjects/me`")
    from preprocess.pipeline import run_preprocess
    return run_preprocess(args.input, args.out, cfg.preprocess).root
