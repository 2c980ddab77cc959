"""Audio features aligned to video frames, for training audio and new driving audio alike.

Alignment. Video frame ``k`` covers ``[k / fps, (k + 1) / fps)`` seconds; its
features are centred on ``(k + 0.5) / fps``. High-rate rows (``hi_rate_hz``,
``r = hi_rate_hz / fps`` rows per frame, 4 at the defaults) split each frame
into ``r`` equal slots: rows ``r*k .. r*k + r - 1`` belong to frame ``k`` and row
``j`` is centred on ``(j + 0.5) / hi_rate_hz``. Frame-rate values are pooled
from their ``r`` high-rate rows, so the two rates always agree.

Any input sample rate is resampled to 16 kHz (soxr) first, so 48, 44.1 and 16 kHz
copies of a recording give the same features.

Keys of :func:`compute_audio_features` (F frames, H = F * r rows, float32):

- ``mel`` (F, n_mels), ``mel_hi`` (H, n_mels): natural log of mel power
  (librosa Slaney mel filters, 25 ms Hann window, waveform in [-1, 1]) plus
  ``log_floor``; ``mel`` is the log of the mean power of the frame's rows.
- ``f0_hz`` (F,), ``f0_hi_hz`` (H,): pitch from Praat's autocorrelation method,
  0 where unvoiced. A frame is voiced when at least half its rows are; its F0 is
  the median of its voiced rows.
- ``voicing`` (F,): fraction of the frame's rows that are voiced, in [0, 1].
- ``energy_db`` (F,), ``energy_hi_db`` (H,): RMS of the samples in the
  frame / row, dB re full scale, floored at -100 dB.
- ``vad`` (F,): 1 where someone speaks, else 0 (see :func:`voice_activity`).
- ``phone_post`` (F, P), ``phone_post_hi`` (H, P): soft phone posteriors over
  :data:`PHONES` from pocketsphinx phone recognition (see :func:`phone_posteriors`);
  rows sum to 1.
"""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import parselmouth
from scipy import ndimage

from preprocess.config import AUDIO_SAMPLE_RATE_HZ, AudioFeatureConfig

SAMPLE_RATE = AUDIO_SAMPLE_RATE_HZ
"""Internal sample rate, Hz: the rate of the pocketsphinx en-US acoustic model."""

PHONES: tuple[str, ...] = (
    "SIL", "NOISE",
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
    "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW",
    "V", "W", "Y", "Z", "ZH",
)
"""Column order of ``phone_post``: silence, noise (pocketsphinx's +NSN+/+SPN+ fillers), the 39 CMU phones."""

_PHONE_INDEX = {p: i for i, p in enumerate(PHONES)} | {"+NSN+": 1, "+SPN+": 1}


def compute_audio_features(wav: np.ndarray, sample_rate: int, n_frames: int | None = None,
                           cfg: AudioFeatureConfig = AudioFeatureConfig(),
                           fps: float = 25.0, phones: bool = True) -> dict[str, np.ndarray]:
    """Frame-aligned features of a waveform (module docstring lists the keys and units).

    Args:
        wav: (T,) or (T, C) waveform, float in [-1, 1] or integer PCM; channels are averaged.
        sample_rate: rate of ``wav``, Hz; anything is resampled to 16 kHz.
        n_frames: output exactly this many frames, padding the audio with
            silence or trimming it; None: enough frames to cover the whole
            audio, ``ceil(duration * fps)``.
        cfg: feature settings.
        fps: video frame rate the features are aligned to (a subject's ``decode.fps``).
        phones: also the phone posteriors (most of the time; audio-to-motion does without them).
    """
    r = cfg.rows_per_frame(fps)
    audio = _to_mono_16k(wav, sample_rate)
    frame_len = int(round(SAMPLE_RATE / fps))
    if n_frames is None:
        n_frames = max(1, int(np.ceil(len(audio) / frame_len - 1e-6)))
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    audio = _fit_length(audio, n_frames * frame_len)
    out = acoustic_features(audio, n_frames, cfg, fps)
    out["vad"] = voice_activity(out["energy_db"], out["voicing"], cfg, fps).astype(np.float32)
    if phones:
        # one frame of margin keeps plosive and fricative onsets that precede the voiced seed
        active = np.repeat(ndimage.binary_dilation(out["vad"] > 0), r)
        post_hi = phone_posteriors(audio, active, cfg)
        out["phone_post"] = _normalise_rows(post_hi.reshape(n_frames, r, -1).mean(axis=1)).astype(np.float32)
        out["phone_post_hi"] = post_hi.astype(np.float32)
    return out


