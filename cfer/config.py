"""Typed configuration loading shared by every cfer command.

A config is a (possibly nested) ``@dataclass``. :func:`load_config` builds one
from the class defaults, then a YAML file, then ``key=value`` overrides such as
``train.lr=1e-3`` or ``classes=[happy,sad]``. Every value is checked against the
field's type annotation, and every error is a :class:`ConfigError` that says which
key, where it came from and what was expected, so a typo in a long run fails at
start-up rather than being silently ignored.

Example:
    >>> @dataclass
    ... class TrainConfig:
    ...     lr: float = 1e-4  # learning rate
    ...     epochs: int = 10
    >>> load_config(TrainConfig, overrides=["lr=1e-3"]).lr
    0.001
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from cfer.io import atomic_write_text

__all__ = [
    "ConfigError",
    "check_resumable",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, override or value that does not fit its dataclass."""


@dataclasses.dataclass(frozen=True)
class _Sourced:
    """A raw value and a description of where it came from, for error messages."""

    value: Any
    source: str


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> T:
    """Builds a config from defaults, an optional YAML file and overrides.

    Precedence, lowest first: the dataclass defaults, the file, the overrides in
    order. A nested dataclass given partially keeps its defaults for the keys
    not given.

    Args:
        cls: The dataclass to build.
        path: YAML file whose top level is a mapping of field names; None for
            defaults and overrides only.
        overrides: ``"key=value"`` strings; dotted keys reach into nested
            dataclasses (``model.name=resnet18``); values are parsed with
            ``yaml.safe_load`` (``1e-3``, ``true``, ``null``, ``[a, b]``).

    Returns:
        A new instance of ``cls``; it is frozen exactly when ``cls`` is declared
        frozen. Neither ``cls`` defaults nor ``overrides`` are modified.

    Raises:
        ConfigError: If the file is missing or not a YAML mapping, an override is
            malformed, a key is unknown, a required field is missing or a value
            does not fit its field type.
    """
    _require_dataclass(cls)
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        _merge(tree, _wrap(_read_yaml_mapping(path), f"file {path}"))
    for override in overrides:
        key, value = _parse_override(override)
        source = f"override {override!r}"
        _check_key_path(cls, key.split("."), source)
        _merge(tree, _nest(key.split("."), _wrap(value, source)))
    return _build(cls, tree, base=None, prefix="")


