"""Early stopping: a short first measurement stops configurations that are clearly
slower than the best so far, so a slow trial costs its start-up and a tenth of a
second instead of its full measurement.

``BestSoFarPruner`` is an Optuna pruner: a trial reports the median of its short
first measurement at step 0 and is pruned when it is more than ``margin`` slower
than the best feasible trial's full median. The same threshold goes into the trial's
spec before it starts (``threshold``), so the worker itself stops after the short
measurement instead of waiting to be told; the parent then reports the value and
asks ``should_prune`` as Optuna expects, and the two agree by construction.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.vocabulary import DEFAULT_PRUNE_MARGIN, Objective

# User attributes the study sets on each told trial (see tuner.search._reconcile).
MEDIAN_ATTR = "median_ms"
FEASIBLE_ATTR = "feasible"


class BestSoFarPruner(optuna.pruners.BasePruner):
    def __init__(self, margin: float = DEFAULT_PRUNE_MARGIN) -> None:
        if margin <= 0:
            raise ValueError("the pruning margin must be positive")
        self.margin = margin

    def threshold(self, study: optuna.Study) -> float | None:
        """The median (ms) above which a short first measurement is clearly slower;
        None until a feasible trial has completed."""
        best = None
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            median = trial.user_attrs.get(MEDIAN_ATTR)
            if trial.user_attrs.get(FEASIBLE_ATTR) and median is not None and (best is None or median < best):
                best = median
        return None if best is None else best * (1.0 + self.margin)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        limit = self.threshold(study)
        return limit is not None and trial.intermediate_values[step] > limit


def make_pruner(prune: bool, margin: float, objective: str) -> optuna.pruners.BasePruner:
    """A ``BestSoFarPruner`` when pruning is on and the study has one objective (Optuna
    prunes single-objective studies only); else none."""
    return BestSoFarPruner(margin) if prune and objective != Objective.PARETO else optuna.pruners.NopPruner()
