"""``--paste-back``: the rendered head crop composited into the source video's own, uncropped frames.

Preprocess cut one square crop out of the source (``manifest.json``'s ``crop``,
source pixels) and resized it to S x S; paste-back undoes that. For each output
frame it takes the source frame whose head pose is replayed
(:func:`avatar.motion.generate.replayed_frames`), scales the render up to the
crop's size and blends it in:

- outside the crop: the source frame, untouched;
- inside it, where the avatar is (its alpha) or where the person was in that
  source frame (its label map, grown by ``paste_person_margin``): the render,
  so no trace of the real head shows where the avatar's jaw or pose differ;
- inside it, elsewhere: the source frame's live background (a moving screen
  behind the anchor keeps moving);
- at the crop's edges that lie inside the frame: a smooth ramp over
  ``paste_feather`` of its side from render to source, so no seam shows where
  the render's torso meets the real one (the render puts the shoulders where
  that source frame's torso tracking has them, so the two line up).

Source frames are decoded once, forward, at the subject's frame rate and on the
timeline preprocess used (the ``fps`` filter from time 0). The replay plays the
training frames forward and then backward, so a frame that will be asked for
again is kept in a JPEG cache in a temporary folder (removed at the end), and
memory stays at a few frames whatever the length.
"""

from __future__ import annotations

import collections
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from avatar.core import media
from avatar.core.errors import UserError
from avatar.talk.frames import Picture
from preprocess.subject import Subject

JPEG_QUALITY = 95
"""Quality of cached source frames (visually lossless; the output's H.264 loses more)."""


