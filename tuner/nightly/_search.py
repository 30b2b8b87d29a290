"""What this package takes from tuner.search, in one place.

tuner/search is being split into modules; only its public face is used here (the
``Tuner`` and its ``TuneOptions``, the structured strategy's warm start, the
finalists' comparison, the machine lock), so that when a name moves, this module is
the one to change.
"""

from __future__ import annotations

from tuner.search import finalists
from tuner.search.lock import MachineLock
from tuner.search.strategy import warm_start
from tuner.search.study import TuneOptions, Tuner

__all__ = ["MachineLock", "TuneOptions", "Tuner", "finalists", "warm_start"]