def acoustic_features(audio: np.ndarray, n_frames: int, cfg: AudioFeatureConfig = AudioFeatureConfig(),
                      fps: float = 25.0) -> dict[str, np.ndarray]:
    """mel, mel_hi, f0_hz, f0_hi_hz, voicing, energy_db, energy_hi_db of exactly ``n_frames`` frames.

    ``audio``: (n_frames * 16000 / fps,) float32 mono at 16 kHz. Mel and
    energy rows depend only on samples within half an analysis window (16 ms),
    so a stream that computes a stretch with a few frames of margin gets the
    whole clip's values; Praat's pitch also chooses its path over the whole
    stretch, so a stream's pitch agrees closely, not exactly.
    """
    r = cfg.rows_per_frame(fps)
    mel_power_hi = _mel_power(audio, n_frames * r, cfg)
    f0_hi = _pitch_hi(audio, n_frames * r, cfg)
    voicing = (f0_hi > 0).reshape(n_frames, r).mean(axis=1)
    return {
        "mel": np.log(mel_power_hi.reshape(n_frames, r, -1).mean(axis=1) + cfg.log_floor).astype(np.float32),
        "mel_hi": np.log(mel_power_hi + cfg.log_floor).astype(np.float32),
        "f0_hz": _frame_f0(f0_hi.reshape(n_frames, r), voicing).astype(np.float32),
        "f0_hi_hz": f0_hi.astype(np.float32),
        "voicing": voicing.astype(np.float32),
        "energy_db": _rms_db(audio.reshape(n_frames, -1)).astype(np.float32),
        "energy_hi_db": _rms_db(audio.reshape(n_frames * r, -1)).astype(np.float32),
    }


