"""``avatar eval SUBJECT_DIR [--json]``: how close the fitted avatar comes to the held-out frames."""

from __future__ import annotations

from pathlib import Path

from avatar.cli.options import add_config_options


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "eval", parents=[common], help="measure a fitted avatar on its validation frames",
        description="Render the validation frames (the end of the clip, never trained on) at their tracked "
                    "expression and pose and compare them with the real frames: psnr (full frame), "
                    "psnr_head (head and neck), ssim, lmd (mouth landmark distance, px at 512x512), csim "
                    "(identity), psnr_live_background (full frame over the real frames' own background, as "
                    "--paste-back shows it), psnr_plate_ceiling (what a perfect avatar would score over the static "
                    "background plate: the most psnr can be), render_fps. Writes SUBJECT_DIR/fit/eval.json and a side-by-side video "
                    "SUBJECT_DIR/fit/eval.mp4 (real | rendered | error) with the sound.")
    p.add_argument("subject", type=Path, help="a subject folder with a fitted avatar (`avatar fit`)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--frames", type=int, default=None, help="judge only this many validation frames, evenly spread")
    p.add_argument("--no-video", dest="video", action="store_false", help="skip the side-by-side video")
    p.add_argument("--driver", choices=("tracking", "audio"), default="tracking",
                   help="what drives the face: the tracked expressions (default), or motion predicted from the "
                        "audio (pose and blinks replayed from tracking; adds mouth_corr; writes eval_audio.json "
                        "and eval_audio.mp4)")
    p.add_argument("--audio", type=Path, default=None,
                   help="with --driver audio: drive the avatar with this speech instead (no real video to compare "
                        "with): reports silence_mouth_open and speech_mouth_motion")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from avatar.core.errors import UserError
    from avatar.core.files import write_json
    from avatar.fit.evaluate import evaluate
    from avatar.model.store import fit_dir

    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames {args.frames} must be at least 1", "leave it out to judge every validation frame")
    if args.audio is not None and args.driver != "audio":
        raise UserError("--audio needs --driver audio", f"run `avatar eval {args.subject} --driver audio "
                        f"--audio {args.audio}`")
    if args.driver == "audio":
        from avatar.fit.audio_eval import evaluate_audio_driven
        from avatar.settings import load_config

        cfg = load_config(args.config, args.overrides)
        result = evaluate_audio_driven(args.subject, cfg.motion, audio=args.audio, video=args.video,
                                       frames=args.frames)
        name = "eval_audio" if args.audio is None else f"eval_audio_{args.audio.stem}"
    else:
        result = evaluate(args.subject, video=args.video, frames=args.frames)
        name = "eval"
    write_json(fit_dir(args.subject) / f"{name}.json", result)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:12s} {value}")
        if args.video and args.audio is None:
            print(f"{'video':12s} {fit_dir(args.subject) / (name + '.mp4')}")
    return 0
