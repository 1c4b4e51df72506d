"""A mapping (as read from YAML) into nested frozen dataclasses, by their type hints: every wrong
type, unknown key or missing field is one `ConfigError` naming the field, with a suggestion."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any

from harness.config.errors import ConfigError


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:  # "a list of strings", not "a list of a strings"
        inner = _type_name(typing.get_args(tp)[0])
        return "a list of " + (inner.split(" ", 1)[1] + "s" if inner.startswith(("a ", "an ")) else inner)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " (or null)"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, where: str, path: str, may_be_empty: bool = False) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) > 1:  # e.g. str | list[str]: the first type the value fits
            for a in others:
                try:
                    return _coerce(value, a, where, path)
                except ConfigError:
                    pass
            raise ConfigError(path, where, f"expected {_type_name(tp)}, got {value!r}")
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where, path)
    if origin is list:
        if not isinstance(value, list) or not (value or may_be_empty):
            raise ConfigError(path, where, f"expected {_type_name(tp)}, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{where}[{i}]", path) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, where, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, where, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, where, f"expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .nan / .inf: every float field of a study is finite
            raise ConfigError(path, where, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, where, f"expected a string, got {value!r}")
        return value
    raise TypeError(tp)  # a field type this parser does not know: a bug, not user input


def build(cls: Any, data: Any, where: str, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(path, where or "(top level)", f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(names)}"
            raise ConfigError(path, f"{where}.{key}".lstrip("."), "unknown key" + hint)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], f"{where}.{f.name}".lstrip("."), path,
                                     may_be_empty=f.metadata.get("may_be_empty", False))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(path, f"{where}.{f.name}".lstrip("."), "is required")
    return cls(**kwargs)
