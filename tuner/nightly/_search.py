"""What this package takes from tuner.search, in one place: its public face (the
``Tuner``, ``TuneOptions``, the ``Replay`` and ``Judge`` that the finalists and
`tuner verify` share), the structured strategy's warm start, the finalists'
comparison and the machine lock. When a name moves, this module is the one to change.
"""

from __future__ import annotations

from tuner.search import finalists
from tuner.search.lock import MachineLock
from tuner.search.strategy import warm_start
from tuner.search.study import Judge, Replay, TuneOptions, Tuner

__all__ = ["Judge", "MachineLock", "Replay", "TuneOptions", "Tuner", "finalists", "warm_start"]
