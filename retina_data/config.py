"""Typed YAML configs: every key checked against a dataclass schema on load.

A schema is a tree of dataclasses whose field names are the YAML keys (the paper's
UPPER_CASE keys are kept as they are). Loading rejects unknown keys (with a "did you
mean"), ill-typed values and values outside the bounds declared with :func:`bounded`, and
each error names the file, the dotted key and what was expected.

Example::

    @dataclass
    class Training:
        TOTAL_EPOCHS: int = bounded(1500, ge=1)
        LOSS_RECON: Literal["MSE", "SSIM", "Combi"] = "Combi"

    cfg = load_config("config.yaml", Root, overrides=["TRAINING.TOTAL_EPOCHS=10"])
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import math
import operator
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from retina_data.errors import ConfigError
from retina_data.files import atomic_write_text

if typing.TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

_BOUND_OPS = {
    "ge": (operator.ge, ">="),
    "gt": (operator.gt, ">"),
    "le": (operator.le, "<="),
    "lt": (operator.lt, "<"),
}


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field with numeric bounds checked on load."""
    bounds = {name: value for name, value in zip(_BOUND_OPS, (ge, gt, le, lt)) if value is not None}
    return dataclasses.field(default=default, metadata={"bounds": bounds, "doc": doc})


def nested(schema: type) -> Any:
    """A dataclass field holding a nested section with all-default values."""
    return dataclasses.field(default_factory=schema)


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    return yaml


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; missing files and syntax errors become :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from exc
    try:
        return _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from exc


def dump_yaml(data: Any) -> str:
    stream = io.StringIO()
    _yaml().dump(data, stream)
    return stream.getvalue()


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _check_bounds(value: Any, bounds: dict[str, float], key: str, source: str) -> None:
    if isinstance(value, float) and math.isinf(value):  # NaN fails every bound below
        raise ConfigError(f"{source}: {key} = {value!r}: expected a finite number")
    if all(_BOUND_OPS[name][0](value, limit) for name, limit in bounds.items()):
        return
    wanted = " and ".join(f"{_BOUND_OPS[name][1]} {limit}" for name, limit in bounds.items())
    raise ConfigError(f"{source}: {key} = {value!r}: expected a value {wanted}")


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = get_origin(tp)
    wrong = ConfigError(f"{source}: {key} = {value!r}: expected {_type_name(tp)}")
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in get_args(tp):
            try:
                return _convert(value, option, key, source)
            except ConfigError:
                continue
        raise wrong
    if tp is type(None):
        if value is None:
            return None
        raise wrong
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        names = [str(c) for c in choices]
        close = [n for n in names if n.lower() == str(value).lower()] or difflib.get_close_matches(
            str(value), names, n=1
        )
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{source}: {key} = {value!r}: expected {_type_name(tp)}{hint}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise wrong
        return from_dict(value, tp, source=source, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise wrong
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise wrong
    if tp is str:
        if isinstance(value, str):
            return value
        raise wrong
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def from_dict(data: dict[str, Any], schema: type[T], *, source: str = "config", prefix: str = "") -> T:
    """Build a ``schema`` instance from a mapping, checking every key and value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the top level'} must be a mapping of keys")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            allowed = ", ".join(fields)
            raise ConfigError(f"{source}: unknown key {prefix}{key}{hint}; allowed here: {allowed}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing required key {key}")
            continue
        value = _convert(data[name], hints[name], key, source)
        bounds = f.metadata.get("bounds") if f.metadata else None
        if bounds and value is not None:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                _check_bounds(item, bounds, key, source)
        values[name] = value
    try:
        return schema(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def to_dict(config: Any) -> Any:
    """A plain mapping (YAML-ready) of a config instance."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"SECTION.KEY=value"`` into its key path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = _yaml().load(raw) if raw.strip() else ""
    except YAMLError as exc:
        raise ConfigError(f"override {text!r}: cannot parse value ({exc})") from exc
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Set dotted keys in a raw config mapping (before schema checking)."""
    for text in overrides or []:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | Path, schema: type[T], overrides: list[str] | None = None) -> T:
    """Read, override and validate a YAML config against ``schema``."""
    data = read_yaml(path)
    if data is None:
        sections = ", ".join(field.name for field in dataclasses.fields(schema))
        raise ConfigError(f"{path}: the config file is empty; expected the sections {sections}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    data = apply_overrides(data, overrides)
    return from_dict(data, schema, source=str(path))


def save_config(config: Any, path: str | Path, *, overwrite: bool = True) -> Path:
    """Write the resolved config as YAML (atomically)."""
    return atomic_write_text(path, dump_yaml(to_dict(config)), overwrite=overwrite)
