"""``avatar eval SUBJECT_DIR [--json]``: how close the fitted avatar comes to the held-out frames."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "eval", parents=[common], help="measure a fitted avatar on its validation frames",
        description="Render the validation frames (the end of the clip, never trained on) at their tracked "
                    "expression and pose and compare them with the real frames: psnr (full frame), "
                    "psnr_head (head and neck), ssim, lmd (mouth landmark distance, px at 512x512), csim "
                    "(identity), render_fps. Writes SUBJECT_DIR/fit/eval.json and a side-by-side video "
                    "SUBJECT_DIR/fit/eval.mp4 (real | rendered | error) with the sound.")
    p.add_argument("subject", type=Path, help="a subject folder with a fitted avatar (`avatar fit`)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--frames", type=int, default=None, help="judge only this many validation frames, evenly spread")
    p.add_argument("--no-video", dest="video", action="store_false", help="skip the side-by-side video")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from avatar.core.errors import UserError
    from avatar.core.files import write_json
    from avatar.fit.evaluate import evaluate
    from avatar.model.store import fit_dir

    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames {args.frames} must be at least 1", "leave it out to judge every validation frame")
    result = evaluate(args.subject, video=args.video, frames=args.frames)
    write_json(fit_dir(args.subject) / "eval.json", result)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:12s} {value}")
        if args.video:
            print(f"{'video':12s} {fit_dir(args.subject) / 'eval.mp4'}")
    return 0
