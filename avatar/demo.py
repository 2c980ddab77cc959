"""``make demo``: run what exists of the pipeline on a sample video, and say what that was.

Today that is a quick fit (``avatar fit --config fast``: preprocessing + about
four minutes of training), its evaluation (``avatar eval``, with a side-by-side
video) and a PLY export. Rendering new speech and the live viewer are later
issues; this script says so instead of pretending.
"""

from __future__ import annotations

import sys

from avatar.cli.main import main as avatar_main
from avatar.core.data import REPO_ROOT as ROOT, shared_data

SAMPLE = shared_data("videos", "may_5s.mp4")
OUT = ROOT / "demo_out" / "may_5s"


def run() -> int:
    if not SAMPLE.exists():
        print(f"demo: the sample video {SAMPLE} is not on this machine; no video ships inside the "
              "package. Run `avatar preprocess YOUR_VIDEO.mp4 --out subjects/me` instead.")
        return 1
    print(f"demo 1/3: avatar fit {SAMPLE.name} --out {OUT.relative_to(ROOT)} --config fast "
          "(preprocess, then train a small 256x256 avatar for a few minutes)")
    rc = avatar_main(["fit", str(SAMPLE), "--out", str(OUT), "--config", "fast"])
    if rc:
        return rc
    print("\ndemo 2/3: avatar eval (validation frames: the end of the clip, never trained on)")
    rc = avatar_main(["eval", str(OUT)])
    if rc:
        return rc
    print(f"          look at it: {(OUT / 'fit' / 'eval.mp4').relative_to(ROOT)} (real | rendered | error)")
    print("\ndemo 3/3: avatar export --ply (for a Gaussian-splat viewer)")
    rc = avatar_main(["export", str(OUT), "--ply", str(OUT / "avatar.ply")])
    print("\nWhat this demo did: preprocessing, fitting, evaluating and exporting an avatar.\n"
          "Not built yet (later issues): avatar motion (speech -> expressions), avatar render "
          "(speech -> video), avatar view (live viewer).")
    return rc
    print("\ndemo 2/3: avatar inspect --json")
    avatar_main(["inspect", str(OUT), "--json"])
    print(f"          look at the tracking: {(OUT / 'preview.mp4').relative_to(ROOT)}")
    print("\ndemo 3/3: CPU rasteriser and hash grid benchmark (avatar bench raster)")
    rc = avatar_main(["bench", "raster", "--repeats", "5"])
    print("\nWhat this demo did: preprocessing and the CPU kernels, the parts that exist today.\n"
          "Not built yet (later issues): avatar fit (training), avatar render (speech -> video), "
          "avatar view (live viewer).")
    return rc


if __name__ == "__main__":
    sys.exit(run())
