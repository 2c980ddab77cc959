"""Typed configuration: YAML presets -> nested dataclasses, with validation.

Every component declares its own ``@dataclass`` config next to its code, with a
one-line docstring under each field (the string literal on the line after the
field). This module turns YAML into those dataclasses and back:

- unknown keys are errors that name the key and suggest the closest valid one
  (a dataclass's ``RETIRED`` mapping says what became of a key it used to have),
- values are checked against the field's type (int, float, bool, str,
  ``Literal[...]``, ``X | None``, tuples and lists of those),
- numbers are checked against the field's :class:`Range`
  (``size: Annotated[int, Range(64, 4096)] = 512``); every numeric setting has one,
- ``--set a.b.c=value`` overrides are applied on top of a preset,
- the resolved config is written beside every output it produced.

Presets live in ``configs/<name>.yaml`` at the project root (installed as
``avatar/presets/`` by the wheel); a path to any YAML file works too.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from avatar.core.errors import UserError
from avatar.core.files import write_text

T = TypeVar("T")


def preset_dir() -> Path:
    """The folder of the preset YAML files.

    A wheel installs them as ``avatar/presets/``; a source checkout (and an
    editable install) keeps them in ``configs/`` at the repository root.
    """
    package = Path(__file__).resolve().parents[1]
    installed = package / "presets"
    return installed if installed.is_dir() else package.parent / "configs"


# ---------------------------------------------------------------- ranges
@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: ``lo <= x <= hi`` (``<`` where open).

    Used as ``Annotated[float, Range(0, 1, hi_open=True)]``; None means unbounded.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        if self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi):
            return False
        return True

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


def field_range(tp: Any) -> Range | None:
    """The :class:`Range` of an ``Annotated[...]`` field type, if it has one."""
    if get_origin(tp) is Annotated:
        return next((m for m in tp.__metadata__ if isinstance(m, Range)), None)
    return None


# ---------------------------------------------------------------- field docs
@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Map field name -> the one-line docstring written under it in ``cls``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:] + [None]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


# ---------------------------------------------------------------- conversion
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against type ``tp`` and convert (YAML lists -> tuples, int -> float)."""
    origin = get_origin(tp)
    if origin is Annotated:
        value = _convert(value, get_args(tp)[0], where)
        allowed = field_range(tp)
        if allowed is not None and value is not None and value not in allowed:
            raise UserError(f"config {where}: {value!r} is out of range (allowed: {allowed})",
                            f"set {where} to a value {allowed}" if allowed.lo is None or allowed.hi is None
                            else f"set {where} to a value in {allowed}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config {where}: expected a mapping of settings, got {value!r}",
                            f"write {where} as a YAML mapping (key: value lines)")
        return from_dict(tp, value, prefix=where)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise UserError(f"config {where}: {value!r} is not one of {list(choices)}",
                            f"set {where} to one of {', '.join(map(str, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except UserError:
                continue
        raise UserError(f"config {where}: {value!r} does not fit {_type_name(tp)}",
                        f"give {where} a value of type {_type_name(tp)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config {where}: expected a list, got {value!r}",
                            f"write {where} as a YAML list, e.g. [1, 2]")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise UserError(f"config {where}: expected {len(args)} values, got {len(value)}",
                                f"give {where} exactly {len(args)} values")
            items = [_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            inner = args[0] if args else Any
            items = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"config {where}: expected true or false, got {value!r}",
                            f"set {where} to true or false")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config {where}: expected a number, got {value!r}",
                            f"set {where} to a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config {where}: expected an integer, got {value!r}",
                            f"set {where} to a whole number")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"config {where}: expected text, got {value!r}", f"quote {where}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise UserError(f"config {where}: expected {_type_name(tp)}, got {value!r}",
                        f"give {where} a value of type {_type_name(tp)}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (partial) mapping; missing keys keep defaults."""
    hints = get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in (data or {}).items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields and key in getattr(cls, "RETIRED", {}):
            raise UserError(f"config: {where!r} is a setting of an earlier version", cls.RETIRED[key])
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean {(prefix + '.' if prefix else '') + close[0]}?" if close else \
                f"valid keys here: {', '.join(sorted(fields))}"
            raise UserError(f"config: unknown setting {where!r}", hint)
        kwargs[key] = _convert(value, hints[key], where)
    for name, f in fields.items():
        if name not in kwargs and dataclasses.is_dataclass(hints[name]) and \
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[name] = from_dict(hints[name], {}, prefix=f"{prefix}.{name}" if prefix else name)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ validation
        raise UserError(f"config {prefix or cls.__name__}: {e}",
                        "fix that value in the YAML file or with --set") from None


def to_dict(cfg: Any) -> Any:
    """Dataclass -> plain dict/list/scalars (YAML/JSON friendly)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


# ---------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=1e-3"`` -> (["a", "b", "c"], 0.001); the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"--set {text!r} has no '='", "write --set section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise UserError(f"--set {text!r} names no setting", "write --set section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of nested mapping ``data`` with ``--set`` overrides applied."""
    import copy
    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {text!r}: {p!r} is a value, not a section",
                                "check the setting's path with `avatar config`")
        node[path[-1]] = value
    return out


# ---------------------------------------------------------------- files
def read_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML mapping with errors that name the file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist",
                        f"use a preset name ({', '.join(list_presets())}) or a path to a YAML file") from None
    except yaml.YAMLError as e:
        raise UserError(f"config file {path} is not valid YAML: {e}", "fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping at the top level",
                        "write it as `section:` blocks of `key: value` lines")
    return data


def list_presets() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def preset_path(name_or_path: str) -> Path:
    """A preset name (``default``, ``fast``) or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return preset_dir() / f"{name_or_path}.yaml"


def load(cls: type[T], preset: str = "default", overrides: list[str] | None = None) -> T:
    """Load preset ``preset`` (its ``base:`` key, if any, is loaded first) into ``cls``."""
    data = _read_with_base(preset_path(preset), seen=())
    data = apply_overrides(data, overrides or [])
    return from_dict(cls, data)


def _read_with_base(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = preset_path(str(base)) if not Path(str(base)).is_absolute() else Path(base)
    if not base_path.exists() and not base_path.is_absolute():
        base_path = path.parent / str(base)
    if base_path.resolve() in seen:
        raise UserError(f"config {path}: 'base' chain loops back to {base_path}", "remove the loop")
    return _merge(_read_with_base(base_path, seen + (path.resolve(),)), data)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dump_yaml(cfg: Any, with_docs: bool = True) -> str:
    """YAML text of a config; with ``with_docs`` every key carries its docstring as a comment."""
    if not with_docs:
        return yaml.safe_dump(to_dict(cfg), sort_keys=False)
    lines: list[str] = []
    _dump_node(cfg, 0, lines)
    return "\n".join(lines) + "\n"


def _dump_node(cfg: Any, indent: int, lines: list[str]) -> None:
    docs = field_docs(type(cfg))
    pad = "  " * indent
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        doc = docs.get(f.name, "")
        if dataclasses.is_dataclass(value):
            if doc:
                lines.append(f"{pad}# {doc}")
            lines.append(f"{pad}{f.name}:")
            _dump_node(value, indent + 1, lines)
        else:
            text = yaml.safe_dump({f.name: to_dict(value)}, default_flow_style=True, width=1000).strip()
            text = text[1:-1] if text.startswith("{") and text.endswith("}") else text
            lines.append(f"{pad}{text}" + (f"  # {doc}" if doc else ""))


def save(cfg: Any, path: Path) -> None:
    """Write the resolved config (with docs) to ``path`` atomically."""
    write_text(path, dump_yaml(cfg))
