"""avatar.model.export: the standard 3DGS PLY layout, and reading it back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData

from avatar.core.errors import UserError
from avatar.model.export import PROPERTIES, SH_C0, read_ply, write_ply

STANDARD_LAYOUT = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                   + [f"f_rest_{i}" for i in range(45)]
                   + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _gaussians(n: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "means": rng.normal(0.0, 0.1, (n, 3)).astype(np.float32),
        "quats": (rng.normal(size=(n, 4)) * rng.uniform(0.2, 5.0, (n, 1))).astype(np.float32),  # any norm
        "scales": np.exp(rng.uniform(-7.0, -2.0, (n, 3))).astype(np.float32),
        "opacities": rng.uniform(0.01, 0.99, n).astype(np.float32),
        "colors": rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32),
    }


def _canonical(q: np.ndarray) -> np.ndarray:
    """Unit quaternions with w >= 0: q and -q are the same rotation."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)


def test_round_trip(tmp_path):
    g = _gaussians()
    path = tmp_path / "avatar.ply"
    write_ply(path, **g)
    back = read_ply(path)
    assert set(back) == {"means", "quats", "scales", "opacities", "colors"}
    for key in ("means", "scales", "opacities", "colors"):
        assert back[key].dtype == np.float32 and back[key].shape == g[key].shape
        np.testing.assert_allclose(back[key], g[key], atol=1e-5, rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(_canonical(back["quats"]), _canonical(g["quats"]), atol=1e-5)


def test_torch_tensors_are_accepted(tmp_path):
    g = _gaussians(10)
    path = tmp_path / "t.ply"
    write_ply(path, **{k: torch.from_numpy(v).requires_grad_(True) for k, v in g.items()})
    np.testing.assert_allclose(read_ply(path)["means"], g["means"], atol=1e-6)


def test_file_has_the_standard_layout(tmp_path):
    g = _gaussians(5)
    g["opacities"][:] = 0.5
    g["opacities"][0] = 0.9
    g["colors"][0] = [0.5, 1.0, 0.0]
    g["quats"][0] = [2.0, 0.0, 0.0, 0.0]
    g["scales"][0] = [1.0, np.e, 0.5]
    path = tmp_path / "layout.ply"
    write_ply(path, **g)

    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    ply = PlyData.read(str(path))
    assert [el.name for el in ply.elements] == ["vertex"]
    vertex = ply["vertex"]
    assert len(PROPERTIES) == 62 and list(PROPERTIES) == STANDARD_LAYOUT
    assert [p.name for p in vertex.properties] == STANDARD_LAYOUT
    assert all(vertex.data.dtype[name] == np.dtype("<f4") for name in STANDARD_LAYOUT)
    assert vertex.count == 5

    v = vertex.data[0]
    assert v["opacity"] == pytest.approx(np.log(0.9 / 0.1), abs=1e-5)  # logit(0.9) = 2.1972
    assert vertex.data["opacity"][1] == pytest.approx(0.0, abs=1e-6)  # logit(0.5)
    assert [v["f_dc_0"], v["f_dc_1"], v["f_dc_2"]] == pytest.approx([0.0, 0.5 / SH_C0, -0.5 / SH_C0])
    assert [v["scale_0"], v["scale_1"], v["scale_2"]] == pytest.approx([0.0, 1.0, np.log(0.5)])
    assert [v[f"rot_{i}"] for i in range(4)] == pytest.approx([1.0, 0.0, 0.0, 0.0])  # normalised, w first
    rest = np.stack([vertex.data[n] for n in STANDARD_LAYOUT if n.startswith(("f_rest", "n"))])
    assert not rest.any()


def test_extreme_values_stay_finite(tmp_path):
    g = _gaussians(4)
    g["opacities"][:] = [0.0, 1.0, 0.0, 1.0]
    g["colors"][:2] = [[-0.5, 0.0, 1.0], [1.0, 2.0, 0.0]]
    g["scales"][0] = 0.0
    path = tmp_path / "extreme.ply"
    write_ply(path, **g)
    data = PlyData.read(str(path))["vertex"].data
    assert all(np.isfinite(data[name]).all() for name in STANDARD_LAYOUT)
    back = read_ply(path)
    assert np.all((back["opacities"] > 0) & (back["opacities"] < 1))
    assert back["colors"].min() >= -1e-6 and back["colors"].max() <= 1 + 1e-6


def test_no_temporary_file_is_left(tmp_path):
    write_ply(tmp_path / "a.ply", **_gaussians(20))
    assert [p.name for p in tmp_path.iterdir()] == ["a.ply"]


def test_a_failed_write_leaves_nothing(tmp_path):
    g = _gaussians(20)
    g["quats"][3] = 0.0
    with pytest.raises(ValueError, match="zero quaternion"):
        write_ply(tmp_path / "a.ply", **g)
    assert list(tmp_path.iterdir()) == []


def test_wrong_shapes_are_rejected(tmp_path):
    g = _gaussians(20)
    g["scales"] = g["scales"][:, :2]
    with pytest.raises(ValueError, match="scales"):
        write_ply(tmp_path / "a.ply", **g)
    g = _gaussians(20)
    g["opacities"] = g["opacities"][:10]
    with pytest.raises(ValueError, match="opacities"):
        write_ply(tmp_path / "a.ply", **g)


def test_truncated_file_is_a_user_error(tmp_path):
    path = tmp_path / "cut.ply"
    write_ply(path, **_gaussians(100))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.ply"):
        read_ply(path)


@pytest.mark.parametrize("content", [b"", b"not a ply at all\n\x00\xff" * 50, b"ply\nformat ascii 1.0\n"])
def test_garbage_file_is_a_user_error(tmp_path, content):
    path = tmp_path / "garbage.ply"
    path.write_bytes(content)
    with pytest.raises(UserError, match="garbage.ply"):
        read_ply(path)


def test_mesh_ply_is_a_user_error(tmp_path):
    path = tmp_path / "mesh.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\n0 0 0\n")
    with pytest.raises(UserError, match=r"mesh\.ply.*opacity") as e:
        read_ply(path)
    assert e.value.fix


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nope.ply"):
        read_ply(tmp_path / "nope.ply")
