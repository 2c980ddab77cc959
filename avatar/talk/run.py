"""``avatar render``: speech (a sound file, text, or a motion file) -> a talking-avatar mp4.

The steps, each streamed so minutes of speech render in bounded memory:

1. the speech: a sound file as given, or ``--text`` spoken by espeak-ng
   (:mod:`avatar.talk.tts`) into a temporary wav;
2. the motion: :func:`avatar.motion.generate.motion_from_features` on the
   speech's features (the subject's motion model, trained on first use), or a
   motion file read back;
3. the cameras (:mod:`avatar.talk.cameras`) and, with paste-back, the source
   frames (:mod:`avatar.talk.paste_back`);
4. frame by frame: render (:class:`avatar.talk.frames.AvatarFrames`), paste back,
   and pipe to the encoder (:class:`avatar.core.video.VideoWriter`), which adds
   the original sound as AAC when the frames are done. Video frame ``k`` shows
   motion frame ``k``, which the features put at ``[k / fps, (k + 1) / fps)`` of
   the sound: no offset.

Nothing heavy happens before every input is checked (subject fitted, output
writable, audio readable, voice known), and the mp4 appears only when complete.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatar.core.errors import UserError
from avatar.core.progress import progress
from avatar.core.video import VideoWriter
from avatar.motion.config import MotionConfig
from avatar.motion.generate import Controls, check_sound_file
from avatar.talk.config import RenderConfig

log = logging.getLogger("avatar")

OUT_SUFFIXES = (".mp4",)


@dataclass(frozen=True)
class TalkRequest:
    """What to render. Exactly one of ``audio``, ``text``, ``motion`` is the speech (``audio`` may come with
    ``motion`` as its sound)."""

    subject: Path
    """The fitted subject folder."""
    out: Path
    """The .mp4 to write."""
    audio: Path | None = None
    """Speech recording (any format ffmpeg reads)."""
    text: str | None = None
    """Text to speak with espeak-ng."""
    voice: str = "en-us"
    """espeak-ng voice of ``text``."""
    motion: Path | None = None
    """Motion file (.json/.csv/.npz from ``avatar motion``) to render instead of predicting one, or another
    subject folder whose tracked motion is retargeted onto this one (reenactment)."""
    own_pose: bool = False
    """Reenactment: replay this subject's head poses instead of the other person's."""
    controls: Controls = field(default_factory=Controls)
    """Pose mode, mouth amplitude, blink rate, head motion, seed."""
    camera: str = "fixed"
    """fixed, orbit, or a camera keyframe .json."""
    paste_back: bool = False
    """Composite into the source video's uncropped frames."""
    source_video: Path | None = None
    """Where the source video is now, for paste-back (default: where preprocess read it)."""
    backend: str = "auto"
    """Rasteriser backend (auto, cpu, cuda, torch)."""


class InOrder:
    """Runs ``work(item)`` for each item put, in order, on one background thread, at most ``depth`` behind.

    The renderer keeps both cores busy only in its parallel part; compositing,
    the pipe to the encoder and the source decoder fill the gaps from here
    (NumPy, OpenCV and pipe writes release the GIL). An error in ``work`` is
    raised in the caller at its next ``put`` or at the end of the ``with``; an
    error in the caller drops what is still queued.
    """

    def __init__(self, work, depth: int = 2):
        self.work = work
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.abandon = False
        self.thread = threading.Thread(target=self._run, name="avatar-render-writer", daemon=True)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if self.error is None and not self.abandon:
                try:
                    self.work(item)
                except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                    self.error = e

    def put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def __enter__(self) -> InOrder:
        self.thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.abandon = exc_type is not None
        self.queue.put(_END)
        self.thread.join()
        if exc_type is None and self.error is not None:
            raise self.error
        return False


_END = object()


def check_output(out: Path) -> None:
    """UserError unless ``out`` is an .mp4 path in an existing, writable folder (checked before any work)."""
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise UserError(f"--out {out} does not end in .mp4", "name the video e.g. talk.mp4")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"the folder of --out {out} does not exist", f"create {folder} first")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder", "give a file name ending in .mp4")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".avatar-write-test-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write into {folder} ({e.strerror})", "choose a folder you can write to") from None


def render_talk(req: TalkRequest, motion_cfg: MotionConfig = MotionConfig(),
                cfg: RenderConfig = RenderConfig()) -> dict:
    """Render ``req`` to ``req.out``; returns a summary (frames, seconds per step, sizes) for logs and benches."""
    from avatar.talk.frames import AvatarFrames
    from preprocess.subject import Subject

    check_output(req.out)
    req.controls.check()
    speech = [x for x in (req.audio, req.text, req.motion) if x is not None]
    if not speech or (req.text is not None and len(speech) > 1):
        raise UserError("say what to render: give --audio FILE, --text \"...\" or --motion FILE",
                        "--audio may come with --motion (as its sound), --text only alone")
    times = {}
    t0 = time.perf_counter()
    subject = Subject(req.subject)
    frames = AvatarFrames(subject, backend=req.backend)  # a subject that was never fitted stops here
    with tempfile.TemporaryDirectory(prefix="avatar-render-") as tmp:
        audio = req.audio
        if req.text is not None:
            from avatar.talk.tts import synthesise_to_file

            audio = synthesise_to_file(req.text, Path(tmp) / "speech.wav", req.voice, cfg.tts_rate_wpm)
        motion, audio = _motion(req, subject, frames, audio, motion_cfg)
        times["motion_s"] = round(time.perf_counter() - t0, 2)
        summary = _render(req, subject, frames, motion, audio, cfg)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary.update(times)
    return summary


