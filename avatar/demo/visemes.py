"""Mouth shapes from phonemes: what the demo's synthetic sample says with its lips.

espeak-ng reports each phoneme it speaks, in IPA, with its start in the sound
(:func:`avatar.talk.tts.speak`). Each phoneme gets a target mouth shape: how far
the jaw is open and how spread (positive) or rounded (negative) the lips are.
The shapes are held over each phoneme and smoothed across its neighbours (real
lips move towards the next sound before it starts), then sampled at the video's
frame rate. A coarse table by the phoneme's first letter is enough: this drives
a cartoon of speech for the sample, not a lip-reading model.
"""

from __future__ import annotations

import numpy as np

# (open in [0, 1], spread in [-1, 1]) per IPA letter; a phoneme takes its first letter's shape
_SHAPES: dict[str, tuple[float, float]] = {}
for letters, shape in (
    ("aɑæɐʌɒ", (0.95, 0.1)),   # open vowels
    ("eɛəɜɚœ", (0.55, 0.3)),   # mid vowels
    ("iɪjy", (0.3, 0.7)),      # close front vowels, j
    ("oɔø", (0.6, -0.6)),      # rounded mid vowels
    ("uʊw", (0.25, -0.9)),     # rounded close vowels, w
    ("pbm", (0.0, 0.0)),       # lips closed
    ("fv", (0.08, 0.1)),       # lower lip against the teeth
    ("szθð", (0.12, 0.4)),     # teeth nearly together
    ("ʃʒ", (0.2, -0.5)),       # lips pushed forward
    ("tdnlɾrɹkgŋxhʔç", (0.3, 0.1)),  # tongue consonants: the jaw half open
):
    for letter in letters:
        _SHAPES[letter] = shape
_REST = (0.0, 0.0)
"""A pause: lips closed, relaxed."""
_OTHER = (0.3, 0.0)
"""Any phoneme the table does not know."""


def phoneme_shape(ipa: str) -> tuple[float, float]:
    """(open, spread) of one phoneme given in IPA ("" is a pause); stress and length marks are ignored."""
    letters = ipa.strip("ˈˌːˑ'")
    if not letters:
        return _REST
    if letters.startswith("tʃ") or letters.startswith("dʒ"):
        return _SHAPES["ʃ"]
    return _SHAPES.get(letters[0], _OTHER)


def mouth_track(phonemes: list[tuple[float, str]], duration_s: float, fps: float,
                smooth_s: float = 0.025) -> np.ndarray:
    """Per-frame mouth shapes of a phoneme sequence.

    phonemes:   (start in seconds, IPA) in order, as :func:`avatar.talk.tts.speak` gives them.
    duration_s: length of the sound; frames cover ``[0, duration_s)``.
    smooth_s:   standard deviation of the Gaussian that blends neighbouring shapes, seconds.
    Returns (F, 2) float32: open in [0, 1] and spread in [-1, 1] for frame k at time k / fps.
    """
    step = 0.005  # held shapes on a 5 ms grid, then smoothed
    t = np.arange(0.0, duration_s, step)
    held = np.tile(np.asarray(_REST, np.float32), (len(t), 1))
    for i, (start, ipa) in enumerate(phonemes):
        end = phonemes[i + 1][0] if i + 1 < len(phonemes) else duration_s
        held[(t >= start) & (t < end)] = phoneme_shape(ipa)
    radius = int(np.ceil(3 * smooth_s / step))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) * step / smooth_s) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(held, ((radius, radius), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(2)], axis=1)
    frames = np.arange(int(np.floor(duration_s * fps))) / fps
    idx = np.minimum((frames / step).astype(int), len(t) - 1)
    return smooth[idx].astype(np.float32)
