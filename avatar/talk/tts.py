"""Local text-to-speech: espeak-ng's C library (bundled by the ``espeakng-loader`` wheel) through ctypes.

No voice model is downloaded: the wheel ships ``libespeak-ng`` and its data
(about 100 languages), and ``avatar render --text`` and the viewer speak with
it. The library is driven in synchronous mode: ``espeak_Synth`` returns after
calling our callback with every block of 16-bit samples, which we collect.

espeak-ng keeps one engine per process (its state is global, in C), so this
module initialises it once, under a lock, and every call sets its voice and
rate again before it speaks.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.core.errors import UserError

DEFAULT_VOICE = "en-us"
"""espeak-ng voice of ``--text`` unless ``--voice`` names another."""
DEFAULT_RATE_WPM = 160
"""Speaking rate, words per minute (espeak-ng's default is 175; a little slower reads more naturally)."""
MAX_CHARS = 20_000
"""Longest text accepted (about 20 minutes of speech)."""

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE = 1  # espeak_PARAMETER espeakRATE
# espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA: the callback also gets each phoneme, in IPA,
# with its start in the sound (what the demo's synthetic sample moves its mouth by)
_INIT_PHONEME_EVENTS_IPA = 0x0003
_EVENT_END_OF_LIST, _EVENT_PHONEME = 0, 7


class _Event(ctypes.Structure):
    """espeak_EVENT of speak_lib.h (its id union read as the 8-byte string a phoneme event fills)."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice."""

    name: str
    """Its name, e.g. "English_(America)"."""
    language: str
    """Its language code, e.g. "en-us": what ``--voice`` takes (its name or identifier work too)."""
    identifier: str
    """Its file in espeak-ng's data, e.g. "gmw/en-US"."""


class _Engine:
    """The process's one espeak-ng engine (see the module's docstring)."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise UserError("text-to-speech needs espeak-ng, which is not installed",
                            "run `make setup` (or `pip install espeakng-loader`), or give --audio instead") from None
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200,
                                               espeakng_loader.get_data_path().encode(),
                                               _INIT_PHONEME_EVENTS_IPA)
        if self.rate <= 0:
            raise UserError("espeak-ng did not start (its data folder is missing or damaged)",
                            "reinstall it: pip install --force-reinstall espeakng-loader")
        self.blocks: list[np.ndarray] = []
        self.phonemes: list[tuple[int, str]] = []
        self.callback = _CALLBACK(self._collect)  # kept on self: the C side holds only a raw pointer
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, samples, n, events) -> int:
        if n > 0:
            self.blocks.append(np.ctypeslib.as_array(samples, shape=(n,)).copy())
        i = 0
        while events and events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_PHONEME:
                self.phonemes.append((events[i].sample, events[i].id.decode("utf-8", errors="replace")))
            i += 1
        return 0  # 0 = go on

    def voices(self) -> list[Voice]:
        out, table, i = [], self.lib.espeak_ListVoices(None), 0
        while table[i]:
            v = table[i].contents
            # languages starts with a priority byte, then the main language code, NUL-terminated
            out.append(Voice(v.name.decode(), ctypes.string_at(v.languages + 1).decode(errors="replace"),
                             v.identifier.decode()))
            i += 1
        return out

    def speak(self, text: str, voice: str, rate_wpm: int) -> np.ndarray:
        """The samples of ``text``; its phonemes are left in ``self.phonemes`` as (first sample, IPA)."""
        wanted = voice.strip().lower()
        match = [v for v in self.voices() if wanted in (v.language.lower(), v.name.lower(), v.identifier.lower())]
        # by its file (identifier): espeak_SetVoiceByName does not know language codes such as "en-gb"
        if not match or self.lib.espeak_SetVoiceByName(match[0].identifier.encode()) != 0:
            known = {v.language for v in self.voices()}
            raise UserError(f"espeak-ng has no voice {voice!r}",
                            f"use a language code such as en-us, en-gb, de, fr, es, zh or ja "
                            f"({len(known)} are installed; `avatar render --list-voices` lists them)")
        self.lib.espeak_SetParameter(_RATE, int(rate_wpm), 0)
        data = text.encode("utf-8") + b"\0"
        self.blocks, self.phonemes = [], []
        if self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
            raise UserError("espeak-ng could not speak the text", "check the text is plain UTF-8")
        samples = np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.int16)
        self.blocks = []
        return samples


_lock = threading.Lock()
_engine: _Engine | None = None


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def list_voices() -> list[Voice]:
    """The voices espeak-ng has, sorted by name."""
    with _lock:
        return sorted(_get_engine().voices(), key=lambda v: v.name)


@dataclass(frozen=True)
class Speech:
    """What espeak-ng said: the sound and, phoneme by phoneme, when."""

    samples: np.ndarray
    """(T,) float32 mono samples in [-1, 1]."""
    rate: int
    """Sample rate, Hz (22050 for espeak-ng)."""
    phonemes: list[tuple[float, str]]
    """(start, seconds into ``samples``; the phoneme in IPA with stress marks, "" for a pause), in order."""


def speak(text: str, voice: str = DEFAULT_VOICE, rate_wpm: int = DEFAULT_RATE_WPM) -> Speech:
    """Speak ``text`` with espeak-ng: its samples, their rate and its phoneme timings."""
    text = " ".join(text.split())
    if not text:
        raise UserError("--text is empty", "give the sentence to say, e.g. --text \"Hello there\"")
    if len(text) > MAX_CHARS:
        raise UserError(f"--text is {len(text)} characters long, more than {MAX_CHARS}",
                        "split it into several renders, or record it and give --audio")
    if not 40 <= rate_wpm <= 400:
        raise UserError(f"speaking rate {rate_wpm} words per minute is outside 40..400", "160 is a calm pace")
    with _lock:
        engine = _get_engine()
        samples = engine.speak(text, voice, rate_wpm)
        rate = engine.rate
        phonemes = [(first / rate, ipa) for first, ipa in engine.phonemes]
    if not len(samples) or not np.any(samples):
        raise UserError(f"espeak-ng said nothing for {text[:40]!r}", "give words in the voice's language")
    return Speech(samples.astype(np.float32) / 32768.0, rate, phonemes)


def synthesise(text: str, voice: str = DEFAULT_VOICE, rate_wpm: int = DEFAULT_RATE_WPM) -> tuple[np.ndarray, int]:
    """Speak ``text``: (T,) float32 mono samples in [-1, 1] and their rate, Hz (22050 for espeak-ng)."""
    speech = speak(text, voice, rate_wpm)
    return speech.samples, speech.rate


def synthesise_to_file(text: str, path: str | Path, voice: str = DEFAULT_VOICE,
                       rate_wpm: int = DEFAULT_RATE_WPM) -> Path:
    """Speak ``text`` into a 16-bit wav at ``path`` (written atomically); returns the path."""
    import soundfile as sf

    from avatar.core.files import atomic_path

    samples, rate = synthesise(text, voice, rate_wpm)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(tmp, samples, rate, subtype="PCM_16", format="WAV")
    return path
