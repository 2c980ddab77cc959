"""`avatar preprocess` on the odd shapes real users film: landscape, portrait with a
small face, 29.97 and 30 fps (multispeaker clips, a few seconds of each)."""

from __future__ import annotations

import numpy as np
import pytest

from preprocess.subject import Subject
from tests.conftest import data_file, run_avatar

pytestmark = pytest.mark.slow

CLIPS = [
    # file, seconds used, extra settings
    ("headpose_31_1280x720.mp4", 4.0, []),
    ("latentsync_demo1_1080x1920.mp4", 4.0, []),
    ("latentsync_demo3_1080x1920_30fps.mp4", 4.0, []),
    ("vexpress_aoc_29.97fps.mp4", 6.0, ["preprocess.decode.min_duration_s=4"]),
]


@pytest.mark.parametrize("name, seconds, extra", CLIPS, ids=[c[0] for c in CLIPS])
def test_odd_videos_preprocess_cleanly(tmp_path, name, seconds, extra):
    video = data_file("multispeaker", name)
    out = tmp_path / "subject"
    sets = [f"preprocess.decode.max_duration_s={seconds}", *extra]
    args = ["preprocess", video, "--out", out, "--config", "fast"]
    for s in sets:
        args += ["--set", s]
    r = run_avatar(*args)
    assert r.returncode == 0, r.stderr
    s = Subject(out)
    m = s.manifest
    src = m.source_info
    used = min(seconds, src["duration_s"])
    assert m.frames == pytest.approx(used * 25, abs=1)
    assert m.width == m.height == 256
    assert m.tracked_fraction >= 0.95
    assert m.reprojection_px < 1.5
    assert m.pose_jitter_deg < m.pnp_pose_jitter_deg
    crop = m.crop
    assert 0 <= crop["x0"] and crop["x0"] + crop["side"] <= src["width"]
    assert 0 <= crop["y0"] and crop["y0"] + crop["side"] <= src["height"]
    if src["width"] != src["height"]:
        assert crop["side"] < max(src["width"], src["height"])
    # the face is in the middle part of the working frame, not cut off at an edge
    lm = s.landmarks.points[s.landmarks.valid, :, :2]
    centre = np.nanmedian(lm.reshape(-1, 2), axis=0)
    assert (0.25 * 256 < centre).all() and (centre < 0.75 * 256).all()
    assert s.audio_features is not None and s.audio_features.mel.shape[0] == m.frames
