"""``avatar export SUBJECT_DIR --ply out.ply [--frame N]``: the avatar's Gaussians as a standard 3DGS PLY."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "export", parents=[common], help="write a fitted avatar's Gaussians as a 3DGS PLY file",
        description="The Gaussians in the standard 3D Gaussian Splatting PLY layout (positions, normals, "
                    "f_dc, f_rest, opacity logit, log-scales, rotation), in the subject's head frame "
                    "(metres; x right, y down, z away from the camera), at the neutral expression or at "
                    "a tracked frame. Loadable by common splat viewers.")
    p.add_argument("subject", type=Path, help="a subject folder with a fitted avatar (`avatar fit`)")
    p.add_argument("--ply", type=Path, required=True, help="the PLY file to write")
    p.add_argument("--frame", type=int, default=None,
                   help="place the Gaussians at this frame's tracked expression and pose (default: neutral "
                        "expression, first frame's pose for the torso)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    import torch

    from avatar.core.errors import UserError
    from avatar.model.export import write_ply
    from avatar.model.gaussians import torso_motion_m
    from avatar.model.store import load_avatar
    from preprocess.subject import Subject

    subject = Subject(args.subject)
    model, _ = load_avatar(subject)
    t = subject.tracking
    if args.frame is not None and not 0 <= args.frame < t.n_frames:
        raise UserError(f"--frame {args.frame} is not a frame of {args.subject} (0 to {t.n_frames - 1})",
                        "pick a frame in that range, or leave --frame out for the neutral expression")
    if args.ply.suffix.lower() != ".ply":
        raise UserError(f"--ply {args.ply} does not end in .ply", "name the output file something.ply")
    frame = 0 if args.frame is None else args.frame
    verts = model.mean_shape if args.frame is None else torch.from_numpy(t.verts[frame])
    expr = None if args.frame is None else torch.from_numpy(t.expr[frame].astype("float32"))
    torso = None if args.frame is None else \
        torso_motion_m(torch.from_numpy(subject.torso.affine[frame]), model, torch.from_numpy(t.K(subject.size)))
    with torch.no_grad():
        means, quats, scales, opacities, colors = model.place(verts, torch.from_numpy(t.viewmats[frame]), expr, torso)
    args.ply.parent.mkdir(parents=True, exist_ok=True)
    write_ply(args.ply, means, quats, scales, opacities, colors)
    logging.getLogger("avatar").info("wrote %d Gaussians to %s", len(means), args.ply)
    return 0