def _motion(req: TalkRequest, subject, frames, audio: Path | None, motion_cfg: MotionConfig):
    """(the Motion to render, the sound file to mux or None)."""
    from avatar.motion.generate import audio_features, motion_from_features
    from avatar.motion.model import load_or_train_motion

    if req.motion is not None and Path(req.motion).is_dir():
        return _reenactment(req, subject, motion_cfg, audio)
    if req.motion is not None:
        motion = _motion_file(req.motion, subject, frames)
        return motion, (check_sound_file(audio) if audio is not None else _motion_sound(motion, req.motion))
    feats = audio_features(audio, subject)
    model = load_or_train_motion(subject, motion_cfg)
    motion = motion_from_features(model, subject, feats, req.controls, meta={"audio": str(Path(audio).resolve())})
    return motion, audio


def _reenactment(req: TalkRequest, subject, motion_cfg: MotionConfig, audio: Path | None):
    """Another subject folder's tracked motion, retargeted (avatar.motion.retarget), and its sound."""
    from avatar.motion.model import load_or_train_motion
    from avatar.motion.retarget import reenact
    from preprocess.subject import Subject

    other = Subject(req.motion)
    deviations = load_or_train_motion(subject, motion_cfg).replay if req.own_pose else None
    motion = reenact(other, subject, deviations, keep_pose=not req.own_pose)
    sound = check_sound_file(audio) if audio is not None else (
        Path(motion.meta["audio"]) if "audio" in motion.meta else None)
    return motion, sound


def _motion_file(path: Path, subject, frames):
    from avatar.motion.motion_file import load_motion

    motion = load_motion(path)
    if abs(motion.fps - subject.fps) > 1e-3:
        raise UserError(f"{path} is at {motion.fps:g} fps, the subject at {subject.fps:g}",
                        "make the motion for this subject with `avatar motion AUDIO --subject "
                        f"{subject.paths.root}`")
    if motion.expr.shape[1] != frames.n_expr:
        raise UserError(f"{path} has {motion.expr.shape[1]} expression coefficients a frame, this subject's face "
                        f"model has {frames.n_expr}: it was made for another subject",
                        f"make it with `avatar motion AUDIO --subject {subject.paths.root}`")
    made_for = motion.meta.get("subject")
    if made_for and Path(made_for).resolve() != Path(subject.paths.root).resolve():
        log.warning("%s was made for %s, not %s: its coefficients may mean other shapes here",
                    path, made_for, subject.paths.root)
    return motion


def _motion_sound(motion, path: Path) -> Path | None:
    """The sound a motion file was made from, when it is still there (else the video is silent)."""
    audio = motion.meta.get("audio")
    if audio and Path(audio).is_file():
        return Path(audio)
    log.warning("%s names no sound file that still exists: the video is silent (give --audio to add one)", path)
    return None


def _render(req: TalkRequest, subject, frames, motion, audio: Path | None, cfg: RenderConfig) -> dict:
    from avatar.motion.generate import replayed_frames
    from avatar.talk.cameras import camera_path

    n = len(motion)
    cameras = camera_path(req.camera, n, motion.fps, motion.viewmats, orbit_deg=cfg.orbit_deg,
                          orbit_period_s=cfg.orbit_period_s)
    source = paste = torso = None
    width = height = subject.size
    if req.paste_back:
        from avatar.talk.paste_back import PasteBack, SourceFrames

        order = replayed_frames(subject, n)
        source = SourceFrames(subject, order, req.source_video)
        width, height = source.width, source.height
        paste = PasteBack(subject, width, height, cfg.paste_feather, cfg.paste_person_margin)
        torso = subject.torso.affine[order]  # the shoulders where the source frame has them: no seam at the crop
    verts = motion.verts

    def finish(k: int, picture) -> np.ndarray:
        if paste is None:
            return picture.rgb
        i = int(order[k])
        return paste.composite(source.get(i), picture, subject.labels(i))

    from avatar.talk.frames import FramePool

    t0 = time.perf_counter()
    try:
        with VideoWriter(req.out, width, height, motion.fps, audio, preset=cfg.x264_preset, crf=cfg.crf,
                         threads=cfg.x264_threads) as video, \
                InOrder(lambda item: video.write(finish(*item))) as behind, \
                FramePool(cfg.render_workers) as pool:
            rendering: deque = deque()  # (k, future): at most render_workers frames ahead
            for k in progress(range(n), desc="render", unit="frame"):
                rendering.append((k, pool.submit(frames.render, motion.expr[k], motion.viewmats[k],
                                                 None if verts is None else verts[k],
                                                 None if cameras is None else cameras[k],
                                                 None if torso is None else torso[k])))
                if len(rendering) > cfg.render_workers:
                    done, future = rendering.popleft()
                    behind.put((done, future.result()))  # pasted back and encoded while others render
            while rendering:
                done, future = rendering.popleft()
                behind.put((done, future.result()))
    finally:
        if source is not None:
            source.close()
    return {"out": str(req.out), "frames": n, "fps": motion.fps, "width": width, "height": height,
            "duration_s": round(n / motion.fps, 3), "render_s": round(time.perf_counter() - t0, 2),
            "gaussians": len(frames.model), "audio": None if audio is None else str(audio),
            "camera": req.camera, "paste_back": req.paste_back}
