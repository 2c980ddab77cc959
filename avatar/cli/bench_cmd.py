"""``avatar bench raster|preprocess|robustness|fit|motion|render|stream|batch|startup|all``: the benchmarks behind docs/benchmarks.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from avatar.cli.options import add_config_options, minutes_override


def add_parser(sub, common) -> None:
    p = sub.add_parser("bench", parents=[common], help="run a benchmark and print its numbers",
                       description="Benchmarks whose numbers are recorded in docs/benchmarks.md.")
    which = p.add_subparsers(dest="bench", metavar="BENCH", required=True)

    r = which.add_parser("raster", parents=[common], help="Gaussian rasteriser and hash grid on CPU",
                         description="Forward and forward+backward time of the CPU rasteriser on a "
                                     "synthetic head, the PyTorch reference for comparison, and the hash grid.")
    r.add_argument("--gaussians", type=int, default=50_000, help="number of Gaussians (default 50000)")
    r.add_argument("--size", type=int, default=512, help="image width and height, pixels (default 512)")
    r.add_argument("--repeats", type=int, default=20, help="timed repeats per measurement (median)")
    r.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    r.set_defaults(func=run_raster)

    pp = which.add_parser("preprocess", parents=[common], help="whole preprocessing of a video",
                          description="Time, peak memory and quality of `avatar preprocess` on one video "
                                      "(default: ../shared/data/videos/cnn2_25fps.mp4).")
    pp.add_argument("video", type=Path, nargs="?", default=None, help="video to preprocess")
    pp.add_argument("--out", type=Path, default=None, help="subject folder (default: a temporary one)")
    pp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_config_options(pp)
    pp.set_defaults(func=run_preprocess)

    rb = which.add_parser("robustness", parents=[common], help="preprocess every video of a folder",
                          description="Run `avatar preprocess` on every video of a folder (default: "
                                      "../shared/data/multispeaker, about 15 people, odd sizes and frame "
                                      "rates) and report, per clip, success with its quality numbers or "
                                      "the rejection message. A NAME.wav beside NAME.mp4 is used as its audio.")
    rb.add_argument("folder", type=Path, nargs="?", default=None, help="folder of videos")
    rb.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_config_options(rb)
    rb.set_defaults(func=run_robustness)

    ft = which.add_parser("fit", parents=[common], help="whole fit of a video: preprocess, train, eval",
                          description="Time, peak memory and eval metrics of preprocessing, fitting and "
                                      "evaluating one video (default: ../shared/data/videos/cnn2_25fps.mp4 "
                                      "with the default preset; issue #10's targets: 45 min, 32 dB, LMD 2.6).")
    ft.add_argument("video", type=Path, nargs="?", default=None, help="video to fit")
    ft.add_argument("--out", type=Path, default=None, help="subject folder to keep (default: a temporary one)")
    ft.add_argument("--minutes", type=float, default=None, help="training budget (default: the preset's)")
    ft.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_config_options(ft)
    ft.set_defaults(func=run_fit_bench)

    mo = which.add_parser("motion", parents=[common], help="audio-to-motion speed, whole clip and streaming",
                          description="Seconds of `avatar motion` for 60 s of other speakers' speech (features, "
                                      "predictor, the rest) and the streaming latency per 40 ms chunk "
                                      "(issue #11's targets: 10 s, predictor under 1 s, 200 ms + look-ahead).")
    mo.add_argument("subject", type=Path, help="a subject folder (its motion model is trained if missing)")
    mo.add_argument("audio", type=Path, nargs="?", default=None,
                    help="speech to use (default: 60 s of ../shared/data/audio)")
    mo.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_config_options(mo)
    mo.set_defaults(func=run_motion_bench)

    rd = which.add_parser("render", parents=[common], help="the whole render of a minute of speech to mp4",
                          description="Seconds of `avatar render` for 60 s of other speakers' speech: features, "
                                      "motion, rendering, (paste-back,) encoding and muxing (issue #12's targets: "
                                      "60 s, 90 s with --paste-back at 1280x720, on 2 cores).")
    rd.add_argument("subject", type=Path, help="a fitted subject folder (its motion model is trained if missing)")
    rd.add_argument("audio", type=Path, nargs="?", default=None,
                    help="speech to use (default: --seconds of ../shared/data/audio)")
    rd.add_argument("--seconds", type=float, default=60.0, help="length of the default speech (default 60)")
    rd.add_argument("--paste-back", action="store_true", help="composite into the source video's frames")
    rd.add_argument("--camera", default="fixed", help="fixed, orbit or a camera .json (default fixed)")
    rd.add_argument("--source-video", type=Path, help="where the source video is now (for --paste-back)")
    rd.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_config_options(rd)
    rd.set_defaults(func=run_render_bench)

    sm = which.add_parser("stream", parents=[common], help="the viewer's streaming engine: fps and first-frame latency",
                          description="Streams speech through the fitted subject as fast as the viewer's engine "
                                      "takes it: audio features, motion, rendering, compositing and JPEG "
                                      "(issue #13's targets: fps >= 30, first_frame_ms <= 200 at 512x512 on 2 cores).")
    sm.add_argument("subject", type=Path, help="a fitted subject folder (its motion model is trained if missing)")
    sm.add_argument("audio", type=Path, nargs="?", default=None,
                    help="speech to use (default: --seconds of ../shared/data/audio)")
    sm.add_argument("--seconds", type=float, default=30.0, help="length of the default speech (default 30)")
    sm.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_config_options(sm)
    sm.set_defaults(func=run_stream_bench)

    st = which.add_parser("startup", parents=[common], help="start-up time of `avatar --help` and `avatar config`",
                          description="Wall time of fresh `avatar --help` and `avatar config` processes "
                                      "(median of --repeats); loading a config must import no heavy library.")
    st.add_argument("--repeats", type=int, default=5, help="processes started per command (median)")
    st.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    st.set_defaults(func=run_startup)

    bt = which.add_parser("batch", parents=[common], help="jobs per minute of `avatar batch`, 1 and 2 workers",
                          description="Runs --jobs renders of --seconds of other speakers' speech each (from "
                                      "../shared/data/audio) through `avatar batch`'s scheduler with 1 and with 2 "
                                      "workers on this machine: jobs per minute and the speed-up (issue #15).")
    bt.add_argument("subject", type=Path, help="a fitted subject folder (its motion model is trained if missing)")
    bt.add_argument("--jobs", type=int, default=6, help="renders per run (default 6)")
    bt.add_argument("--seconds", type=float, default=10.0, help="speech per render, seconds (default 10)")
    bt.add_argument("--ray", default=None, help="as for `avatar batch` (default: Ray on this machine if installed)")
    bt.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bt.set_defaults(func=run_batch_bench)

    from avatar.cli import bench_all
    bench_all.add_parser(which, common)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v}")


def run_raster(args) -> int:
    import torch
    from avatar.render.bench import bench_raster
    from avatar.render.hashgrid_bench import bench_hashgrid

    result = {"machine": machine()}
    result.update(bench_raster(gaussians=args.gaussians, width=args.size, height=args.size,
                               repeats=args.repeats))
    hg = bench_hashgrid(repeats=args.repeats)
    result.update({k: v for k, v in hg.items() if k.startswith("hashgrid")})
    result["torch_threads"] = torch.get_num_threads()
    _print(result, args.json)
    return 0


def run_preprocess(args) -> int:
    from avatar.settings import load_config
    from preprocess.bench import bench_preprocess, default_video

    video = args.video or default_video()
    cfg = load_config(args.config, args.overrides)
    result = {"machine": machine()}
    result.update(bench_preprocess(video, cfg.preprocess, out=args.out))
    _print(result, args.json)
    return 0


def run_robustness(args) -> int:
    from avatar.settings import load_config
    from preprocess.bench import bench_robustness, default_sweep_folder

    folder = args.folder or default_sweep_folder()
    cfg = load_config(args.config, args.overrides)
    result = {"machine": machine()}
    result.update(bench_robustness(folder, cfg.preprocess))
    if args.json:
        print(json.dumps(result))
        return 0
    for clip in result["clips"]:
        if clip["status"] == "ok":
            detail = (f"{clip['frames']:5d} frames  tracked {clip['tracked_fraction']:.3f}  "
                      f"reproj {clip['reprojection_px']:.3f} px  jitter {clip['pose_jitter_deg']:.3f} deg "
                      f"(PnP {clip['pnp_pose_jitter_deg']:.3f})  audio features: "
                      f"{'yes' if clip['audio_features'] else 'no'}")
        else:
            detail = f"rejected: {clip['reason']}"
        print(f"{clip['video']:<40} {clip['wall_s']:6.1f} s  {detail}")
    _print(result["summary"], as_json=False)
    return 0


def run_fit_bench(args) -> int:
    from avatar.fit.bench import bench_fit
    from avatar.settings import load_config
    from preprocess.bench import default_video

    cfg = load_config(args.config, args.overrides + minutes_override(args.minutes))
    result = {"machine": machine()}
    result.update(bench_fit(args.video or default_video(), cfg.preprocess, cfg.fit, out=args.out))
    _print(result, args.json)
    return 0


def run_motion_bench(args) -> int:
    from avatar.motion.bench import bench_motion
    from avatar.settings import load_config

    cfg = load_config(args.config, args.overrides)
    result = {"machine": machine()}
    result.update(bench_motion(args.subject, args.audio, cfg.motion))
    _print(result, args.json)
    return 0


def run_render_bench(args) -> int:
    from avatar.settings import load_config
    from avatar.talk.bench import bench_render

    cfg = load_config(args.config, args.overrides)
    result = {"machine": machine()}
    result.update(bench_render(args.subject, args.audio, cfg.motion, cfg.render, seconds=args.seconds,
                               paste_back=args.paste_back, camera=args.camera, source_video=args.source_video))
    _print(result, args.json)
    return 0


def run_stream_bench(args) -> int:
    from avatar.settings import load_config
    from avatar.view.bench import bench_stream

    cfg = load_config(args.config, args.overrides)
    result = {"machine": machine()}
    result.update(bench_stream(args.subject, args.audio, cfg.motion, cfg.view, seconds=args.seconds))
    _print(result, args.json)
    return 0


def run_batch_bench(args) -> int:
    from avatar.batch.bench import bench_batch

    result = {"machine": machine()}
    result.update(bench_batch(args.subject, jobs=args.jobs, seconds=args.seconds, ray=args.ray))
    _print(result, args.json)
    return 0


def run_startup(args) -> int:
    import statistics
    import subprocess
    import time

    result = {"machine": machine()}
    for name, argv in (("help", ["--help"]), ("config", ["config"])):
        times = []
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "avatar.cli.main", *argv], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        result[f"{name}_s"] = round(statistics.median(times), 3)
    result["repeats"] = max(1, args.repeats)
    _print(result, args.json)
    return 0


def machine() -> str:
    """This machine in a few words: CPU model, cores, Python."""
    import os
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
