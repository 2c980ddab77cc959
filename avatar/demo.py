"""``make demo``: run what exists of the pipeline on a sample video, and say what that was.

Today that is preprocessing (``avatar preprocess`` + ``avatar inspect``) and
the CPU rasteriser benchmark. Fitting, rendering and the live viewer are later
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
    print(f"demo 1/3: preprocess {SAMPLE.name} -> {OUT.relative_to(ROOT)} "
          "(decode, landmarks, tracking, segmentation, background, audio features, preview)")
    rc = avatar_main(["preprocess", str(SAMPLE), "--out", str(OUT)])
    if rc:
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
