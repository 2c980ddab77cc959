"""What the page can make the avatar say: the subject's own clips, sample voices, uploads, typed text.

Everything becomes (T,) float32 mono at 16 kHz (the stream's rate). Uploads are
checked here, on the server, whatever the page checked: size while receiving,
then that ffmpeg finds a sound stream and decodes it, then its length.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.core.errors import UserError
from avatar.view.config import ViewConfig

RATE = 16000
CLIP_S = 10.0
"""Length of the pieces the subject's own recording is offered in, seconds."""
MAX_CLIPS = 6
SAMPLE_SENTENCES = {
    "en-us": "Hello! I am a talking avatar, made from a few minutes of video. I can say anything you type.",
    "en-gb": "Good afternoon. This voice is synthesised on your own machine, and nothing leaves it.",
    "de": "Guten Tag! Ich bin ein sprechender Avatar und laufe ganz ohne Grafikkarte.",
    "fr": "Bonjour ! Je suis un avatar parlant, calculé en temps réel sur votre processeur.",
    "es": "¡Hola! Soy un avatar que habla, y funciono sin conexión en tu ordenador.",
}
"""The sample voices: espeak-ng speaking one sentence in each of these languages."""


@dataclass(frozen=True)
class Clip:
    id: str
    label: str
    seconds: float


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == RATE:
        return samples.astype(np.float32)
    import soxr

    return soxr.resample(samples, rate, RATE).astype(np.float32)


class SpeechSources:
    """The clips a session can play, uploads kept in memory (the oldest forgotten first), and the TTS."""

    def __init__(self, subject, cfg: ViewConfig, tts_rate_wpm: int = 160):
        self.cfg, self.tts_rate_wpm = cfg, tts_rate_wpm
        self._own = self._own_clips(subject)
        self._uploads: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _own_clips(subject) -> dict[str, tuple[Clip, np.ndarray]]:
        audio = subject.audio()
        if audio is None:
            return {}
        wav, rate = audio
        wav = _resample(wav, rate)
        n = int(CLIP_S * RATE)
        out = {}
        for i in range(min(MAX_CLIPS, max(1, len(wav) // n))):
            piece = wav[i * n:(i + 1) * n]
            if len(piece) < RATE:
                break
            lo, hi = i * CLIP_S, i * CLIP_S + len(piece) / RATE
            clip = Clip(f"own-{i}", f"own voice {int(lo // 60)}:{lo % 60:04.1f}-{int(hi // 60)}:{hi % 60:04.1f}",
                        round(len(piece) / RATE, 2))
            out[clip.id] = (clip, piece)
        return out

    def clips(self) -> list[Clip]:
        """The subject's own clips, then the sample voices."""
        samples = [Clip(f"sample-{v}", f"sample voice ({v})", 0.0) for v in SAMPLE_SENTENCES]
        return [c for c, _ in self._own.values()] + samples

    def clip(self, clip_id: str) -> tuple[np.ndarray, str]:
        """(samples, label) of a clip id from :meth:`clips`."""
        if clip_id in self._own:
            clip, samples = self._own[clip_id]
            return samples, clip.label
        if clip_id.startswith("sample-") and clip_id[7:] in SAMPLE_SENTENCES:
            voice = clip_id[7:]
            return self.speak(SAMPLE_SENTENCES[voice], voice), f"sample voice ({voice})"
        raise UserError(f"no clip {clip_id!r}", "pick one from the list")

    def speak(self, text: str, voice: str) -> np.ndarray:
        """``text`` spoken by espeak-ng with ``voice``, at 16 kHz."""
        from avatar.talk.tts import synthesise

        text = " ".join(str(text).split())
        if len(text) > self.cfg.max_text_chars:
            raise UserError(f"the text is {len(text)} characters long, more than {self.cfg.max_text_chars}",
                            "say it in parts")
        samples, rate = synthesise(text, voice, self.tts_rate_wpm)
        return self._limit(_resample(samples, rate), "the spoken text")

    def add_upload(self, data: bytes, filename: str) -> tuple[str, float]:
        """Decode an uploaded file (bytes, already size-checked); (its id, seconds). UserError when it is
        not audio ffmpeg can read, has no sound, or is too long."""
        from avatar.motion.generate import check_sound_file
        from preprocess.decode import decode_audio

        suffix = Path(filename or "upload").suffix[:16]
        with tempfile.TemporaryDirectory(prefix="avatar-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                check_sound_file(path)
                samples = decode_audio(path, RATE)
            except UserError as e:
                raise UserError(f"{filename or 'the upload'} is not audio that can be played ({_first_line(e)})",
                                "upload a wav, mp3, m4a, flac or ogg file") from None
        if samples is None or len(samples) < RATE // 10:
            raise UserError(f"{filename or 'the upload'} has no sound", "upload a recording of speech")
        samples = self._limit(samples, filename or "the upload")
        upload_id = uuid.uuid4().hex[:12]
        with self._lock:
            self._uploads[upload_id] = samples
            while len(self._uploads) > self.cfg.uploads_kept:
                self._uploads.popitem(last=False)
        return upload_id, round(len(samples) / RATE, 2)

    def upload(self, upload_id: str) -> np.ndarray:
        with self._lock:
            if upload_id not in self._uploads:
                raise UserError("that upload is no longer kept", "upload the file again")
            return self._uploads[upload_id]

    @property
    def n_uploads(self) -> int:
        return len(self._uploads)

    def _limit(self, samples: np.ndarray, what: str) -> np.ndarray:
        seconds = len(samples) / RATE
        if seconds > self.cfg.max_upload_s:
            raise UserError(f"{what} is {seconds:.0f} s long, more than {self.cfg.max_upload_s:.0f} s",
                            "use a shorter clip (or raise view.max_upload_s)")
        return samples


def _first_line(e: UserError) -> str:
    return e.problem.splitlines()[0][-160:]
