"""The typed hand-over: a subject folder read through `Subject`, and audio features that
follow the frame rate."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from avatar.core.errors import UserError
from avatar.settings import load_config
from preprocess.pipeline import run_preprocess
from preprocess.subject import FORMAT_VERSION, Subject
from preprocess.subject_data import AudioFeatures, Landmarks, Manifest, Split, Tracking
from tests.conftest import data_file

pytestmark = pytest.mark.slow


def test_subject_returns_typed_contents_with_documented_shapes(may_subject):
    s = Subject(may_subject)
    n, size = s.n_frames, s.size
    assert isinstance(s.manifest, Manifest) and isinstance(s.split, Split)
    assert (n, size, s.fps) == (125, 512, 25.0)
    t = s.tracking
    assert isinstance(t, Tracking) and isinstance(t.focal_px, float)
    k = t.n_expr
    shapes = {"viewmats": (n, 4, 4), "pnp_viewmats": (n, 4, 4), "expr": (n, k), "mean_shape": (478, 3),
              "expr_basis": (k, 478, 3), "verts": (n, 478, 3), "landmarks2d": (n, 478, 2), "reproj_px": (n,),
              "eye_open": (n, 2), "mouth_open": (n,), "valid": (n,)}
    for name, shape in shapes.items():
        assert getattr(t, name).shape == shape, name
    assert t.valid.dtype == bool and t.viewmats.dtype == np.float32
    K = t.K(size)
    assert K.shape == (3, 3) and K[0, 0] == pytest.approx(t.focal_px) and K[0, 2] == size / 2
    lm = s.landmarks
    assert isinstance(lm, Landmarks) and lm.points.shape == (n, 478, 3) and len(lm) == n
    a = s.audio_features
    assert isinstance(a, AudioFeatures) and a.n_frames == n and a.rows_per_frame == 4
    assert a.mel.shape == (n, 80) and a.phone_post_hi.shape[0] == 4 * n
    wav, rate = s.audio()
    assert rate == 16000 and len(wav) == pytest.approx(5.0 * rate, rel=0.01)
    # the manifest is the same dataclass written and read; inspect's summary comes from it
    again = Manifest.from_dict(json.loads((may_subject / "manifest.json").read_text()))
    assert again == s.manifest
    assert list(s.manifest.summary()) == list(Manifest.SUMMARY)
    assert set(Manifest.SUMMARY) <= {f.name for f in dataclasses.fields(Manifest)}


def test_another_format_version_is_refused_with_a_fix(may_subject_copy):
    path = may_subject_copy / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": FORMAT_VERSION - 1}))
    with pytest.raises(UserError, match=f"format {FORMAT_VERSION - 1}, this version reads {FORMAT_VERSION}") as e:
        Subject(may_subject_copy)
    assert "re-run `avatar preprocess VIDEO --out" in e.value.fix


def test_audio_features_follow_another_frame_rate(tmp_path):
    """At 50 fps the features have one row per frame and line up with the audio in time."""
    cfg = load_config("fast", ["preprocess.decode.fps=50", "preprocess.decode.max_duration_s=2",
                               "preprocess.decode.crop_sample_frames=6", "preprocess.tracking.iters=2"]).preprocess
    run_preprocess(data_file("videos", "may_5s.mp4"), tmp_path / "s", cfg)
    s = Subject(tmp_path / "s")
    assert s.fps == 50 and s.manifest.audio_feature_fps == 50
    assert s.n_frames == 100 == len(list(s.paths.frames.glob("*.jpg")))  # the first 2 s
    a = s.audio_features
    assert a.n_frames == s.n_frames and a.rows_per_frame == 2
    wav, rate = s.audio()
    hop = rate // 50  # 320 samples a frame
    blocks = np.pad(wav, (0, max(0, s.n_frames * hop - len(wav))))[: s.n_frames * hop].reshape(s.n_frames, hop)
    rms_db = 20 * np.log10(np.maximum(np.sqrt((blocks.astype(np.float64) ** 2).mean(1)), 1e-5))
    loud = rms_db > -60  # the energy of frame k is the energy of samples [k*hop, (k+1)*hop)
    assert np.abs(a.energy_db[loud] - rms_db[loud]).max() < 0.5
    shifted = np.abs(a.energy_db[1:][loud[1:]] - rms_db[:-1][loud[1:]]).mean()
    assert shifted > 1.0  # one frame off would show
