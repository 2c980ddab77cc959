"""Settings of the whole preprocessing pipeline: one section per stage.

Every stage's settings live here, not beside the stage's code, so loading a
config (``avatar config``, ``--help``, the stage cache keys) imports no heavy
library: the stage modules import OpenCV, MediaPipe, librosa and torch. Each
field has its one-line docstring underneath (``avatar config`` prints it) and
every number its allowed :class:`~avatar.core.config.Range`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from avatar.core.config import Range

AUDIO_SAMPLE_RATE_HZ = 16000
"""Rate the audio features are computed at: the rate of the pocketsphinx en-US acoustic model."""

Fraction = Annotated[float, Range(0.0, 1.0)]

STAGE_NAMES = ("decode", "landmarks", "tracking", "segmentation", "background", "torso", "audio", "preview")
"""The stages in the order they run (``preprocess/stages.py`` defines them and checks this list),
named here so that ``avatar preprocess --help`` and ``--force`` need no stage code."""


@dataclass
class DecodeConfig:
    """Settings of the decode stage."""

    fps: Annotated[float, Range(1.0, 120.0)] = 25.0
    """Output frame rate, frames per second; every later stage (audio features too) works at this rate."""
    size: Annotated[int, Range(64, 4096)] = 512
    """Side of the square working frames, pixels."""
    crop_scale: Annotated[float, Range(1.0, 10.0)] = 2.0
    """Crop side over the median face-detection box side (brows to chin); 2.0 shows hair and neck like ER-NeRF crops."""
    crop_face_centre_y: Fraction = 0.55
    """Height of the face-box centre in the crop, as a fraction of its side from the top (> 0.5: room for hair)."""
    whole_frame_min_fill: Fraction = 0.8
    """A square source whose ideal crop spans at least this fraction of its side is used whole (resized only)."""
    audio_sample_rate: Annotated[int, Range(8000, 192000)] = 16000
    """Sample rate of the extracted mono audio, Hz."""
    min_duration_s: Annotated[float, Range(0.0, None)] = 5.0
    """Shortest accepted video, seconds."""
    max_side_px: Annotated[int, Range(16, 16384)] = 7680
    """Longest accepted frame side, pixels (8K); larger sources are refused."""
    min_side_px: Annotated[int, Range(16, 16384)] = 64
    """Shortest accepted frame side, pixels."""
    crop_sample_frames: Annotated[int, Range(1, 1000)] = 30
    """Frames, spread evenly over the clip, run through face detection to choose the crop."""
    min_face_fraction: Fraction = 0.2
    """Fewest sampled frames, as a fraction, that must show a face; below it the video is refused."""
    min_face_px: Annotated[float, Range(1.0, None)] = 40.0
    """Smallest accepted median face-box side in source pixels; smaller faces carry too little detail."""
    detection_max_side_px: Annotated[int, Range(64, 16384)] = 1024
    """Sampled frames are downscaled to at most this side before detection (the detector runs at 192 px anyway)."""
    max_duration_s: Annotated[float | None, Range(0.0, None, lo_open=True)] = None
    """Use only the first this many seconds of the video (None: all of it); for quick tries and tests."""
    max_several_faces_fraction: Fraction = 0.5
    """Refuse the video when more than this share of sampled frames show a second face at least half as large as the first."""
    turned_check_fraction: Fraction = 0.5
    """With a face in fewer than this share of sampled frames, turned copies are tried too, to tell a rotated video from a faceless one (the detector fires weakly on upside-down faces)."""


@dataclass
class LandmarkConfig:
    """Settings of the MediaPipe FaceMesh landmark stage."""

    min_detection_confidence: Fraction = 0.5
    """Face-detector score needed to start tracking a face, in [0, 1]."""
    min_tracking_confidence: Fraction = 0.5
    """Landmark-model face-presence score below which a face is re-detected, in [0, 1]."""
    max_faces: Annotated[int, Range(1, 10)] = 2
    """Faces MediaPipe looks for; 2 so that a second person is noticed and the frame flagged."""
    duplicate_iou: Fraction = 0.5
    """Two detections whose 2D boxes overlap more than this (IoU) are the same face tracked twice."""


@dataclass
class TrackingConfig:
    """Face model, joint fit and stabiliser settings."""

    n_expr: Annotated[int, Range(1, 200)] = 32
    """Expression components K of the person-specific face model (PCA of landmark motion)."""
    iters: Annotated[int, Range(0, 100)] = 6
    """Most Levenberg-Marquardt iterations of the joint fit (each about two passes over the clip)."""
    rel_tol: Annotated[float, Range(0.0, 1.0)] = 1e-3
    """Stop early once an iteration lowers the objective by less than this fraction."""
    damping: Annotated[float, Range(0.0, None, lo_open=True)] = 1e-3
    """Initial Levenberg-Marquardt damping (fraction of the normal-matrix diagonal)."""
    huber_px: Annotated[float, Range(0.0, None, lo_open=True)] = 1.5
    """2D error (pixels) above which the landmark loss grows linearly, not quadratically."""
    w_rigid: Annotated[float, Range(0.0, None)] = 4.0
    """Weight of a rigid landmark relative to any other landmark in the data term."""
    w_smooth_rot: Annotated[float, Range(0.0, None)] = 5.0
    """Weight of the squared 2nd difference of head rotation (per degree^2 per frame)."""
    w_smooth_trans: Annotated[float, Range(0.0, None)] = 0.5
    """Weight of the squared 2nd difference of head translation (per mm^2 per frame)."""
    w_expr_l2: Annotated[float, Range(0.0, None, lo_open=True)] = 1e-3
    """Weight of the unit-Gaussian L2 prior on expression coefficients (per frame; > 0 keeps face-less frames defined)."""
    focal_prior_fov_deg: Annotated[float, Range(1.0, 170.0, lo_open=True, hi_open=True)] = 25.0
    """Horizontal field of view of the focal-length prior, degrees."""
    w_focal_prior: Annotated[float, Range(0.0, None)] = 1.0
    """Weight of the squared log-ratio between focal length and prior (per frame)."""
    refine_shape: bool = True
    """Also fit a shared correction of the mean shape (mostly its MediaPipe-estimated depth)."""
    w_shape_l2: Annotated[float, Range(0.0, None)] = 1e-2
    """Weight of the L2 prior on that correction (per mm^2 of mean vertex offset, per frame)."""
    eye_corner_distance_m: Annotated[float, Range(0.03, 0.2)] = 0.09
    """Metric scale prior: distance between the outer eye corners of an adult, metres."""
    head_centre_depth_m: Annotated[float, Range(0.0, 0.3)] = 0.09
    """Head-frame origin: this far behind the nose bridge, metres."""
    min_valid_frames: Annotated[int, Range(1, None)] = 10
    """Fail when fewer frames than this have exactly one face."""


@dataclass
class SegmentationConfig:
    """Settings of the label maps: background, head, neck/torso, mouth interior, eyes."""

    model_selection: Annotated[int, Range(0, 1)] = 0
    """Selfie model: 0 = general (256x256 input, suits square head crops, ~7 ms), 1 = landscape (faster, coarser)."""
    person_threshold: Fraction = 0.5
    """Selfie-mask probability above which a pixel is person."""
    edge_blur_sigma_px: Annotated[float, Range(0.0, 50.0)] = 1.5
    """Gaussian blur of the person probability before thresholding, in pixels; smooths jagged edges (0 = off)."""
    min_blob_fraction: Fraction = 0.002
    """Person blobs smaller than this fraction of the image are dropped as noise."""
    neck_cut_offset: Annotated[float, Range(-1.0, 2.0)] = 0.1
    """Cut line between head and torso: this many jaw widths below the line through the jaw corners."""
    eye_dilate_px: Annotated[int, Range(0, 50)] = 1
    """Grow the eye polygons by this many pixels so the lash line counts as eye."""
    mouth_dilate_px: Annotated[int, Range(0, 50)] = 0
    """Grow the mouth-interior polygon by this many pixels."""


TORSO_MOTIONS = ("affine", "translation")
"""The image motions the shoulder tracker can measure."""


@dataclass
class TorsoConfig:
    """Settings of the shoulder tracking (the torso's motion in the image per frame, see preprocess/torso.py)."""

    region_frames: Annotated[int, Range(1, 10000)] = 50
    """Frames, spread over the clip, whose torso labels give the shoulder region (present in half of them)."""
    margin_fraction: Annotated[float, Range(0.0, 0.2)] = 0.02
    """The region is widened by this share of the frame side, so the shoulders' outline is in it."""
    below_chin_fraction: Annotated[float, Range(-0.5, 0.5)] = 0.03
    """The neck is left out down to this share of the frame side below the chin, between the face's edges."""
    work_px: Annotated[int, Range(32, 4096)] = 512
    """Frames are aligned at this side, pixels (the motion is reported at the working size); at half of 512
    the error on a known motion was up to 1.1 px, at 512 up to 0.6."""
    iterations: Annotated[int, Range(1, 1000)] = 60
    """Most ECC iterations per frame."""
    min_correlation: Annotated[float, Range(-1.0, 1.0)] = 0.7
    """A frame whose aligned shoulders correlate less than this with the reference's (ECC's score; an arm in
    front, a turn) is filled in from its neighbours."""
    motion: str = "affine"
    """What is measured: affine (shift, scale, turn and shear: leaning in, turning) or translation (the shift)."""

    def __post_init__(self):
        if self.motion not in TORSO_MOTIONS:
            raise ValueError(f"torso.motion={self.motion!r} is not one of {', '.join(TORSO_MOTIONS)}")


@dataclass
class BackgroundConfig:
    """Settings of the static background plate."""

    sample_frames: Annotated[int, Range(1, 10000)] = 100
    """Frames sampled evenly through the clip; more is more robust to a person who moves little, but slower."""
    person_margin: Annotated[float, Range(0.0, 0.5)] = 0.02
    """Halo guard: background pixels nearer a non-background pixel than this fraction of the image size are unused."""
    min_observed_fraction: Fraction = 0.05
    """A pixel is observed when at least this fraction of the sampled frames (and >= 1) saw it as background."""


@dataclass
class AudioFeatureConfig:
    """Settings of the audio features; their frame rate is the video's (``decode.fps``)."""

    hi_rate_hz: Annotated[float, Range(10.0, 1000.0)] = 100.0
    """Rate of the high-rate rows, Hz; must be a whole multiple of the frame rate and divide 16000."""
    n_mels: Annotated[int, Range(8, 256)] = 80
    """Number of mel bands."""
    n_fft: Annotated[int, Range(64, 8192)] = 512
    """FFT size for the mel spectrogram, samples at 16 kHz."""
    win_ms: Annotated[float, Range(5.0, 100.0)] = 25.0
    """Analysis window length for the mel spectrogram, milliseconds."""
    fmin_hz: Annotated[float, Range(0.0, 8000.0)] = 55.0
    """Lowest mel band edge, Hz."""
    fmax_hz: Annotated[float, Range(100.0, 8000.0)] = 7600.0
    """Highest mel band edge, Hz."""
    log_floor: Annotated[float, Range(0.0, 1.0, lo_open=True)] = 1e-6
    """Added to mel power before the log, so silence gives ln(1e-6) = -13.8 instead of -inf."""
    f0_min_hz: Annotated[float, Range(20.0, 1000.0)] = 60.0
    """Lowest pitch searched, Hz (also sets Praat's window to 3 periods of it)."""
    f0_max_hz: Annotated[float, Range(50.0, 2000.0)] = 500.0
    """Highest pitch searched, Hz."""
    vad_floor_db: Annotated[float, Range(-120.0, 0.0)] = -55.0
    """Frames quieter than this, dBFS, are never speech."""
    vad_on_below_ref_db: Annotated[float, Range(0.0, 120.0)] = 20.0
    """Speech starts at voiced frames no more than this many dB below the loud level (95th percentile energy)."""
    vad_hysteresis_db: Annotated[float, Range(0.0, 120.0)] = 10.0
    """Speech continues down to this many dB below the start threshold (catches unvoiced consonants)..."""
    vad_noise_margin_db: Annotated[float, Range(0.0, 120.0)] = 6.0
    """...but not below the noise level (10th percentile energy) plus this many dB."""
    vad_min_gap_s: Annotated[float, Range(0.0, 10.0)] = 0.2
    """Pauses shorter than this, seconds, are bridged."""
    vad_min_speech_s: Annotated[float, Range(0.0, 10.0)] = 0.1
    """Speech runs shorter than this, seconds, are dropped."""
    phone_lw: Annotated[float, Range(0.0, 100.0)] = 2.0
    """Language-model weight of pocketsphinx phone recognition."""
    phone_smooth_ms: Annotated[float, Range(0.0, 1000.0)] = 20.0
    """Std-dev of the Gaussian that turns the recognised phone sequence into soft posteriors, ms."""
    phone_floor: Annotated[float, Range(0.0, 1.0, hi_open=True)] = 0.01
    """Probability mass spread evenly over all phones (the recogniser is noisy; no phone is impossible)."""

    RETIRED = {"fps": "audio features now follow preprocess.decode.fps; remove this line"}
    """Settings of earlier versions, with what became of them (the loader says so)."""

    def __post_init__(self):
        if self.win_ms * AUDIO_SAMPLE_RATE_HZ / 1000 > self.n_fft:
            raise ValueError(f"audio.win_ms={self.win_ms:g} is a window of "
                             f"{self.win_ms * AUDIO_SAMPLE_RATE_HZ / 1000:g} samples, longer than "
                             f"audio.n_fft={self.n_fft}: raise n_fft (e.g. 1024) or shorten the window")

    def rows_per_frame(self, fps: float) -> int:
        """High-rate rows per video frame at ``fps``; ValueError when they do not line up."""
        if not _lines_up(self.hi_rate_hz, fps):
            working = [f for f in range(1, 121) if _lines_up(self.hi_rate_hz, f)]
            raise ValueError(
                f"preprocess.decode.fps={fps:g} cannot carry audio features: a frame must be a whole "
                f"number of {AUDIO_SAMPLE_RATE_HZ} Hz samples and of audio.hi_rate_hz={self.hi_rate_hz:g} "
                f"rows, so multiples of 3 fps (30, 60) never work; frame rates that do: "
                f"{', '.join(map(str, working))}. Keep 25 (30 and 60 fps sources are resampled to it) or use 50")
        return int(round(self.hi_rate_hz / fps))


def _lines_up(hi_rate_hz: float, fps: float) -> bool:
    """Whether frames at ``fps`` hold whole numbers of 16 kHz samples and of high-rate rows."""
    whole = lambda x: abs(x - round(x)) < 1e-6  # noqa: E731
    return whole(hi_rate_hz / fps) and whole(AUDIO_SAMPLE_RATE_HZ / hi_rate_hz) and whole(AUDIO_SAMPLE_RATE_HZ / fps)


@dataclass
class PreprocessConfig:
    """Video -> subject folder."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    """Decoding, frame rate, head crop and working size."""
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    """MediaPipe FaceMesh landmark detection."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Face model, focal length, stabilised head pose and expressions."""
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    """Per-frame labels: background, head, neck/torso, mouth interior, eyes."""
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    """Static background plate."""
    torso: TorsoConfig = field(default_factory=TorsoConfig)
    """Shoulder tracking: the torso's shift in the image per frame."""
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    """Audio features (mel, pitch, energy, voice activity, phones) at the frame rate decode.fps."""
    val_fraction: Annotated[float, Range(0.0, 0.5, hi_open=True)] = 0.1
    """Share of the clip, taken from its end, held out for validation."""
    jpeg_quality: Annotated[int, Range(1, 100)] = 95
    """JPEG quality of the stored working frames (1-100)."""
    min_usable_fraction: Annotated[float, Range(0.0, 1.0, lo_open=True)] = 0.5
    """Fail when fewer than this share of frames show exactly one face."""
    min_usable_frames: Annotated[int, Range(1, None)] = 50
    """Fail when fewer than this many frames show exactly one face."""

    def __post_init__(self):
        if self.decode.min_side_px > self.decode.max_side_px:
            raise ValueError(f"decode.min_side_px ({self.decode.min_side_px}) is above decode.max_side_px "
                             f"({self.decode.max_side_px})")
        if self.audio.f0_min_hz >= self.audio.f0_max_hz:
            raise ValueError(f"audio.f0_min_hz ({self.audio.f0_min_hz:g}) must be below audio.f0_max_hz "
                             f"({self.audio.f0_max_hz:g})")
        if self.audio.fmin_hz >= self.audio.fmax_hz:
            raise ValueError(f"audio.fmin_hz ({self.audio.fmin_hz:g}) must be below audio.fmax_hz "
                             f"({self.audio.fmax_hz:g})")
        self.audio.rows_per_frame(self.decode.fps)  # the features follow decode.fps: they must line up
