"""``avatar view SUBJECT_DIR [--host 127.0.0.1] [--port 7860] [--open]``: the avatar live in a local web page."""

from __future__ import annotations

from pathlib import Path

from avatar.cli.options import add_config_options


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "view", parents=[common], help="watch the fitted avatar talk live in your browser",
        description="Serve a local web page where the fitted avatar of SUBJECT_DIR talks in real time: play its "
                    "own clips or sample voices, upload a recording, type text for the local espeak-ng voice, or "
                    "speak into the microphone; drag to orbit, scroll to zoom, double-click to reset. Binds to "
                    "127.0.0.1 (this machine only) unless --host says otherwise.")
    p.add_argument("subject", type=Path, help="the fitted subject folder (`avatar fit`)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, help="port of the page (default 7860; 0: any free port)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--max-streams", type=int, help="tabs that may stream at once (default 2: about a core each)")
    add_config_options(p)
    p.set_defaults(func=run, interrupted="avatar view: stopped")


def run(args) -> int:
    import logging

    from avatar.settings import load_config
    from avatar.view.server import LOOPBACK, Viewer, bind, serve

    log = logging.getLogger("avatar")
    overrides = list(args.overrides or [])
    for key, value in (("host", args.host), ("port", args.port), ("max_streams", args.max_streams)):
        if value is not None:
            overrides.append(f"view.{key}={value}")
    cfg = load_config(args.config, overrides)
    viewer = Viewer(args.subject, cfg.view, cfg.motion, cfg.render.tts_rate_wpm)  # checks the subject first
    try:
        sock = bind(cfg.view.host, cfg.view.port)
        if cfg.view.host not in LOOPBACK:
            log.warning("listening on %s: anyone who can reach this machine can open the page and use its CPU "
                        "(use --host 127.0.0.1 to keep it to this machine)", cfg.view.host)
        serve(viewer, sock, open_browser=args.open)
    except KeyboardInterrupt:
        print("avatar view: stopped")
        return 0
    finally:
        viewer.close()
    return 0