def to_mono_16k(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """(T,) float32 mono at 16 kHz from (T,) or (T, C) audio at any rate (integer PCM is scaled to [-1, 1])."""
    return _to_mono_16k(wav, sample_rate)


def _to_mono_16k(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """(T,) float32 mono at 16 kHz from (T,) or (T, C) audio at any rate (integer PCM is scaled to [-1, 1])."""
    audio = np.asarray(wav)
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio / float(np.iinfo(audio.dtype).max + 1)
    audio = audio.astype(np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1:
        raise ValueError(f"expected (T,) or (T, C) audio, got shape {np.shape(wav)}")
    if sample_rate != SAMPLE_RATE and len(audio) > 0:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return audio.astype(np.float32)


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad at the end to exactly ``length`` samples."""
    if len(audio) >= length:
        return audio[:length]
    return np.pad(audio, (0, length - len(audio)))


def _rms_db(blocks: np.ndarray) -> np.ndarray:
    """RMS level, dBFS floored at -100, of each row of (N, L) sample blocks."""
    rms = np.sqrt(np.mean(np.square(blocks, dtype=np.float64), axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-5))


def _mel_power(audio: np.ndarray, n_rows: int, cfg: AudioFeatureConfig) -> np.ndarray:
    """(n_rows, n_mels) mel power, window of row j centred on sample (j + 0.5) * hop."""
    hop = int(round(SAMPLE_RATE / cfg.hi_rate_hz))
    # librosa centres the window at n_fft / 2 of each frame; shift it onto the middle of the row's hop.
    left = cfg.n_fft // 2 - hop // 2
    right = (n_rows - 1) * hop + cfg.n_fft - left - len(audio)
    padded = np.pad(audio, (left, max(0, right)))
    mel = librosa.feature.melspectrogram(
        y=padded, sr=SAMPLE_RATE, n_fft=cfg.n_fft, hop_length=hop,
        win_length=int(round(cfg.win_ms * SAMPLE_RATE / 1000)), center=False, power=2.0,
        n_mels=cfg.n_mels, fmin=cfg.fmin_hz, fmax=cfg.fmax_hz)
    return mel[:, :n_rows].T


def _pitch_hi(audio: np.ndarray, n_rows: int, cfg: AudioFeatureConfig) -> np.ndarray:
    """(n_rows,) F0 in Hz at the high-rate row centres, 0 where unvoiced (Praat autocorrelation)."""
    f0 = np.zeros(n_rows)
    try:
        pitch = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=SAMPLE_RATE).to_pitch_ac(
            time_step=1.0 / cfg.hi_rate_hz, pitch_floor=cfg.f0_min_hz, pitch_ceiling=cfg.f0_max_hz)
    except parselmouth.PraatError:  # shorter than one analysis window: nothing is voiced
        return f0
    times, values = pitch.xs(), pitch.selected_array["frequency"]
    centres = (np.arange(n_rows) + 0.5) / cfg.hi_rate_hz
    nearest = np.rint((centres - times[0]) / pitch.dt).astype(int)
    inside = (nearest >= 0) & (nearest < len(values))
    f0[inside] = values[nearest[inside]]
    return f0


def _frame_f0(f0_rows: np.ndarray, voicing: np.ndarray) -> np.ndarray:
    """(F,) median F0 of each frame's voiced rows; 0 for frames with voicing below one half."""
    with warnings.catch_warnings():  # all-unvoiced frames give NaN, replaced below
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(np.where(f0_rows > 0, f0_rows, np.nan), axis=1)
    return np.where(voicing >= 0.5, np.nan_to_num(med), 0.0)


def voice_activity(energy_db: np.ndarray, voicing: np.ndarray,
                   cfg: AudioFeatureConfig = AudioFeatureConfig(), fps: float = 25.0) -> np.ndarray:
    """(F,) float 0/1 voice activity from frame energy (dBFS) and voicing, with hysteresis.

    Thresholds are relative to the recording's loud level (95th percentile of
    energy) so they follow the microphone gain: a speech run starts at a voiced
    frame within ``vad_on_below_ref_db`` of that level and extends over
    neighbouring frames down to ``vad_hysteresis_db`` lower (unvoiced
    consonants, soft endings), but not into the noise floor (10th percentile of
    energy plus ``vad_noise_margin_db``; in all-speech clips that floor is low
    consonants and short pauses get bridged). Short pauses are then bridged and
    blips dropped.
    """
    on = max(cfg.vad_floor_db, float(np.percentile(energy_db, 95)) - cfg.vad_on_below_ref_db)
    noise = float(np.percentile(energy_db, 10))
    off = min(on, max(on - cfg.vad_hysteresis_db, noise + cfg.vad_noise_margin_db))
    candidate = energy_db > off
    seed = (energy_db > on) & (voicing > 0)
    runs, n_runs = ndimage.label(candidate)
    keep = np.zeros(n_runs + 1, dtype=bool)
    keep[np.unique(runs[seed])] = True
    keep[0] = False
    speech = keep[runs]
    speech = _fill_runs(speech, value=False, max_len=int(round(cfg.vad_min_gap_s * fps)), interior_only=True)
    speech = _fill_runs(speech, value=True, max_len=int(round(cfg.vad_min_speech_s * fps)), interior_only=False)
    return speech.astype(np.float32)


def _fill_runs(mask: np.ndarray, value: bool, max_len: int, interior_only: bool) -> np.ndarray:
    """Flip runs of ``value`` shorter than ``max_len`` in a 1-D bool mask (optionally not at the ends)."""
    out = mask.copy()
    runs, _ = ndimage.label(mask == value)
    for (run,) in ndimage.find_objects(runs):
        start, stop = run.start, run.stop
        at_end = start == 0 or stop == len(mask)
        if stop - start < max_len and not (interior_only and at_end):
            out[start:stop] = not value
    return out


def phone_posteriors(audio: np.ndarray, active: np.ndarray,
                     cfg: AudioFeatureConfig = AudioFeatureConfig()) -> np.ndarray:
    """(H, P) soft phone posteriors at the high rate from pocketsphinx phone recognition.

    pocketsphinx (bundled en-US acoustic model, phone n-gram, "allphone" mode)
    recognises the most likely phone sequence with no transcript, so it runs on
    any speech, English or not; its 10 ms frames line up with the high-rate rows
    at 100 Hz. The one-hot sequence is blurred in time with a Gaussian of
    ``phone_smooth_ms`` and mixed with a uniform ``phone_floor``. Rows where
    ``active`` (H,) is 0 (no voice activity) are set to silence first: the
    recogniser hallucinates fricatives in digital silence.
    """
    n_rows = len(active)
    labels = np.zeros(n_rows, dtype=np.int64)  # 0 = SIL
    for phone, start, end in _recognise_phones(audio, cfg):
        # pocketsphinx frame j is centred 12.8 ms after j * 10 ms, our row j at 5 ms: one row later.
        labels[min(start + 1, n_rows):min(end + 2, n_rows)] = _PHONE_INDEX.get(phone, 0)
    labels[active <= 0] = 0
    one_hot = np.eye(len(PHONES), dtype=np.float64)[labels]
    sigma_rows = cfg.phone_smooth_ms / 1000.0 * cfg.hi_rate_hz
    soft = ndimage.gaussian_filter1d(one_hot, sigma_rows, axis=0, mode="nearest") if sigma_rows > 0 else one_hot
    return _normalise_rows((1.0 - cfg.phone_floor) * soft + cfg.phone_floor / len(PHONES))


def _recognise_phones(audio: np.ndarray, cfg: AudioFeatureConfig) -> list[tuple[str, int, int]]:
    """[(phone, first frame, last frame)] at 100 frames/s from pocketsphinx allphone decoding."""
    from pocketsphinx import Decoder, get_model_path  # loads the acoustic model: only when needed

    decoder = Decoder(hmm=get_model_path("en-us/en-us"), allphone=get_model_path("en-us/en-us-phone.lm.bin"),
                      lw=cfg.phone_lw, beam=1e-20, pbeam=1e-20, samprate=SAMPLE_RATE, loglevel="FATAL")
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    segments = decoder.seg() if decoder.hyp() is not None else None
    return [(s.word, s.start_frame, s.end_frame) for s in (segments or [])]


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    return x / x.sum(axis=1, keepdims=True)
