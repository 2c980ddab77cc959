"""``avatar preprocess VIDEO --out SUBJECT_DIR``: video -> tracked subject folder."""

from __future__ import annotations

from pathlib import Path

from avatar.cli.options import add_config_options


def add_parser(sub, common) -> None:
    from preprocess.config import STAGE_NAMES

    p = sub.add_parser(
        "preprocess", parents=[common], help="turn a video of one person talking into a subject folder",
        description="Decode, track the face, segment, estimate the background and compute audio "
                    "features. Stages are cached: re-running resumes where it stopped and skips "
                    f"finished stages. Stages: {', '.join(STAGE_NAMES)}.")
    p.add_argument("video", type=Path, help="the input video (any format ffmpeg reads), or an ER-NeRF / AD-NeRF "
                   "dataset folder (ori_imgs/ + aud.wav)")
    p.add_argument("--out", type=Path, required=True, help="subject folder to create or resume")
    p.add_argument("--audio", type=Path, default=None,
                   help="separate audio file for the video (when its sound is not in the video file)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="redo this stage (and those that depend on it); repeatable; 'all' redoes everything")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import logging
    from avatar.settings import load_config
    from preprocess.pipeline import run_preprocess
    from avatar.cli.inspect_cmd import format_summary
    from preprocess.subject import Subject

    cfg = load_config(args.config, args.overrides)
    paths = run_preprocess(args.video, args.out, cfg.preprocess, audio=args.audio,
                           force=tuple(args.force))
    logging.getLogger("avatar").info("subject folder ready: %s\n%s", paths.root,
                                     format_summary(Subject(paths.root).manifest))
    return 0
