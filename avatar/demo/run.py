"""``make demo``: the whole product on a synthetic sample (or on your video), with nothing to download.

The steps, each skipped when its output is already there (so running it again
reuses what is done, and an interrupted fit resumes):

1. the sample (:mod:`avatar.demo.sample`): a public-domain portrait made to say
   a few sentences with a local voice: ``demo_out/sample.mp4``. With ``--video``
   the user's own video takes its place;
2. ``avatar fit`` on it (the ``demo`` preset: small and quick; the default preset
   for a video of your own) into ``demo_out/subject/``;
3. ``avatar render`` of a sentence the sample never said: ``demo_out/talk.mp4``;
4. ``avatar eval``: its numbers on the clip's held-out end, beside the baselines
   an untrained avatar would get, and the side-by-side ``demo_out/eval.mp4``;
5. the command that starts the live viewer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from avatar.cli.main import main as avatar_main
from avatar.core.data import REPO_ROOT

DEMO_OUT = REPO_ROOT / "demo_out"
"""Where ``make demo`` writes, unless told otherwise."""

SAMPLE_TEXT = ("Hello! I am a synthetic sample, made from a still portrait by the talking avatar demo. "
               "My mouth follows the sounds of a local voice, so the fit has something to learn. "
               "Nothing here was downloaded, and no real person recorded this clip.")
"""What the sample says (about 15 s): the speech the avatar is fitted to."""
NEW_TEXT = ("This is new speech that the avatar never heard. "
            "It was rendered from text, on a laptop processor, in a few minutes.")
"""What the fitted avatar is made to say: a sentence not in the sample."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m avatar.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, default=None,
                   help="your own video of one person talking (at least 5 s; a few minutes is best) "
                        "instead of the synthetic sample")
    p.add_argument("--out", type=Path, default=None,
                   help="where everything is written (default: demo_out/, or demo_out/VIDEO_NAME/ with --video)")
    p.add_argument("--config", default=None,
                   help="fit preset or YAML file (default: demo for the sample, default for --video)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value of the fit and the render, e.g. --set fit.iterations=3000 "
                        "(repeatable)")
    p.add_argument("--sample-text", default=SAMPLE_TEXT, help="what the synthetic sample says")
    p.add_argument("--text", default=NEW_TEXT, help="the new sentence to render")
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    """The demo (its steps in the module's docstring); returns the exit status."""
    from avatar.cli.native_log import filter_native_stderr

    args = parse_args(argv)
    filter_native_stderr()
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("\ndemo interrupted: run it again to go on from where it stopped (the fit resumes from its "
              "last checkpoint)", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    out: Path = args.out or (DEMO_OUT if args.video is None else DEMO_OUT / args.video.stem)
    out.mkdir(parents=True, exist_ok=True)
    subject = out / "subject"
    talk, side_by_side = out / "talk.mp4", out / "eval.mp4"
    started = time.monotonic()

    if args.video is None:
        video = out / "sample.mp4"
        _step(1, f"the synthetic sample {_rel(video)}: scikit-image's public-domain astronaut portrait, "
                 "animated to speak with espeak-ng (a cartoon of speech, not a recording of anyone)")
        if video.exists():
            print("          already made")
        else:
            from avatar.core.errors import UserError
            from avatar.demo.sample import make_sample
            try:
                make_sample(video, args.sample_text)
            except UserError as e:
                print(f"error: {e.problem}" + (f"\n  fix: {e.fix}" if e.fix else ""), file=sys.stderr)
                return e.exit_code
        config = args.config or "demo"
    else:
        video = args.video
        _step(1, f"your video {video}")
        config = args.config or "default"

    _step(2, f"avatar fit {_rel(video)} --out {_rel(subject)} --config {config}"
             + "".join(f" --set {o}" for o in args.overrides))
    settings = ["--config", str(config), *[a for o in args.overrides for a in ("--set", o)]]
    rc = avatar_main(["fit", str(video), "--out", str(subject), *settings])
    if rc:
        return rc

    _step(3, f"avatar render {_rel(subject)} --text \"{args.text[:40]}...\" --out {_rel(talk)}")
    if talk.exists() and talk.stat().st_mtime >= _fitted_at(subject):
        print("          already rendered")
    else:
        rc = avatar_main(["render", str(subject), "--text", args.text, "--out", str(talk), *settings])
        if rc:
            return rc

    _step(4, f"avatar eval {_rel(subject)}: the clip's last frames, never trained on")
    result = _evaluate(subject, side_by_side)
    if result is None:
        return 1
    baselines = _baselines(subject)

    _step(5, "done in %.1f min" % ((time.monotonic() - started) / 60))
    print(f"  the sample           {_rel(video)}")
    print(f"  the fitted subject   {_rel(subject)}")
    print(f"  new speech           {_rel(talk)}   (H.264 + AAC)")
    print(f"  side by side         {_rel(side_by_side)}   (real | rendered | error, held-out frames)")
    print(f"  eval                 PSNR {result['psnr']:.2f} dB (the background alone: "
          f"{baselines['plate_psnr']:.2f} dB; replaying the nearest training frame: "
          f"{baselines['retrieval_psnr']:.2f} dB), SSIM {result['ssim']:.3f}, "
          f"mouth landmarks {_num(result['lmd'])} px, identity {_num(result['csim'])}")
    (out / "eval.json").write_text(json.dumps({**result, **baselines}, indent=2) + "\n")
    print(f"  watch it live        .venv/bin/avatar view {_rel(subject)} --open")
    if args.video is None:
        print("\nThe sample is synthetic: a still photo warped to talk. Fit your own video with "
              "`make demo VIDEO=me.mp4` (see README: recording a good training video).")
    return 0


def _evaluate(subject: Path, side_by_side: Path) -> dict | None:
    """``avatar eval``'s numbers (reusing fit/eval.json when it is newer than the avatar); the video copied
    beside the others."""
    from avatar.model.store import avatar_path

    fit = avatar_path(subject).parent
    stored = fit / "eval.json"
    if not (stored.exists() and (fit / "eval.mp4").exists() and stored.stat().st_mtime >= _fitted_at(subject)):
        if avatar_main(["eval", str(subject)]):
            return None
    else:
        print("          already evaluated")
    shutil.copyfile(fit / "eval.mp4", side_by_side)
    return json.loads(stored.read_text())


def _baselines(subject: Path) -> dict:
    """What an avatar that learnt nothing gets on the same frames: the plate alone, and retrieval."""
    from avatar.fit.evaluate import plate_psnr, retrieval_psnr
    from preprocess.subject import Subject

    s = Subject(subject)
    return {"plate_psnr": round(plate_psnr(s, s.val_frames), 3),
            "retrieval_psnr": round(retrieval_psnr(s, s.val_frames), 3)}


def _fitted_at(subject: Path) -> float:
    from avatar.model.store import avatar_path

    path = avatar_path(subject)
    return path.stat().st_mtime if path.exists() else float("inf")


def _step(k: int, what: str) -> None:
    print(f"\ndemo {k}/5: {what}", flush=True)


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
