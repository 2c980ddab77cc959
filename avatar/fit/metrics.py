"""Image and face metrics for judging a fit: PSNR, mouth landmark distance (LMD) and identity (CSIM).

LMD and CSIM use dlib's models, as the talking-head papers do, from the
``face-recognition-models`` package (shipped inside it, nothing downloaded):

- LMD: mean distance, pixels, between the 20 mouth points (48-67) of dlib's
  68-point predictor on the real and the rendered frame. Both are predicted in
  the face box detected on the *real* frame, so the number measures the mouth's
  shape and position, not the detector's jitter between two images.
- CSIM: cosine similarity of dlib's 128-D face-recognition embeddings of the two
  frames (1 = the same image; two frames of may_5s score 0.986, may_5s against
  trump_10s 0.863: the scale is compressed, so small differences matter).
"""

from __future__ import annotations

import functools

import numpy as np

MOUTH = slice(48, 68)
"""The 20 mouth points of dlib's 68-point layout."""
INNER_TOP, INNER_BOTTOM = (61, 62, 63), (67, 66, 65)
"""dlib's inner-lip point pairs, upper and lower lip."""


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR, dB, of two (H, W, 3) images in [0, 1] (float) or uint8, over ``mask`` (H, W) bool if given."""
    a, b = _unit(a), _unit(b)
    err = ((a - b) ** 2).mean(-1)
    mse = float(err[mask].mean() if mask is not None else err.mean())
    return float("inf") if mse == 0 else -10.0 * np.log10(mse)


class FaceMetrics:
    """dlib's face detector, 68-point predictor and recognition network, loaded once."""

    def __init__(self):
        self.detect, self.predict, self.embed = _models()

    def face_box(self, image: np.ndarray):
        """The largest face's dlib rectangle in an (H, W, 3) RGB image, or None."""
        faces = self.detect(_uint8(image), 1)
        return max(faces, key=lambda r: r.area()) if len(faces) else None

    def landmarks(self, image: np.ndarray, box) -> np.ndarray:
        """(68, 2) float64 pixel coordinates of dlib's points inside ``box``."""
        shape = self.predict(_uint8(image), box)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

    def landmark_pair(self, real: np.ndarray, rendered: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(68, 2) landmarks of both frames, predicted in the real frame's face box; None without a face."""
        box = self.face_box(real)
        if box is None:
            return None
        return self.landmarks(real, box), self.landmarks(rendered, box)

    def lmd(self, real: np.ndarray, rendered: np.ndarray) -> float | None:
        """Mouth landmark distance, pixels; None when no face is found in the real frame."""
        pair = self.landmark_pair(real, rendered)
        return None if pair is None else lmd_of(*pair)

    def csim(self, real: np.ndarray, rendered: np.ndarray) -> float | None:
        """Cosine similarity of the face embeddings; None when either frame shows no face."""
        vectors = []
        for image in (real, rendered):
            box = self.face_box(image)
            if box is None:
                return None
            img = _uint8(image)
            vectors.append(np.asarray(self.embed.compute_face_descriptor(img, self.predict(img, box))))
        a, b = vectors
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def lmd_of(real: np.ndarray, rendered: np.ndarray) -> float:
    """Mean distance, pixels, of the 20 mouth points of two (68, 2) landmark sets."""
    return float(np.linalg.norm(real[MOUTH] - rendered[MOUTH], axis=-1).mean())


def inner_lip_opening(points: np.ndarray) -> float:
    """Mean inner-lip gap, pixels, of (68, 2) dlib landmarks (pairs 61-67, 62-66, 63-65)."""
    return float(np.linalg.norm(points[list(INNER_TOP)] - points[list(INNER_BOTTOM)], axis=-1).mean())


def mouth_corr(real: np.ndarray, rendered: np.ndarray) -> float | None:
    """Pearson correlation over time of two (F,) inner-lip opening tracks (NaN frames skipped);
    None when either is constant or shorter than 3 frames."""
    pair = _finite_pair(real, rendered)
    if pair is None or np.std(pair[1]) == 0:
        return None
    return float(np.corrcoef(*pair)[0, 1])


def mouth_std_ratio(real: np.ndarray, rendered: np.ndarray) -> float | None:
    """Standard deviation over time of (F,) rendered inner-lip opening over the real one's (NaN frames
    skipped): 1 when the rendered mouth opens and closes as far as the real; None when the real track is
    constant or shorter than 3 frames."""
    pair = _finite_pair(real, rendered)
    return None if pair is None else float(np.std(pair[1]) / np.std(pair[0]))


def _finite_pair(real: np.ndarray, rendered: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The frames of two (F,) tracks where both are finite; None when fewer than 3 or the real one is constant."""
    ok = np.isfinite(real) & np.isfinite(rendered)
    if ok.sum() < 3 or np.std(real[ok]) == 0:
        return None
    return real[ok], rendered[ok]


@functools.lru_cache(maxsize=1)
def _models():
    import warnings

    import dlib
    with warnings.catch_warnings():  # it imports pkg_resources, deprecated; the files it finds are fine
        warnings.simplefilter("ignore", UserWarning)
        import face_recognition_models as models

    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(models.pose_predictor_model_location()),
            dlib.face_recognition_model_v1(models.face_recognition_model_location()))


def _unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)


def _uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    return np.ascontiguousarray(np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8))
