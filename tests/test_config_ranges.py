"""Every numeric setting has an allowed range, checked when a config loads."""

from __future__ import annotations

import dataclasses
import typing
from typing import get_args, get_origin, get_type_hints

import pytest

from avatar.core.config import Range, field_range, from_dict
from avatar.core.errors import UserError
from avatar.settings import AvatarConfig, load_config


def numeric_fields(cls: type, where: str = ""):
    """(dotted key, type hint) of every int / float setting under ``cls``."""
    hints = get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{where}{f.name}"
        if dataclasses.is_dataclass(tp):
            yield from numeric_fields(tp, key + ".")
            continue
        base = get_args(tp)[0] if get_origin(tp) is typing.Annotated else tp
        inner = {a for a in get_args(base)} - {type(None)} if get_args(base) else {base}
        if inner & {int, float}:
            yield key, tp


def test_every_numeric_setting_has_a_range_that_holds_its_default():
    fields = list(numeric_fields(AvatarConfig))
    assert len(fields) > 60  # the walk found the settings
    defaults = load_config("default")
    for key, tp in fields:
        allowed = field_range(tp)
        assert isinstance(allowed, Range), f"{key} has no Range: write it as Annotated[..., Range(lo, hi)]"
        value = defaults
        for part in key.split("."):
            value = getattr(value, part)
        assert value is None or value in allowed, f"{key}: default {value} is outside {allowed}"


@pytest.mark.parametrize("override, words", [
    ("preprocess.decode.size=-5", ["preprocess.decode.size", "-5", "[64, 4096]"]),
    ("preprocess.audio.phone_floor=1", ["preprocess.audio.phone_floor", "[0, 1)"]),
    ("preprocess.tracking.damping=0", ["preprocess.tracking.damping", "> 0"]),
    ("preprocess.decode.max_duration_s=-1", ["preprocess.decode.max_duration_s", "> 0"]),
    ("preprocess.audio.f0_min_hz=600", ["f0_min_hz", "f0_max_hz"]),
    ("preprocess.audio.win_ms=40", ["audio.win_ms=40", "640 samples", "audio.n_fft=512"]),
    ("preprocess.decode.fps=60", ["preprocess.decode.fps=60", "multiples of 3 fps", "20, 25, 50"]),
    ("preprocess.audio.fps=25", ["earlier version", "follow preprocess.decode.fps"]),
    ("render.backend=cpu", ["unknown setting 'render.backend'", "x264_preset"]),  # render has its own keys now
])
def test_out_of_range_values_name_the_key_and_the_range(override, words):
    with pytest.raises(UserError) as e:
        load_config("default", [override])
    for w in words:
        assert w in str(e.value), str(e.value)


def test_range_bounds_open_and_closed():
    @dataclasses.dataclass
    class C:
        a: typing.Annotated[float, Range(0.0, 1.0, hi_open=True)] = 0.5
        """A fraction."""
        b: typing.Annotated[int | None, Range(1, None)] = None
        """Optional count."""

    assert from_dict(C, {"a": 0.0, "b": 1}).a == 0.0
    assert from_dict(C, {"b": None}).b is None
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        from_dict(C, {"a": 1.0})
    with pytest.raises(UserError, match=">= 1"):
        from_dict(C, {"b": 0})
