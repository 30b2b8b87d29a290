"""Which proposals start a process, and what a study queues (docs/search.md): its
first configurations, dominated backends skipped, the local search's next neighbour of
the best configurations, and a random unmeasured configuration for a converged sampler."""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.search import objective as objectives
from tuner.search._judge import MEASURED
from tuner.search.strategy import Measured, next_local, warm_start
from tuner.store import TrialRecord
from tuner.trial import spec as S
from tuner.vocabulary import (
    DEFAULT_OBJECTIVE,
    DEFAULT_SKIP_DOMINATED,
    DEFAULT_STRATEGY,
    LATENCY_OBJECTIVES,
    Objective,
    Strategy,
    config_key,
)

if TYPE_CHECKING:
    import optuna

    from tuner.space import Space

# After this many proposals in a row that start no process (duplicates, skipped
# backends), a random unmeasured configuration is queued (SearchPolicy.enqueue_unexplored).
EXPLORE_AFTER = 3
# Structured search: a backend this much slower than the best is not run again when
# its trials also cost this many times a typical trial (see SearchPolicy.dominated).
EXPENSIVE_SLOWDOWN = 1.5
EXPENSIVE_COST = 4.0

# The study's measured configurations: config_key -> its trial (a TrialRecord, or
# anything with its status, config, value, median and times).
Measurements = Mapping[str, Any]


@dataclass(frozen=True)
class SearchPolicy:
    space: Space | None = None  # what enqueue_* draws from (None: only dominated() is asked)
    objective: str = DEFAULT_OBJECTIVE
    strategy: str = DEFAULT_STRATEGY
    skip_dominated: float = DEFAULT_SKIP_DOMINATED

    def first(self, seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The study's first configurations: the stock default (every speedup is over
        it; structured search: then the warm start), then ``seeds`` not among them."""
        first = warm_start(self._space) if self.strategy == Strategy.STRUCTURED else [self._space.default_config()]
        return first + [c for c in seeds if c not in first]

    def enqueue_first(self, study: optuna.Study, first: list[dict[str, Any]]) -> None:
        """Queue ``first`` in a new study; the rest of them, when a run was stopped while
        it queued them (nothing once a trial was asked for)."""
        from optuna.trial import TrialState

        queued = study.get_trials(deepcopy=False)
        if len(queued) < len(first) and all(t.state == TrialState.WAITING for t in queued):
            for config in first[len(queued) :]:
                study.enqueue_trial(self._space.params_for(config))

    def dominated(
        self, config: Mapping[str, Any], measured: Measurements, warm_start_size: int
    ) -> tuple[str, float] | None:
        """(why, the backend's best median) when ``config``'s backend is not worth a
        process. Backends differ by several times, the knobs a search tunes within one
        by far less (threads: up to the core count), so once the warm start has
        measured every backend, a backend whose every trial took ``skip_dominated``
        times the best feasible median cannot catch up; nor can one EXPENSIVE_SLOWDOWN
        times slower whose trials cost EXPENSIVE_COST times a typical trial (a
        torch.compile trial compiles for a minute): the budget goes where it can pay."""
        if (
            self.strategy != Strategy.STRUCTURED
            or not self.skip_dominated
            or self.objective not in LATENCY_OBJECTIVES
            or len(measured) < warm_start_size
        ):
            return None
        timed = [r for r in measured.values() if r.status in MEASURED and r.median_ms]
        feasible = [r.median_ms for r in timed if r.status == S.OK]
        own = [r for r in timed if r.config.get("backend") == config["backend"]]
        if not feasible or not own:
            return None
        best, fastest_own = min(feasible), min(r.median_ms for r in own)
        slowdown = fastest_own / best
        cost = statistics.mean(_wall_s(r) for r in own) / max(statistics.median(_wall_s(r) for r in timed), 1e-3)
        if slowdown >= self.skip_dominated:
            because = f"skipped from {self.skip_dominated:g}x"
        elif slowdown >= EXPENSIVE_SLOWDOWN and cost >= EXPENSIVE_COST:
            because = f"and its trials cost {cost:.0f}x a typical one"
        else:
            return None
        why = (
            f"not run: every {config['backend']} trial so far took at least {slowdown:.1f}x the best median "
            f"({fastest_own:.2f} vs {best:.2f} ms; {because})"
        )
        return why, fastest_own

    def worth_running(self, measured: Measurements, warm_start_size: int) -> list[str]:
        """The backends not dominated by what is measured so far."""
        return [b for b in self._space.backends if self.dominated({"backend": b}, measured, warm_start_size) is None]

    def enqueue_local(self, study: optuna.Study, measured: Measurements) -> None:
        """Structured search after the warm start: queue the local search's next
        configuration (tuner.search.strategy.next_local) unless one is queued already;
        when it has none left, TPE proposes."""
        from optuna.trial import TrialState

        if self.objective == Objective.PARETO or study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        worth = self.worth_running(measured, 0)
        feasible = [
            r for r in measured.values() if r.status == S.OK and r.value is not None and r.config["backend"] in worth
        ]
        feasible.sort(key=lambda r: r.value, reverse=objectives.direction(self.objective) == "maximize")
        done = [as_measured(r) for r in measured.values()]
        config = next_local(
            self._space,
            [(r.config, r.value) for r in feasible],
            done,
            lambda a, b: objectives.better(self.objective, a, b),
        )
        if config is not None:
            study.enqueue_trial(self._space.params_for(config))

    def enqueue_unexplored(
        self, study: optuna.Study, measured: Measurements, warm_start_size: int, rng: random.Random
    ) -> None:
        """Queue a random configuration not measured yet (of a backend still worth
        running): a sampler that keeps proposing what it has measured has converged
        on its model of the space, and without this the study would stop there, with
        budget left and points unseen."""
        backends = self.worth_running(measured, warm_start_size)
        for _ in range(200):
            config = self._space.random_config(rng, backends or None)
            if config_key(config) not in measured:
                study.enqueue_trial(self._space.params_for(config))
                return

    @property
    def _space(self) -> Space:
        if self.space is None:
            raise ValueError("this SearchPolicy has no space to draw configurations from")
        return self.space


def as_measured(row: TrialRecord) -> Measured:
    """A trial as the local search sees it: "rejected" only below the accuracy guard
    (a configuration over --max-memory is as good as failed), the accuracy figures
    as the signature of what it computed."""
    status = "over_memory" if row.status == S.REJECTED and row.accuracy_ok else row.status
    numerics = (
        tuple(sorted((k, round(v, 6)) for k, v in row.accuracy.items() if isinstance(v, (int, float))))
        if row.accuracy and row.status in (S.OK, S.REJECTED)
        else None
    )
    return Measured(row.config, status, row.value if status in (S.OK, S.REJECTED) else None, numerics)


def _wall_s(row: TrialRecord) -> float:
    if row.started_at is None or row.finished_at is None:
        return 0.0
    return (row.finished_at - row.started_at).total_seconds()
