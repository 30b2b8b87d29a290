"""Parameter importance of a study, computed by Optuna's own evaluator from Optuna's
own trials (the same database, opened read-only).

PED-ANOVA is the evaluator: it needs no model fit, so a study of thousands of trials
answers in well under a second, where fANOVA's random forest takes seconds. Results
are cached per study and number of completed trials, so a page that polls a running
study recomputes only when a trial has completed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.service.db import ReadOnlyStore

# Fewer completed trials than this and the importances say nothing.
MIN_TRIALS = 5
_EVALUATOR = "PedAnovaImportanceEvaluator"


class ImportanceCache:
    def __init__(self, store: "ReadOnlyStore") -> None:
        self._store = store
        self._storage: Any = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], dict[str, Any]] = {}

    def _optuna_storage(self) -> Any:
        """Optuna's storage over the same database, read-only; None when Optuna's tables
        are not there (a database filled by something else than `tuner auto`)."""
        with self._lock:
            if self._storage is None:
                import optuna
                from sqlalchemy import inspect

                with self._store.engine.connect() as connection:
                    tables = inspect(connection)
                    if not (tables.has_table("studies") and tables.has_table("version_info")):
                        return None
                self._storage = optuna.storages.RDBStorage(**self._store.optuna_storage_kwargs())
            return self._storage

    def importance(self, optuna_study_name: str, objective: str) -> dict[str, Any]:
        """{available, reason, evaluator, n_trials, importances} for the study."""
        import optuna

        storage = self._optuna_storage()
        if storage is None:
            return _unavailable("the database has no Optuna tables (it was not written by `tuner auto`)")
        try:
            study_id = storage.get_study_id_from_name(optuna_study_name)
        except KeyError:
            return _unavailable(
                "no Optuna study of this name in the database (a study written by a benchmark or another tool)"
            )
        complete = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        key = (optuna_study_name, len(complete))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = _compute(storage, optuna_study_name, complete, objective)
        self._cache[key] = result
        return result


def _unavailable(reason: str, n_trials: int = 0) -> dict[str, Any]:
    return {"available": False, "reason": reason, "evaluator": None, "n_trials": n_trials, "importances": {}}


def _compute(storage: Any, name: str, complete: list[Any], objective: str) -> dict[str, Any]:
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    if len(complete) < MIN_TRIALS:
        return _unavailable(f"{len(complete)} completed trials; importance needs at least {MIN_TRIALS}", len(complete))
    # The parameters every completed trial has (Optuna's own default) that took more
    # than one value: a parameter that never changed explains nothing.
    common = set.intersection(*(set(t.params) for t in complete))
    varied = sorted(p for p in common if len({repr(t.params[p]) for t in complete}) > 1)
    if not varied:
        return _unavailable("no parameter shared by every completed trial took more than one value", len(complete))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage)
    # The first value is the objective (the median latency of a pareto study).
    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    try:
        values = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), params=varied, target=target)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return _unavailable(f"Optuna could not compute importances: {exc}", len(complete))
    return {
        "available": True,
        "reason": None,
        "evaluator": _EVALUATOR,
        "n_trials": len(complete),
        "importances": {k: float(v) for k, v in values.items()},
    }
