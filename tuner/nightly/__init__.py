"""Keeping winners right as machines change: what each stored winner depends on and
whether it is still fresh here (`tuner status`), and `tuner nightly`, which re-tunes
what is stale or missing, verifies what is fresh, and keeps a row per run
(docs/nightly.md).

It sits between the search (it drives ``Tuner``) and deployment (`tuner best` warns
about a stale winner): docs/architecture.md, "Layers".
"""

from tuner.nightly.depends import libraries_of_backend
from tuner.nightly.status import STATES, WinnerStatus, assess, judge_winners

__all__ = ["STATES", "WinnerStatus", "assess", "judge_winners", "libraries_of_backend"]
