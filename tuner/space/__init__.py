"""The search space: declared as data in search_spaces/*.toml, loaded for one
machine, with what it cannot run pruned before sampling (and the reason kept)."""

from tuner.space.loader import load_space
from tuner.space.space import Dimension, Pruned, Space

__all__ = ["Dimension", "Pruned", "Space", "load_space"]
