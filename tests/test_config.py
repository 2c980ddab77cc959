"""Config loading: presets, validation, overrides, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from avatar.core import config as config_io
from avatar.core.errors import UserError
from avatar.settings import AvatarConfig, load_config


@dataclass
class Inner:
    rate: float = 1.0
    """A rate, per second."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""
    sizes: tuple[int, ...] = (1, 2)
    """Some sizes."""


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    """The inner section."""
    count: int = 3
    """How many."""
    name: str | None = None
    """Optional name."""

    def __post_init__(self):
        if self.count < 0:
            raise ValueError("count must be >= 0")


def test_from_dict_converts_and_keeps_defaults():
    cfg = config_io.from_dict(Outer, {"inner": {"rate": 2, "sizes": [4, 5, 6]}, "name": "x"})
    assert cfg.inner.rate == 2.0 and isinstance(cfg.inner.rate, float)
    assert cfg.inner.sizes == (4, 5, 6)
    assert cfg.count == 3 and cfg.inner.mode == "a" and cfg.name == "x"


@pytest.mark.parametrize("data, words", [
    ({"inner": {"rat": 1.0}}, ["unknown setting 'inner.rat'", "inner.rate"]),
    ({"count": "three"}, ["count", "integer"]),
    ({"count": 1.5}, ["count", "integer"]),
    ({"inner": {"mode": "c"}}, ["inner.mode", "'c'"]),
    ({"inner": {"rate": True}}, ["inner.rate", "number"]),
    ({"count": -1}, ["count must be >= 0"]),
    ({"inner": 5}, ["mapping"]),
])
def test_bad_values_are_clear_errors(data, words):
    with pytest.raises(UserError) as e:
        config_io.from_dict(Outer, data)
    for w in words:
        assert w in str(e.value)


def test_overrides_parse_yaml_values():
    data = config_io.apply_overrides({"inner": {"rate": 1.0}}, ["inner.rate=2.5e-3", "count=7", "name=bob"])
    cfg = config_io.from_dict(Outer, data)
    assert cfg.inner.rate == pytest.approx(2.5e-3) and cfg.count == 7 and cfg.name == "bob"
    with pytest.raises(UserError, match="no '='"):
        config_io.apply_overrides({}, ["count"])


def test_field_docs_come_from_source():
    docs = config_io.field_docs(Inner)
    assert docs["rate"] == "A rate, per second."
    text = config_io.dump_yaml(Outer())
    assert "# The inner section." in text and "rate: 1.0  # A rate, per second." in text


@pytest.mark.parametrize("preset", config_io.list_presets())
def test_presets_load_and_round_trip(preset, tmp_path):
    cfg = load_config(preset)
    assert isinstance(cfg, AvatarConfig)
    path = tmp_path / "resolved.yaml"
    config_io.save(cfg, path)
    again = config_io.load(AvatarConfig, str(path))
    assert config_io.to_dict(again) == config_io.to_dict(cfg)


def test_presets_exist_and_every_field_is_documented():
    assert {"default", "fast"} <= set(config_io.list_presets())
    import dataclasses

    def walk(cls, where):
        docs = config_io.field_docs(cls)
        for f in dataclasses.fields(cls):
            assert f.name in docs, f"{where}.{f.name} has no docstring"
            if dataclasses.is_dataclass(f.type if isinstance(f.type, type) else None):
                walk(f.type, f"{where}.{f.name}")
        for f in dataclasses.fields(cls):
            value = getattr(cls(), f.name)
            if dataclasses.is_dataclass(value):
                walk(type(value), f"{where}.{f.name}")
    walk(AvatarConfig, "config")


def test_fast_preset_differs_from_default():
    fast, default = load_config("fast"), load_config("default")
    assert config_io.to_dict(fast) != config_io.to_dict(default)


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preprocess: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(bad))
    with pytest.raises(UserError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="unknown setting 'preprocess.decod'"):
        load_config("default", ["preprocess.decod.size=3"])


def test_exponent_floats_without_a_dot_are_numbers():
    from avatar.settings import load_config
    assert load_config("default", ["fit.lr.rigid_means=2e-4"]).fit.lr.rigid_means == 2e-4
