"""Typed experiment configs: dataclasses with dotted ``key=value`` overrides and JSON I/O."""

from __future__ import annotations

import dataclasses
import importlib
import json
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """An unknown config key or a value of the wrong type."""


def resolve(ref: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names, importing the module.

    The registries (pipelines, learners, traceable hyperparameters) are literal tables of such
    references, so nothing registers itself on import and a name is known before its module is
    loaded.
    """
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def parse_value(text: str) -> Any:
    """``"3" -> 3``, ``"1e-3" -> 0.001``, ``"true" -> True``, ``"[1,2]" -> [1, 2]``; else str."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"] -> {"a.b": 1, "c": "x"}``."""
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"expected key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if typ is Any or typ is None:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        for a in args:
            try:
                return _coerce(value, a, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: cannot use {value!r} as {typ}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value]
        args = typing.get_args(typ)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        return tuple(value)
    if origin in (list, dict) or typ in (list, dict):
        base = origin or typ
        if not isinstance(value, base):
            raise ConfigError(f"{key}: expected a {base.__name__}, got {value!r}")
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        return str(value)
    if dataclasses.is_dataclass(typ) and isinstance(value, dict):
        return from_dict(typ, value)
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def override(cfg: Any, overrides: dict[str, Any]) -> Any:
    """Return ``cfg`` with dotted-key overrides applied (nested dataclasses, dict fields).

    Raises :class:`ConfigError` naming the unknown key and the valid ones.
    """
    for key, value in overrides.items():
        cfg = _set(cfg, key.split("."), value, key)
    return cfg


def _set(obj: Any, path: list[str], value: Any, full: str) -> Any:
    head, rest = path[0], path[1:]
    if dataclasses.is_dataclass(obj):
        types_ = _field_types(type(obj))
        if head not in types_:
            raise ConfigError(
                f"unknown config key {full!r}: {type(obj).__name__} has no field {head!r} "
                f"(fields: {', '.join(types_)})"
            )
        cur = getattr(obj, head)
        new = _set(cur, rest, value, full) if rest else _coerce(value, types_[head], full)
        try:
            return dataclasses.replace(obj, **{head: new})
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{full}: {e}") from e
    if isinstance(obj, dict):
        out = dict(obj)
        out[head] = _set(obj.get(head, {}), rest, value, full) if rest else value
        return out
    raise ConfigError(f"unknown config key {full!r}: {path[0]!r} is not a config section")


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a (nested) dataclass config."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": 2} -> {"a.b": 1, "c": 2}`` (an empty section stays ``{}``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


#: What :func:`flat_diff` reports for a key one side lacks.
UNSET = "<unset>"


def flat_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (value in a, value in b)}`` for every key whose value differs between the
    nested dicts ``a`` and ``b`` (e.g. two :func:`to_dict` configs), sorted by key; a key one
    side lacks has :data:`UNSET` there."""
    fa, fb = flatten(a), flatten(b)
    return {k: (fa.get(k, UNSET), fb.get(k, UNSET))
            for k in sorted(set(fa) | set(fb)) if fa.get(k, UNSET) != fb.get(k, UNSET)}


def diff_lines(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``"key: a -> b"`` for every dotted key of :func:`flat_diff` (the one way a config
    difference is written in messages)."""
    return [f"{k}: {x!r} -> {y!r}" for k, (x, y) in flat_diff(a, b).items()]


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) dataclass config from :func:`to_dict` output."""
    types_ = _field_types(cls)
    unknown = set(data) - set(types_)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    kwargs = {k: _coerce(v, types_[k], k) for k, v in data.items()}
    return cls(**kwargs)
