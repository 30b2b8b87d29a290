"""Reading the flat config dict inside a backend.

A value a backend cannot run is an ``UnsupportedConfigError`` (the trial is recorded
as unsupported and the study goes on). Keys a backend does not know are ignored:
later knobs (allocator, OpenMP runtime) are applied outside the backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from tuner.errors import UnsupportedConfigError

T = TypeVar("T")


def choice(config: dict[str, Any], key: str, allowed: Sequence[T], backend: str, default: T | None = None) -> T:
    if key not in config:
        if default is None:
            raise UnsupportedConfigError(f"{backend}: the config has no {key!r} (one of {list(allowed)})")
        return default
    value = config[key]
    # bool is an int subclass: compare types too, so reduce_range=1 is not taken for True.
    if not any(value == a and type(value) is type(a) for a in allowed):
        raise UnsupportedConfigError(f"{backend} cannot run {key}={value!r}; it supports {list(allowed)}")
    return value


def threads(config: dict[str, Any], backend: str) -> int:
    value = config.get("threads")
    if value is None:
        raise UnsupportedConfigError(f"{backend}: the config has no 'threads'")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnsupportedConfigError(f"{backend}: threads must be an integer >= 1, got {value!r}")
    return value
