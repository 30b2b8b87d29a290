"""The search space: declared as data in search_spaces/*.toml, loaded for one
machine, with what it cannot run pruned before sampling (and the reason kept).

The names below are imported on first use: a trial worker reads its backend's
declaration (tuner.space.catalog) without the loader and the space it never uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.space.loader import load_space
    from tuner.space.space import Dimension, Pruned, Space

__all__ = ["Dimension", "Pruned", "Space", "load_space"]

_HOME = {
    "load_space": "tuner.space.loader",
    "Dimension": "tuner.space.space",
    "Pruned": "tuner.space.space",
    "Space": "tuner.space.space",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
