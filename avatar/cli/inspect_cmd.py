"""``avatar inspect SUBJECT_DIR [--json]``: what is in a subject folder and how good it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from preprocess.subject_data import Manifest


def add_parser(sub, common) -> None:
    p = sub.add_parser("inspect", parents=[common], help="summarise a subject folder",
                       description="Print the summary of a subject folder made by `avatar preprocess`.")
    p.add_argument("subject", type=Path, help="subject folder")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def format_summary(manifest: Manifest) -> str:
    s = manifest.summary()
    lines = [
        f"  frames           {s['frames']} at {s['fps']:g} fps ({s['duration_s']:.1f} s), "
        f"{s['width']}x{s['height']}",
        f"  tracked          {100 * s['tracked_fraction']:.1f}% of frames "
        f"({s['frames_no_face']} without a face, {s['frames_several_faces']} with several)",
        f"  reprojection     {s['reprojection_px']:.3f} px (mean landmark error of the fitted face)",
        f"  pose jitter      {s['pose_jitter_deg']:.4f} deg (raw per-frame PnP: {s['pnp_pose_jitter_deg']:.4f})",
        f"  focal length     {s['focal_px']:.1f} px",
        f"  split            {s['train_frames']} train / {s['val_frames']} validation frames",
        "  audio            " + (f"{s['audio_sample_rate']} Hz, features at {s['audio_feature_fps']:g} fps"
                                if s["has_audio"] else "none"),
    ]
    imported = s.get("imported_from")
    if imported:
        lines.append(f"  imported from    {imported['folder']} (ER-NeRF / AD-NeRF dataset, "
                     f"{imported['frames']} frames)")
    return "\n".join(lines)


def run(args) -> int:
    from preprocess.subject import Subject

    subject = Subject(args.subject)
    if args.json:
        print(json.dumps(subject.manifest.summary()))
    else:
        print(f"{args.subject}:")
        print(format_summary(subject.manifest))
    return 0
