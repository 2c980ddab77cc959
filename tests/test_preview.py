"""Preview video: a real h264 mp4 written through the bundled ffmpeg, read back with imageio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar.core.camera import intrinsics
from preprocess.preview import write_preview

N_FRAMES = 12
SIZE = 512


@pytest.fixture(scope="module")
def clip(may_frames):
    """Frames, labels and plausible per-frame annotations for the first frames of may_5s.mp4
    (session fixture ``may_frames``)."""
    frames = may_frames[:N_FRAMES]
    labels = np.zeros((SIZE, SIZE), np.uint8)
    labels[300:, :] = 2  # a band of "torso" to check that the overlay is drawn
    rng = np.random.default_rng(0)
    points = (rng.random((N_FRAMES, 478, 2)) * 100 + 200).astype(np.float32)
    valid = np.ones(N_FRAMES, bool)
    valid[3] = False
    points[3] = np.nan
    viewmats = np.tile(np.eye(4, dtype=np.float32), (N_FRAMES, 1, 1))
    viewmats[:, 2, 3] = 0.6
    return dict(read_frame=lambda i: frames[i], read_labels=lambda i: labels, n_frames=N_FRAMES, fps=25.0,
                landmarks2d=points, mesh2d=points, viewmats=viewmats, K=intrinsics(1000.0, SIZE, SIZE),
                valid=valid), frames


def _read_back(path: Path):
    import imageio.v2 as imageio
    reader = imageio.get_reader(path)
    try:
        return [f for f in reader], reader.get_meta_data()
    finally:
        reader.close()


def test_writes_h264_with_audio(clip, tmp_path):
    kwargs, frames = clip
    # Shorter than the video: it is padded with silence, never cuts the picture short.
    audio = 0.1 * np.sin(np.linspace(0, 1000, int(0.6 * 16000 * N_FRAMES / 25))).astype(np.float32)
    out = write_preview(tmp_path / "sub" / "preview.mp4", audio_wav=audio, audio_sr=16000, **kwargs)
    assert out == tmp_path / "sub" / "preview.mp4" and out.exists()
    assert [p.name for p in out.parent.iterdir()] == ["preview.mp4"], "no temporary files left behind"
    video, meta = _read_back(out)
    assert len(video) == N_FRAMES and video[0].shape == (SIZE, SIZE, 3)
    assert meta["codec"] == "h264" and meta.get("audio_codec") == "aac"
    assert meta["fps"] == pytest.approx(25.0)
    # The torso band is tinted; the untouched top-right corner is not.
    diff = np.abs(video[0].astype(int) - frames[0].astype(int)).mean(-1)
    assert diff[400:, :].mean() > 15 and diff[60:120, 400:].mean() < 6


def test_silent_downscaled_strided(clip, tmp_path):
    kwargs, _ = clip
    out = write_preview(tmp_path / "preview.mp4", max_size=256, stride=2, **kwargs)
    video, meta = _read_back(out)
    assert len(video) == N_FRAMES // 2 and video[0].shape == (256, 256, 3)
    assert "audio_codec" not in meta
    assert meta["fps"] == pytest.approx(12.5)


def test_failure_leaves_no_file(clip, tmp_path):
    kwargs, frames = clip

    def broken_reader(i):
        if i == 5:
            raise OSError("frame 5 is unreadable")
        return frames[i]

    with pytest.raises(OSError):
        write_preview(tmp_path / "preview.mp4", **{**kwargs, "read_frame": broken_reader})
    assert list(tmp_path.iterdir()) == []