def config_from_dict(cls: type[T], data: Mapping[str, Any], source: str = "dict") -> T:
    """Builds a config from a nested mapping, with the checks of :func:`load_config`.

    Args:
        cls: The dataclass to build.
        data: Field values; nested dataclasses as nested mappings.
        source: Where ``data`` came from, quoted in error messages.

    Raises:
        ConfigError: If a key is unknown, a required field is missing or a value
            does not fit its field type.
    """
    _require_dataclass(cls)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of {cls.__name__} fields, got {data!r}")
    return _build(cls, _wrap(data, source), base=None, prefix="")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Converts a config dataclass into plain YAML-ready values.

    Nested dataclasses become dicts, tuples become lists, paths become strings
    and enums their values, so that ``load_config`` of the saved dict rebuilds an
    equal config.

    Raises:
        ConfigError: If ``config`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ConfigError(f"expected a dataclass instance, got {type(config).__name__}")
    return _plain(config)


def save_config(config: Any, path: str | Path) -> Path:
    """Writes a config as YAML, atomically, so a run records its resolved config.

    Args:
        config: A config dataclass instance.
        path: Destination file; its folder is created if needed.

    Returns:
        The path written.
    """
    path = Path(path)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True)
    atomic_write_text(path, text)
    return path


def check_resumable(config: Any, out_dir: str | Path, may_change: Sequence[str] = ()) -> None:
    """Refuse to continue a run directory that was started with other settings.

    Compares ``config`` with the ``config.yaml`` that :func:`save_config` wrote into ``out_dir``
    when the run started; nothing happens for a new directory.

    Args:
        config: The settings of this session (a config dataclass instance).
        out_dir: The run directory.
        may_change: Top-level keys that may differ between sessions of one run (e.g. ``device``).

    Raises:
        ValueError: If another key differs; the message names the keys.
    """
    saved = Path(out_dir) / "config.yaml"
    if not saved.exists():
        return
    previous = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    try:  # a key added to the settings since the run started has its default there
        previous = _merged(config_to_dict(type(config)()), previous)
    except TypeError:  # settings without defaults: compare as written
        pass
    current = config_to_dict(config)
    differing = sorted(
        key for key in set(previous) | set(current) if key not in may_change and previous.get(key) != current.get(key)
    )
    if differing:
        raise ValueError(
            f"{out_dir} holds a run with different settings ({', '.join(differing)}); "
            f"use another --out, or delete {out_dir} to start over"
        )


def _merged(defaults: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` over ``defaults``, nested mappings merged key by key."""
    merged = dict(defaults)
    for key, value in saved.items():
        merged[key] = (_merged(defaults[key], value) if isinstance(value, dict) and isinstance(defaults.get(key), dict)
                       else value)
    return merged


# --- reading sources ---------------------------------------------------------


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (working directory: {Path.cwd()})")
    try:
        with path.open(encoding="utf-8") as file:
            data = yaml.safe_load(file)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must contain a mapping of keys to values at top level, "
            f"got {type(data).__name__}"
        )
    return data


def _parse_override(override: str) -> tuple[str, Any]:
    key, separator, text = override.partition("=")
    key = key.strip()
    if not separator or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"override {override!r} is not of the form key=value "
            "(dotted keys for nested sections, e.g. train.lr=1e-3)"
        )
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {error}") from error
    return key, value


def _wrap(value: Any, source: str) -> Any:
    """Tags every leaf of nested mappings with its source."""
    if isinstance(value, Mapping):
        return {key: _wrap(item, source) for key, item in value.items()}
    return _Sourced(value, source)


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(keys):
        value = {key: value}
    return value


def _merge(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Deep-merges ``update`` into ``target``, which this module owns."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


# --- building ------------------------------------------------------------------


def _require_dataclass(cls: object) -> None:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigError(f"expected a dataclass type, got {cls!r}")


def _init_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {field.name: field for field in dataclasses.fields(cls) if field.init}


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError as error:
        raise ConfigError(
            f"cannot resolve the type annotations of {cls.__name__}: {error}"
        ) from error


def _unknown_key_error(cls: type, key: str, prefix: str, source: str) -> ConfigError:
    valid = list(_init_fields(cls))
    suggestion = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {prefix + suggestion[0]!r}?" if suggestion else ""
    return ConfigError(
        f"unknown config key {prefix + key!r} (from {source}); valid keys of "
        f"{cls.__name__}{' at ' + prefix.rstrip('.') if prefix else ''}: "
        f"{', '.join(valid)}{hint}"
    )


def _check_key_path(cls: type, keys: list[str], source: str) -> None:
    """Fails early on an override whose dotted key does not name a field."""
    current: Any = cls
    for depth, key in enumerate(keys):
        prefix = "".join(part + "." for part in keys[:depth])
        if not dataclasses.is_dataclass(current):
            raise ConfigError(
                f"config key {prefix.rstrip('.')!r} (from {source}) is not a section; "
                f"{'.'.join(keys)!r} cannot be set"
            )
        if key not in _init_fields(current):
            raise _unknown_key_error(current, key, prefix, source)
        current = _dataclass_in(_type_hints(current)[key])


def _dataclass_in(annotation: Any) -> type | None:
    """The dataclass a field holds, looking through Optional; else None."""
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    if _is_union(annotation):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _dataclass_in(members[0])
    return None


def _sources(tree: Any) -> list[str]:
    if isinstance(tree, _Sourced):
        return [tree.source]
    if isinstance(tree, Mapping):
        return sorted({source for item in tree.values() for source in _sources(item)})
    return []


def _build(cls: type[T], tree: Mapping[str, Any], base: Any, prefix: str) -> T:
    """Builds ``cls`` from a tree of _Sourced leaves, starting from ``base`` if given."""
    fields = _init_fields(cls)
    hints = _type_hints(cls)
    for key, item in tree.items():
        if key not in fields:
            raise _unknown_key_error(cls, str(key), prefix, ", ".join(_sources(item)))

    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name in tree:
            current = getattr(base, name) if base is not None else _field_default(field)
            kwargs[name] = _convert(hints[name], tree[name], prefix + name, current)
        elif base is not None:
            kwargs[name] = getattr(base, name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(
                f"missing required config key {prefix + name!r} of {cls.__name__}; "
                "set it in the config file or with an override"
            )
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        where = ", ".join(_sources(tree)) or "defaults"
        raise ConfigError(
            f"invalid {cls.__name__}{' at ' + prefix.rstrip('.') if prefix else ''} "
            f"(from {where}): {error}"
        ) from error


def _field_default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _convert(annotation: Any, item: Any, key: str, current: Any) -> Any:
    """Converts one raw value (a _Sourced leaf or a tree) to ``annotation``."""
    target = _dataclass_in(annotation)
    if isinstance(item, Mapping) and target is not None:
        base = current if isinstance(current, target) else None
        return _build(target, item, base=base, prefix=key + ".")
    if isinstance(item, Mapping):
        # A mapping for a non-dataclass field (e.g. dict[str, int]): unwrap it.
        sources = _sources(item)
        return _coerce(annotation, _unwrap(item), key, ", ".join(sources) or "dict")
    return _coerce(annotation, item.value, key, item.source)


def _unwrap(tree: Any) -> Any:
    if isinstance(tree, _Sourced):
        return tree.value
    return {key: _unwrap(item) for key, item in tree.items()}


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _coerce(annotation: Any, value: Any, key: str, source: str) -> Any:
    """Checks ``value`` against ``annotation`` and converts where unambiguous."""

    def fail(expected: str, extra: str = "") -> ConfigError:
        return ConfigError(
            f"config key {key!r} (from {source}) expects {expected}, got "
            f"{type(value).__name__} {value!r}{extra}"
        )

    if annotation is Any or annotation is object:
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    if _is_union(annotation):
        if value is None and type(None) in args:
            return None
        members = [arg for arg in args if arg is not type(None)]
        for member in members:
            try:
                return _coerce(member, value, key, source)
            except ConfigError:
                continue
        options = [_expected(member) for member in members]
        if type(None) in args:
            options.append("null")
        raise fail(" or ".join(options))
    if value is None:
        raise fail(_type_name(annotation), " (use a value, or make the field Optional)")

    if origin is Literal:
        # Compare types too: YAML true must not match Literal[1], nor 1 match "1".
        if any(value == arg and type(value) is type(arg) for arg in args):
            return value
        suggestion = difflib.get_close_matches(str(value), [str(arg) for arg in args], n=1)
        hint = f"; did you mean {suggestion[0]!r}?" if suggestion else ""
        raise fail(f"one of {list(args)}", hint)

    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if isinstance(value, Mapping):  # a dataclass inside a list or a dict: built from its mapping
            return config_from_dict(annotation, value, source=f"{source}, {key}")
        raise fail(f"a mapping of {annotation.__name__} fields")

    if origin in (tuple, list, Sequence, typing.Sequence) or annotation in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list ({_type_name(annotation)}), e.g. [a, b]")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise fail(f"a list of exactly {len(args)} items ({_type_name(annotation)})")
            return tuple(
                _coerce(arg, element, f"{key}[{index}]", source)
                for index, (arg, element) in enumerate(zip(args, value))
            )
        element_type = args[0] if args else Any
        converted = [
            _coerce(element_type, element, f"{key}[{index}]", source)
            for index, element in enumerate(value)
        ]
        return list(converted) if origin is list or annotation is list else tuple(converted)

    if origin in (dict, Mapping, typing.Mapping) or annotation is dict:
        if not isinstance(value, Mapping):
            raise fail(f"a mapping ({_type_name(annotation)})")
        key_type, value_type = args if args else (Any, Any)
        return {
            _coerce(key_type, name, f"{key}.{name}", source): _coerce(
                value_type, element, f"{key}.{name}", source
            )
            for name, element in value.items()
        }

    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise fail("a boolean (true/false)")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, (str, float)) and not isinstance(value, bool):
            number = _to_float(value)
            if number is not None and number.is_integer():
                return int(number)
        raise fail("an integer")
    if annotation is float:
        # PyYAML reads "1e-3" (no dot) as a string, so numeric strings are accepted.
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            number = _to_float(value)
            if number is not None:
                return number
        raise fail("a number")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise fail("a string", " (quote it to keep it a string)")
    if isinstance(annotation, type) and issubclass(annotation, Path):
        if isinstance(value, (str, Path)):
            return annotation(value)
        raise fail("a path")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        for member in annotation:
            if value == member or value == member.value or value == member.name:
                return member
        raise fail(f"one of {[member.value for member in annotation]}")
    raise ConfigError(
        f"config key {key!r} has annotation {_type_name(annotation)}, which config "
        "loading does not support; use int, float, bool, str, Path, Enum, Literal, "
        "Optional, tuple, list, dict or a nested dataclass"
    )


def _expected(annotation: Any) -> str:
    """Words for what a value of ``annotation`` looks like, for error messages."""
    words = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if annotation in words:
        return words[annotation]
    return _type_name(annotation)


def _to_float(value: int | float | str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if field.init
        }
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, Path):
        return str(value)
    return value
