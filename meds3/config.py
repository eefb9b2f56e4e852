"""Typed configs: dataclasses loaded from YAML, with ``key=value`` overrides.

Every stage has one dataclass config whose defaults are the paper's values and whose
``__post_init__`` validates values. This module turns YAML and command-line overrides
into those dataclasses and rejects unknown keys and ill-typed values by name.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key is unknown or its value is invalid; the message names the key."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class RawOverride(str):
    """A ``key=value`` override's text, read according to the type of its field."""


def _accepts_str(tp: Any) -> bool:
    args = typing.get_args(tp)
    return tp is str or (typing.get_origin(tp) in (Union, types.UnionType) and str in args)


def _read_override(raw: RawOverride, tp: Any) -> Any:
    """Text for str fields (so ``step_prefix=Step {i}: `` stays text), YAML otherwise."""
    if _accepts_str(tp) or (typing.get_origin(tp) is Literal and str(raw) in typing.get_args(tp)):
        return str(raw)
    if not raw.strip():
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return str(raw)
    if isinstance(value, str) and float in (tp, *typing.get_args(tp)):
        try:  # YAML 1.1 reads "1e-3" as text; a float field means the number
            return float(value)
        except ValueError:
            pass
    return value


#: A decimal number as text (``2e-4``, ``-1.5``, ``.5``); not ``nan`` or ``inf``.
_FLOAT_TEXT = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert where lossless (int -> float)."""
    if isinstance(value, RawOverride):
        value = _read_override(value, tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)  # why: YAML 1.1 reads "2e-4" (no dot) as text; a float field means the number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):  # why: NaN passes every `x < 0` check and poisons training and sampling
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__}")
    return value


def check_finite(config: Any) -> None:
    """Raise ``ValueError`` naming the first float field of dataclass ``config`` that is NaN or
    infinite (called first in each config's ``__post_init__``, so direct construction is
    checked as well as loading)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value!r}")


def check_output_dir(value: Any, name: str = "output_dir") -> None:
    """Raise ``ValueError`` when an output folder is empty or blank (it would write into the
    current directory)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"{name} must name a folder, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build config ``cls`` from a plain mapping.

    Raises:
        ConfigError: on an unknown key (with the known ones listed), an ill-typed value, or a
            value ``cls.__post_init__`` rejects; the message names the full dotted key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}' for {cls.__name__}; "
                          f"known keys: {', '.join(fields)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from exc


def to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML-ready dict of a config (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=3", "name=x"]`` -> ``{"a": {"b": "3"}, "name": "x"}`` as :class:`RawOverride`
    texts; each is read when its field's type is known (YAML for non-text fields)."""
    result: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        value = RawOverride(raw)
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of '{part}'")
        node[parts[-1]] = value
    return result


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge; values of ``extra`` win."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_OTHER_ENCODINGS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                    (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def read_config_text(path: str | os.PathLike) -> str:
    """The text of a config file, which must be UTF-8 (a UTF-8 byte-order mark is dropped).

    Raises:
        ConfigError: naming the file, for UTF-16/UTF-32 (byte-order mark or NUL bytes) or
            bytes that are not UTF-8 (e.g. latin-1), with the line and byte.
        OSError: the file cannot be read.
    """
    data = Path(path).read_bytes()
    for bom, name in _OTHER_ENCODINGS:
        if data.startswith(bom):
            raise ConfigError(f"{path}: the file is {name}-encoded; save it as UTF-8")
    if b"\x00" in data:
        raise ConfigError(f"{path}: the file holds NUL bytes (UTF-16 or binary?); save it as UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
                          "save the file as UTF-8") from None


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                defaults: dict[str, Any] | None = None) -> T:
    """Build config ``cls`` from an optional YAML file, then ``defaults`` below the file,
    then ``key=value`` overrides on top.

    Raises:
        ConfigError: unreadable YAML or a file not in UTF-8, unknown keys, bad values (naming
            the key): NaN or infinite floats, and whatever the config's ``__post_init__`` refuses.
            A float written ``2e-4`` (text to YAML 1.1) is read as the number.
    """
    data: dict[str, Any] = dict(defaults or {})
    if path is not None:
        from meds3.shipped import resolve_shipped

        path = resolve_shipped(path)  # seed_data/... missing here: the copy shipped with meds3
        try:
            loaded = yaml.safe_load(read_config_text(path)) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        except RecursionError:
            raise ConfigError(f"{path}: YAML nested too deeply to read") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = merge(data, loaded)
    data = merge(data, parse_overrides(overrides))
    return from_dict(cls, data)


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write a config as YAML; :func:`load_config` reads it back equal."""
    from meds3.io import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))
