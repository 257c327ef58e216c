"""The one config mechanism every settings dataclass uses: build from a dict (unknown keys are
an error naming ``section.key``), back to a JSON/YAML-friendly dict, and checks of a value
against its allowed choices. Sits at the bottom of the package (next to ``ssamba.errors``) so
that features, models, training and recipes all share one set of messages."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, TypeVar

from ssamba.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any] | None, section: str) -> T:
    """Build dataclass ``cls`` from ``values``; unknown keys raise ConfigError naming ``section.key``."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{section}: {exc}") from None


def replace(obj: T, section: str, **changes: Any) -> T:
    """A copy of dataclass ``obj`` with ``changes`` (validated again; unknown names as in from_dict)."""
    return from_dict(type(obj), {**{f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, **changes},
                     section)


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON/YAML-friendly dict of a dataclass (tuples become lists)."""
    def clean(v):
        if isinstance(v, tuple):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v
    return {k: clean(v) for k, v in dataclasses.asdict(obj).items()}


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """ConfigError ``name=value: must be one of ...`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: must be one of {', '.join(map(str, choices))}")
