"""``avatar render SUBJECT_DIR (--audio F | --text "..." | --motion F) --out talk.mp4``: new speech -> video."""

from __future__ import annotations

from pathlib import Path

from avatar.cli.motion_cmd import add_motion_controls, controls_from
from avatar.cli.options import add_config_options


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "render", parents=[common], help="make the fitted avatar say new speech, as an mp4",
        description="Render the fitted avatar of SUBJECT_DIR saying a sound file (any format ffmpeg reads, any "
                    "rate, mono or stereo, any length), a text spoken by the local espeak-ng voice, or a motion "
                    "file from `avatar motion`. Writes an H.264 mp4 at the subject's frame rate with the sound "
                    "in AAC, frames streamed to the encoder as they render; the file appears only when complete.")
    p.add_argument("subject", type=Path, help="the fitted subject folder (`avatar fit`)")
    speech = p.add_argument_group("speech (one of)")
    speech.add_argument("--audio", type=Path, help="speech recording (wav, mp3, m4a, flac, ogg, a video's sound); "
                                                   "with --motion, the sound to put under it")
    speech.add_argument("--text", help="text to speak with the local espeak-ng voice")
    speech.add_argument("--voice", default="en-us",
                        help="espeak-ng voice (language code) of --text, e.g. en-us, en-gb, de, fr, es, cmn "
                             "(default en-us; --list-voices lists them)")
    speech.add_argument("--motion", type=Path,
                        help="render a motion file (.json, .csv, .npz from `avatar motion`), or another subject "
                             "folder: that person's tracked face and head motion retargeted onto this avatar "
                             "(reenactment), with their sound")
    speech.add_argument("--own-pose", action="store_true",
                        help="with --motion OTHER_SUBJECT_DIR: replay this subject's head poses, not the other's")
    speech.add_argument("--list-voices", action="store_true", help="list espeak-ng's voices and exit")
    p.add_argument("--out", type=Path, help="the video to write (.mp4)")
    view = p.add_argument_group("camera and framing")
    view.add_argument("--camera", default="fixed",
                      help="fixed (the training view; default), orbit (a slow yaw orbit, --set "
                           "render.orbit_deg=10 --set render.orbit_period_s=8) or a camera keyframe .json (see "
                           "docs/render.md)")
    view.add_argument("--paste-back", action="store_true",
                      help="composite into the source video's full, uncropped frames (their size), which are "
                           "replayed in step with the head pose")
    view.add_argument("--source-video", type=Path,
                      help="where the subject's source video is now, for --paste-back (default: where "
                           "preprocess read it)")
    view.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda", "torch"),
                      help="rasteriser (default auto: gsplat on a CUDA device, else the CPU kernels)")
    add_motion_controls(p)
    add_config_options(p)
    p.set_defaults(func=run, interrupted="interrupted: no video was written (a render starts over when run again)")


def run(args) -> int:
    import logging

    from avatar.core.errors import UserError

    log = logging.getLogger("avatar")
    if args.list_voices:
        from avatar.talk.tts import list_voices

        for v in list_voices():
            print(f"{v.language:24s} {v.name}")
        return 0
    if args.out is None:
        raise UserError("--out is missing", "give the video to write, e.g. --out talk.mp4")
    from avatar.settings import load_config
    from avatar.talk.run import TalkRequest, check_output, render_talk

    check_output(args.out)
    cfg = load_config(args.config, args.overrides)
    req = TalkRequest(subject=args.subject, out=args.out, audio=args.audio, text=args.text, voice=args.voice,
                      motion=args.motion, own_pose=args.own_pose, controls=controls_from(args), camera=args.camera,
                      paste_back=args.paste_back, source_video=args.source_video, backend=args.backend)
    summary = render_talk(req, cfg.motion, cfg.render)
    # the whole time, then how it split: a first render of a subject also trains its motion model
    log.info("%s: %d frames (%.1f s at %g fps, %dx%d) in %.1f s: speech and motion %.1f s, "
             "frames %.1f s (%.1f frames/s)",
             summary["out"], summary["frames"], summary["duration_s"], summary["fps"], summary["width"],
             summary["height"], summary["seconds"], summary.get("motion_s", 0.0), summary["render_s"],
             summary["frames"] / max(summary["render_s"], 1e-9))
    return 0
