"""Audio-to-motion parts on their own: predictor windows and look-ahead, features, blinks, pose, motion files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avatar.core.errors import UserError
from avatar.motion.blinks import BlinkModel
from avatar.motion.face import CHANNELS
from avatar.motion.generate import silence_weight
from avatar.motion.motion_file import Motion, load_motion, save_motion
from avatar.motion.pose import MeanPose, OneEuroFilter, replay, stabilise
from avatar.motion.predictor import AudioToExpression, predict_clip


@pytest.fixture(scope="module")
def net() -> AudioToExpression:
    torch.manual_seed(0)
    return AudioToExpression(20, 6, width=16).eval()


def test_windowed_prediction_equals_one_pass_no_seams(net):
    x = np.random.default_rng(0).normal(size=(1000, 20)).astype(np.float32)
    whole = predict_clip(net, x, window=100_000)
    windowed = predict_clip(net, x, window=37)
    np.testing.assert_allclose(windowed, whole, atol=1e-5)


def test_output_depends_on_lookahead_frames_and_no_later(net):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 20)).astype(np.float32)
    base = predict_clip(net, x)
    t = 100
    later = x.copy()
    later[t + net.lookahead + 1:] = rng.normal(size=later[t + net.lookahead + 1:].shape)
    np.testing.assert_allclose(predict_clip(net, later)[:t + 1], base[:t + 1], atol=1e-5)
    within = x.copy()
    within[t + net.lookahead] += 5.0
    assert np.abs(predict_clip(net, within)[t] - base[t]).max() > 1e-4
    assert net.lookahead == 5  # 200 ms at 25 fps: the stated streaming look-ahead


def test_long_clip_runs_in_windows(net):
    x = np.random.default_rng(2).normal(size=(15000, 20)).astype(np.float32)  # 10 minutes at 25 fps
    out = predict_clip(net, x, window=2000)
    assert out.shape == (15000, 6) and np.isfinite(out).all()
    np.testing.assert_allclose(out[1990:2010], predict_clip(net, x[1000:3000])[990:1010], atol=1e-5)


def test_the_linear_part_recovers_a_known_linear_map_and_keeps_windows_seamless():
    """Targets that are an exact linear function of the frames t-4..t+4 are fitted exactly (tap order, edges,
    the folding of the standardisation), and the blended net still runs in windows without seams."""
    from avatar.motion.predictor import LINEAR_REACH
    from avatar.motion.train import TrainingData, fit_linear

    rng = np.random.default_rng(3)
    n, d, k, taps = 400, 12, 3, 2 * LINEAR_REACH + 1
    x = (rng.normal(size=(n, d)) * rng.uniform(0.1, 5.0, d) + rng.normal(size=d)).astype(np.float32)
    w = rng.normal(size=(k, d, taps))
    padded = np.concatenate([np.repeat(x[:1], LINEAR_REACH, 0), x, np.repeat(x[-1:], LINEAR_REACH, 0)])
    y = np.stack([np.einsum("kdt,td->k", w, padded[i:i + taps]) for i in range(n)]) + [0.5, -1.0, 2.0]
    usable = np.ones(n, bool)
    usable[:50] = False  # frames left out of the fit are still predicted
    model = AudioToExpression(d, k, width=8).eval()
    fit_linear(model, TrainingData(x, y.astype(np.float32), usable, np.eye(k, dtype=np.float32), 4, 1),
               ridge_per_frame=1e-9, blend=1.0)
    np.testing.assert_allclose(predict_clip(model, x), y, rtol=1e-3, atol=1e-3)
    model.blend.fill_(0.5)
    np.testing.assert_allclose(predict_clip(model, x, window=37), predict_clip(model, x), atol=1e-5)
    old = {key: v for key, v in model.state_dict().items() if not key.startswith("linear.") and key != "blend"}
    plain = AudioToExpression(d, k, width=8).eval()
    plain.load_weights(old)  # weights saved before the linear part existed: the net alone
    np.testing.assert_allclose(predict_clip(plain, x), _net_alone(model, x), atol=1e-5)


def test_opening_metric_adds_the_lip_gap_direction_at_the_stated_scale():
    """A known linear opening is recovered as the one added direction, scaled so that on the frames' spread
    it weighs ``weight`` times the vertex error; weight 0 leaves the metric alone."""
    from avatar.motion.face import opening_metric

    rng = np.random.default_rng(5)
    k = 6
    expr = rng.normal(size=(300, k)) * rng.uniform(0.2, 3.0, k)
    g = rng.normal(size=k)
    opening = expr @ g + 0.3
    a = rng.normal(size=(k, k))
    metric = (a @ a.T).astype(np.float32)
    out = opening_metric(expr, opening, metric, 2.0)
    added = out.astype(np.float64) - metric
    u, sv, _ = np.linalg.svd(added)
    assert sv[1] < 1e-4 * sv[0]  # one direction
    assert abs(abs(u[:, 0] @ g) / np.linalg.norm(g) - 1) < 1e-5  # the opening's
    cov = np.cov(expr.T)
    assert np.trace(added @ cov) == pytest.approx(2.0 * np.trace(metric @ cov), rel=1e-4)
    assert opening_metric(expr, opening, metric, 0.0) is metric


def _net_alone(model: AudioToExpression, x: np.ndarray) -> np.ndarray:
    blend = float(model.blend)
    model.blend.fill_(0.0)
    try:
        return predict_clip(model, x)
    finally:
        model.blend.fill_(blend)


def test_blinks_follow_rate_and_shape():
    fps = 25.0
    rng = np.random.default_rng(0)
    n = 1500
    eye = np.full((n, 2), 0.3) + rng.normal(0, 0.005, (n, 2))
    for c in range(40, n - 10, 100):  # a blink every 4 s, 3 frames deep
        eye[c - 1:c + 2] = [[0.15, 0.15], [0.04, 0.05], [0.15, 0.15]]
    model = BlinkModel.fit(eye, fps)
    assert abs(model.rate_per_min - 15.0) < 1.0
    assert model.depth.max() < 0.3 and model.profile.argmax() == len(model.profile) // 2
    long = model.generate(25 * 600, rate=1.0, seed=3)
    closed = (long.mean(1) < 0.5 * model.open_level.mean())
    blinks = np.sum(closed[1:] & ~closed[:-1])
    assert 130 <= blinks <= 170  # about 15 a minute over 10 minutes
    doubled = model.generate(25 * 600, rate=2.0, seed=3)
    closed2 = doubled.mean(1) < 0.5 * model.open_level.mean()
    assert np.sum(closed2[1:] & ~closed2[:-1]) > 1.6 * blinks
    np.testing.assert_allclose(model.generate(100, rate=0.0), np.tile(model.open_level, (100, 1)))


def test_replay_loops_without_jumps():
    rng = np.random.default_rng(0)
    track = np.cumsum(rng.normal(0, 0.1, (50, 6)), axis=0)
    out = replay(track, 500)
    assert len(out) == 500
    np.testing.assert_array_equal(out[:50], track)
    assert np.abs(np.diff(out, axis=0)).max() <= np.abs(np.diff(track, axis=0)).max() + 1e-12


def test_mean_pose_round_trip():
    from scipy.spatial.transform import Rotation
    rng = np.random.default_rng(0)
    v = np.tile(np.eye(4, dtype=np.float32), (20, 1, 1))
    v[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, 0.1, (20, 3))).as_matrix()
    v[:, :3, 3] = [0, 0, 0.6] + rng.normal(0, 0.01, (20, 3))
    mean = MeanPose.of(v)
    np.testing.assert_allclose(mean.viewmats(mean.deviations(v)), v, atol=1e-5)


def test_stabiliser_removes_jitter_without_lag():
    fps = 25.0
    t = np.arange(200) / fps
    motion = np.c_[np.where(t > 4, 10.0 * (t - 4), 0.0), np.zeros((200, 5))]  # still, then a fast turn
    noisy = motion + np.random.default_rng(0).normal(0, 0.3, motion.shape)
    smooth = stabilise(noisy, fps)
    still = t < 3.5
    assert np.diff(smooth[still, 0]).std() < 0.3 * np.diff(noisy[still, 0]).std()
    moving = t > 5
    assert np.abs(smooth[moving, 0] - motion[moving, 0]).mean() < 0.3  # no lag: a lag of 1 frame is 0.4
    causal = OneEuroFilter(fps)
    online = np.array([causal(x)[0] for x in noisy])
    assert np.abs(online[moving] - motion[moving, 0]).mean() < 1.5  # the streaming filter lags a little


def test_silence_weight_closes_long_pauses_only():
    fps = 25.0
    vad = np.ones(200)
    vad[40:44] = 0  # 0.16 s: a break inside a phrase
    vad[60:70] = 0  # 0.4 s
    vad[100:150] = 0  # 2 s
    vad[80:87] = 0  # 0.28 s: shorter than the hold + the look-ahead
    w = silence_weight(vad < 0.5, fps, lookahead=5)
    assert w[40:44].max() == 0.0 and w[80:87].max() == 0.0
    assert w[60:70].max() == 1.0 and w[60:64].max() == 0.0
    # closed by 0.2 s into a long pause, which is where silence_mouth_open starts counting
    assert w[105:145].min() == 1.0 and w[100:104].max() == 0.0 and 0.0 < w[104] < 1.0 and w[149] < 1.0
    assert w[:40].max() == 0.0 and w[150:].max() == 0.0
    short = silence_weight(vad < 0.5, fps, lookahead=2)  # the ease out never looks further ahead than this
    assert short[147] == 1.0 and short[149] == 0.5


def _motion(n=30, k=5) -> Motion:
    from scipy.spatial.transform import Rotation
    rng = np.random.default_rng(0)
    v = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    v[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, 0.1, (n, 3))).as_matrix()
    v[:, :3, 3] = [0.01, -0.02, 0.6]
    return Motion(25.0, rng.normal(size=(n, k)).astype(np.float32), v,
                  rng.uniform(size=(n, len(CHANNELS))).astype(np.float32),
                  rng.normal(size=(n, 478, 3)).astype(np.float32), {"audio": "x.wav"})


@pytest.mark.parametrize("suffix", [".json", ".csv", ".npz"])
def test_motion_file_round_trip(tmp_path, suffix):
    m = _motion()
    path = save_motion(m, tmp_path / f"m{suffix}")
    back = load_motion(path)
    assert back.fps == m.fps and len(back) == len(m)
    np.testing.assert_allclose(back.expr, m.expr, atol=1e-6)
    np.testing.assert_allclose(back.viewmats, m.viewmats, atol=1e-6)
    np.testing.assert_allclose(back.channels, m.channels, atol=1e-6)
    if suffix == ".npz":
        np.testing.assert_array_equal(back.verts, m.verts)
    if suffix != ".csv":
        assert back.meta == m.meta


def test_motion_json_has_named_channels(tmp_path):
    path = save_motion(_motion(), tmp_path / "m.json")
    d = json.loads(path.read_text())
    assert set(CHANNELS) <= set(d["channels"]) and {"jawOpen", "eyeBlinkLeft", "browInnerUp"} <= set(CHANNELS)
    assert set(d["head"]) == {"head_pitch_deg", "head_yaw_deg", "head_roll_deg", "head_x_m", "head_y_m", "head_z_m"}
    header = (save_motion(_motion(), tmp_path / "m.csv")).read_text().splitlines()[0].split(",")
    assert header[:3] == ["frame", "time_s", "jawOpen"] and "expr_4" in header


def test_motion_file_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_motion(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not a readable motion file"):
        load_motion(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(UserError, match="not a readable motion file"):
        load_motion(other)
    with pytest.raises(UserError, match="cannot write a motion file"):
        save_motion(_motion(), tmp_path / "m.txt")
    assert not (tmp_path / "m.txt").exists()


def test_blink_track_is_the_same_in_pieces():
    from avatar.motion.blinks import BlinkTrack
    eye = np.full((500, 2), 0.3)
    eye[100:103] = eye[200:203] = eye[350:353] = 0.05
    model = BlinkModel.fit(eye, 25.0)
    whole = model.generate(700, rate=1.5, seed=4)
    track = BlinkTrack(model, rate=1.5, seed=4)
    pieces = np.concatenate([track.take(k) for k in [1, 7, 3, 100, 89, 500]])
    np.testing.assert_array_equal(pieces, whole)


def test_prior_folds_into_a_subject_predictor():
    from types import SimpleNamespace

    from avatar.motion.pretrain import Prior, prior_to_subject, subject_predictor

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    mean = rng.normal(0, 0.05, (478, 3)).astype(np.float32)
    tracking = SimpleNamespace(mean_shape=mean, expr_basis=rng.normal(0, 1e-3, (7, 478, 3)).astype(np.float32))
    prior = Prior(AudioToExpression(20, 4, width=16).eval(), rng.normal(0, 0.01, (4, 478, 3)).astype(np.float32), {})
    m = prior_to_subject(prior.basis, tracking)
    assert m.shape == (4, 7)
    x = rng.normal(size=(60, 20)).astype(np.float32)
    np.testing.assert_allclose(predict_clip(subject_predictor(prior, tracking), x),
                               predict_clip(prior.predictor, x) @ m, rtol=1e-4, atol=1e-5)
    # a shared displacement that the subject's basis can make exactly is mapped exactly
    e = rng.normal(size=7).astype(np.float32)
    from avatar.motion.face import vertex_weights
    from avatar.motion.pretrain import _span
    w = np.sqrt(vertex_weights(mean))[:, None]
    shared = (np.einsum("k,kvc->vc", e, tracking.expr_basis) * w / _span(mean))[None]
    np.testing.assert_allclose(prior_to_subject(shared, tracking, ridge=0.0)[0], e, rtol=1e-3, atol=1e-3)


def test_motion_settings_are_checked_when_loaded():
    from avatar.settings import load_config
    assert load_config("default").motion.prior == "none"
    with pytest.raises(UserError, match="motion.prior"):
        load_config("default", ["motion.prior=sometimes"])


def test_speaking_rate_windows_resample_features_and_targets_together():
    from avatar.motion.train import _windows

    x = torch.arange(40, dtype=torch.float32)[:, None].repeat(1, 3)  # feature = clip time, in frames
    y = 10 * x[:, :2]
    usable = torch.ones(40)
    usable[30] = 0
    plain = _windows(x, y, usable, np.array([5]), np.array([1.0]), 8, 3, 2)
    nearly = _windows(x, y, usable, np.array([5]), np.array([1.0 + 1e-9]), 8, 3, 2)  # the interpolating path
    for a, b in zip(plain, nearly):
        assert torch.allclose(a, b, atol=1e-5)
    fast, slow = (_windows(x, y, usable, np.array([20]), np.array([r]), 8, 3, 2) for r in (1.5, 0.5))
    assert torch.allclose(fast[0][0, :, 0], 20 + 1.5 * torch.arange(-3, 10, dtype=torch.float32))
    assert torch.allclose(slow[1][0, :, 0], 10 * (20 + 0.5 * torch.arange(8, dtype=torch.float32)))
    # frame 30 is not usable: the fast window's targets that interpolate from it (times 29 and 30.5) are masked,
    # the slow one's (times 20 to 23.5) are not
    assert fast[2][0].tolist() == [1, 1, 1, 1, 1, 1, 0, 0] and slow[2][0].min() == 1
    edge = _windows(x, y, usable, np.array([35]), np.array([1.3]), 8, 3, 2)
    assert edge[0][0, -1, 0] == 39  # past the clip's end: its last frame repeated, as inference pads