class SourceFrames:
    """Frames of the subject's source video, full size, at the subject's frame rate, asked for in a known order."""

    def __init__(self, subject: Subject, order: np.ndarray, video: str | Path | None = None):
        """``order``: (F,) the frame indices that :meth:`get` will be called with, in that order;
        ``video``: the source file, when it moved since preprocess (default: the manifest's)."""
        m = subject.manifest
        if m.imported_from is not None:
            raise UserError(f"{subject.paths.root} was imported from a {m.imported_from.get('format')} dataset, "
                            "whose frames are already crops: there is no uncropped video to paste into",
                            "render without --paste-back")
        self.path = Path(video or m.source)
        if not self.path.is_file():
            raise UserError(f"the source video of {subject.paths.root} is not at {self.path} any more",
                            "give its new place with --source-video PATH, or render without --paste-back")
        self.width, self.height = int(m.source_info["width"]), int(m.source_info["height"])
        probe = media.probe_media(self.path).video
        if probe is None or tuple(probe.display_size) != (self.width, self.height):
            raise UserError(f"{self.path} is not the video {subject.paths.root} was made from "
                            f"(it is not {self.width}x{self.height})", "give the original with --source-video")
        self.order = np.asarray(order, np.int64)
        self._uses = collections.Counter(self.order.tolist())
        self._next = 0  # index of the next frame the decoder gives
        self._last: tuple[int, np.ndarray] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="avatar-paste-")
        cmd = media.ffmpeg_command(["-i", self.path, "-map", m.source_info["video_stream"],
                                    "-vf", f"fps=fps={subject.fps}:start_time=0", "-frames:v", str(m.frames),
                                    "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"])
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err)

    def get(self, k: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB source frame ``k`` (the next one of ``order``)."""
        k = int(k)
        if self._last is not None and self._last[0] == k:
            frame = self._last[1]
        elif k < self._next:
            frame = cv2.cvtColor(cv2.imread(self._cached(k)), cv2.COLOR_BGR2RGB)
        else:
            frame = self._decode_to(k)
        self._uses[k] -= 1
        if self._uses[k] <= 0:
            Path(self._cached(k)).unlink(missing_ok=True)
        self._last = (k, frame)
        return frame

    def _decode_to(self, k: int) -> np.ndarray:
        size = self.width * self.height * 3
        while True:
            buf = self._proc.stdout.read(size)
            if len(buf) < size:
                self._err.seek(0)
                raise UserError(f"{self.path}: decoding stopped at frame {self._next} "
                                f"({media.ffmpeg_reason(self._err.read())})",
                                "the source video is damaged; give a good copy with --source-video")
            frame = np.frombuffer(buf, np.uint8).reshape(self.height, self.width, 3)
            j, self._next = self._next, self._next + 1
            if self._uses[j] > (1 if j == k else 0):  # asked for again later: keep it
                cv2.imwrite(self._cached(j), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if j == k:
                return frame

    def _cached(self, k: int) -> str:
        return str(Path(self._dir.name) / f"{k:06d}.jpg")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc.stdout.close()
        self._err.close()
        self._dir.cleanup()

    def __enter__(self) -> SourceFrames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PasteBack:
    """Blends S x S renders into full source frames (see the module's docstring)."""

    def __init__(self, subject: Subject, width: int, height: int, feather: float = 0.08,
                 person_margin: float = 0.02):
        crop = subject.manifest.crop
        self.x0, self.y0, self.side = int(crop["x0"]), int(crop["y0"]), int(crop["side"])
        self.size = subject.size
        self.width, self.height = width, height
        # the part of the crop inside the frame: source rows/cols [r0, r1) x [c0, c1)
        self.c0, self.c1 = max(0, self.x0), min(width, self.x0 + self.side)
        self.r0, self.r1 = max(0, self.y0), min(height, self.y0 + self.side)
        if self.c1 <= self.c0 or self.r1 <= self.r0:
            raise UserError(f"the crop of {subject.paths.root} lies outside its {width}x{height} source frame",
                            "re-run `avatar preprocess` on the video")
        # weights are made at the render's size S and scaled up with it each frame (the crop is 1.3-4x larger)
        self.ramp = cv2.resize(self._edge_ramp(feather), (self.size, self.size), interpolation=cv2.INTER_AREA)
        self.grow = max(1, int(round(person_margin * self.size)))
        self._kernel = np.ones((2 * self.grow + 1,) * 2, np.uint8)

    def _edge_ramp(self, feather: float) -> np.ndarray:
        """(side, side) float32 in [0, 1] over the whole crop: 1 inside, easing to 0 at its edges that are
        inside the frame (an edge on or past the frame's own needs no blend)."""
        band = max(1.0, feather * self.side)
        pos = np.arange(self.side) + 0.5
        far = np.full(self.side, np.inf)
        top = pos if self.y0 > 0 else far
        bottom = self.side - pos if self.y0 + self.side < self.height else far
        left = pos if self.x0 > 0 else far
        right = self.side - pos if self.x0 + self.side < self.width else far
        d = np.minimum(np.minimum(top, bottom)[:, None], np.minimum(left, right)[None, :])
        x = np.clip(d / band, 0.0, 1.0)
        return (x * x * (3.0 - 2.0 * x)).astype(np.float32)  # smoothstep: no kink where the ramp ends

    def _region(self, image: np.ndarray, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
        """An S x S working-frame image scaled to the crop's side, cut to the part inside the frame."""
        big = cv2.resize(image, (self.side, self.side), interpolation=interpolation)
        return big[self.r0 - self.y0:self.r1 - self.y0, self.c0 - self.x0:self.c1 - self.x0]

    def composite(self, source: np.ndarray, picture: Picture, labels: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8: ``picture`` pasted into ``source``; ``labels`` (S, S) the label map of the source
        frame's crop (0 = background).

        Inside the crop, ``out = (1 - a) * src + a * rgb`` with ``a = f * covered``:
        f the edge ramp and ``covered = alpha + (1 - alpha) * P`` (P the grown
        person mask), the share that is not live background. Where the avatar is
        soft and the person mask empty this keeps a little of the render's plate
        behind the avatar's edge, where plate and live background agree anyway.
        ``a`` is made at the render's size and scaled up with the render; OpenCV
        blends the crop-sized pixels.
        """
        person = cv2.dilate((labels > 0).astype(np.uint8) * np.uint8(255), self._kernel)
        person = cv2.blur(person, (self.grow, self.grow)).astype(np.float32) * (1.0 / 255.0)
        alpha = np.clip(picture.alpha, 0.0, 1.0)
        covered = alpha + (1.0 - alpha) * person
        a = self._region(self.ramp * covered)
        c = self._region(picture.rgb)
        out = source.copy()
        region = out[self.r0:self.r1, self.c0:self.c1]
        region[...] = cv2.blendLinear(c, np.ascontiguousarray(region), a, 1.0 - a)
        return out
