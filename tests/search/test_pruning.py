"""BestSoFarPruner inside a real (in-memory) Optuna study."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tuner.search.pruning import FEASIBLE_ATTR, MEDIAN_ATTR, BestSoFarPruner


def _complete(study: optuna.Study, median: float, feasible: bool = True) -> None:
    trial = study.ask()
    trial.set_user_attr(MEDIAN_ATTR, median)
    trial.set_user_attr(FEASIBLE_ATTR, feasible)
    study.tell(trial, median)


def test_threshold_follows_the_best_feasible_trial():
    pruner = BestSoFarPruner(margin=0.5)
    study = optuna.create_study(pruner=pruner)
    assert pruner.threshold(study) is None  # nothing to compare with yet: never prune
    _complete(study, 4.0)
    _complete(study, 1.0, feasible=False)  # faster, but below the guard: not a yardstick
    assert pruner.threshold(study) == pytest.approx(6.0)
    _complete(study, 2.0)
    assert pruner.threshold(study) == pytest.approx(3.0)


def test_should_prune_agrees_with_the_threshold():
    pruner = BestSoFarPruner(margin=0.5)
    study = optuna.create_study(pruner=pruner)
    _complete(study, 2.0)
    slow = study.ask()
    slow.report(3.5, 0)
    assert slow.should_prune()
    study.tell(slow, state=TrialState.PRUNED)
    ok = study.ask()
    ok.report(2.9, 0)
    assert not ok.should_prune()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING]


def test_margin_must_be_positive():
    with pytest.raises(ValueError):
        BestSoFarPruner(margin=0)
