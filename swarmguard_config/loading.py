"""Fill a frozen dataclass from environment variables named after its fields.

A field ``some_name`` is read from ``<PREFIX>SOME_NAME``, unless its metadata says
otherwise. The metadata a field may carry:

    env     the variable's full name, where the public name differs from the field's;
            None: the field is not read from the environment (the caller passes it in
            ``fixed``, or its default stands)
    min     the smallest value allowed          max    the largest value allowed
    above   a bound the value must exceed (POSITIVE is {"above": 0})
    one_of  the allowed words, matched regardless of case and stored as spelled here
    check   a function of the coerced value that raises ValueError saying what is wrong
            with it (a rule no bound expresses: a list of URLs)

Values are coerced by the field's annotation: bool, int, float, str, or one of those or
None. An empty value counts as unset, so that ``VAR=`` in a stack file means "the
default" rather than an error. Every failure is a ConfigError naming the variable (or
flag, or file key) and the value, so that a component refuses to start with a sentence
saying what to fix.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

POSITIVE: Mapping[str, object] = {"above": 0}
NOT_NEGATIVE: Mapping[str, object] = {"min": 0}
NOT_FROM_ENV: Mapping[str, object] = {"env": None}

_KNOWN_METADATA = {"env", "min", "max", "above", "one_of", "check"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A component cannot start with this configuration; the message names the setting.

    A ValueError, so that callers that caught ValueError before this module existed
    (the stress app's) still catch it.
    """


class Layer(NamedTuple):
    """Values by field name from somewhere other than the environment (a YAML file,
    command-line flags), and what to call a field from there in an error message."""

    values: Mapping[str, object]
    label: Callable[[str], str]


def env_name(field: dataclasses.Field, prefix: str) -> str | None:
    """The variable a field is read from; None if it is not read from the environment."""
    if "env" in field.metadata:
        return field.metadata["env"]
    return prefix + field.name.upper()


def load(
    cls: type[T],
    prefix: str,
    environ: Mapping[str, str],
    *,
    beneath_env: Layer | None = None,
    above_env: Layer | None = None,
    fixed: Mapping[str, object] | None = None,
) -> T:
    """Build ``cls`` from its defaults < ``beneath_env`` < ``environ`` < ``above_env``.

    ``fixed`` holds values for fields not read from the environment (a nested
    dataclass, a secret read by the caller's own rules); they are passed as they are.
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, object] = dict(fixed or {})
    for field in dataclasses.fields(cls):
        unknown = set(field.metadata) - _KNOWN_METADATA
        if unknown:
            # A misspelt bound would otherwise be silently ignored.
            raise TypeError(f"{cls.__name__}.{field.name}: unknown metadata {sorted(unknown)}")
        variable = env_name(field, prefix)
        if variable is None:
            continue
        # Checked whether or not the field is set, so that a type it cannot read fails
        # every test run rather than the first deployment that sets it.
        kind = _base_type(hints[field.name], field.name)
        found = _winning_value(field.name, variable, environ, beneath_env, above_env)
        if found is not None:
            label, raw = found
            values[field.name] = parse(field, kind, raw, label)
    return cls(**values)


def _winning_value(
    name: str,
    variable: str,
    environ: Mapping[str, str],
    beneath_env: Layer | None,
    above_env: Layer | None,
) -> tuple[str, object] | None:
    """(label, raw value) of the highest layer that sets the field, or None."""
    candidates = [
        (beneath_env.label(name), beneath_env.values.get(name)) if beneath_env else None,
        (variable, environ.get(variable)),
        (above_env.label(name), above_env.values.get(name)) if above_env else None,
    ]
    set_ones = [c for c in candidates if c is not None and not _is_unset(c[1])]
    return set_ones[-1] if set_ones else None


def _is_unset(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def parse(field: dataclasses.Field, kind: type, raw: object, label: str) -> object:
    """One field's value of type ``kind`` from a raw one (text, or a YAML scalar),
    coerced and checked against the field's bounds."""
    value = _coerce(kind, raw, label)
    _check_bounds(field.metadata, value, raw, label)
    if "one_of" in field.metadata:
        value = _one_of(field.metadata["one_of"], value, label)
    if "check" in field.metadata:
        try:
            field.metadata["check"](value)
        except ValueError as exc:
            raise ConfigError(f"{label}={raw!r}: {exc}") from None
    return value


def _base_type(annotation: Any, name: str) -> type:
    """The type a field's text is read as: bool, int, float or str."""
    # `float | None` and Optional[float]: None is the default, reached by leaving it unset.
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            annotation = options[0]
    if annotation not in (bool, int, float, str):
        raise TypeError(f"{name}: cannot read a {annotation!r} from the environment")
    return annotation


def _coerce(kind: type, raw: object, label: str) -> object:
    bad = ConfigError(f"{label}={raw!r} is not {_DESCRIPTIONS[kind]}")
    if kind is str:
        return str(raw).strip()
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise bad
    # YAML's `true` is a bool, and bool is an int in Python: not a number of anything.
    if isinstance(raw, bool):
        raise bad
    try:
        number = kind(str(raw).strip())
    except ValueError:
        raise bad from None
    if kind is float and not math.isfinite(number):
        raise bad
    return number


_DESCRIPTIONS = {
    bool: "a boolean (1/0, true/false, yes/no, on/off)",
    int: "a whole number",
    float: "a number",
    str: "text",
}


def _check_bounds(metadata: Mapping[str, object], value: object, raw: object, label: str) -> None:
    if "above" in metadata and not value > metadata["above"]:
        raise ConfigError(f"{label}={raw!r} must be greater than {metadata['above']}")
    if "min" in metadata and value < metadata["min"]:
        raise ConfigError(f"{label}={raw!r} must be at least {metadata['min']}")
    if "max" in metadata and value > metadata["max"]:
        raise ConfigError(f"{label}={raw!r} must be at most {metadata['max']}")


def _one_of(choices: Sequence[str], value: object, label: str) -> str:
    for choice in choices:
        if str(value).lower() == choice.lower():
            return choice
    raise ConfigError(f"{label}={value!r} is not one of {', '.join(choices)}")
