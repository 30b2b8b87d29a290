"""Objectives: what a study minimises (latency percentiles), maximises (throughput),
or trades off (pareto: median latency down and throughput up at once, a front).
The names themselves are tuner.vocabulary's ``Objective``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol, TypeVar

from tuner.vocabulary import OBJECTIVES, Objective, TrialStatus

__all__ = [
    "OBJECTIVES",
    "best",
    "better",
    "direction",
    "directions",
    "space_objective",
    "throughput",
    "unit",
    "value_of",
]

Direction = Literal["minimize", "maximize"]


class Ranked(Protocol):
    """What ranking reads of a trial (a TrialRecord)."""

    @property
    def status(self) -> str: ...

    @property
    def value(self) -> float | None: ...


R = TypeVar("R", bound=Ranked)


def directions(objective: str) -> list[Direction]:
    """Optuna's direction per value: one for a single objective, two for pareto."""
    if objective == Objective.PARETO:
        return ["minimize", "maximize"]
    return [direction(objective)]


def direction(objective: str) -> Direction:
    if objective == Objective.PARETO:
        raise ValueError("pareto has two directions; use directions()")
    return "maximize" if objective == Objective.THROUGHPUT else "minimize"


def space_objective(objective: str) -> str:
    """The objective whose space a study searches. A pareto study searches the
    throughput space (instances x cores each): there every trial measures both its
    per-call latency under load and its aggregate throughput, so configurations
    really trade one for the other; with one instance per trial, throughput would
    only be the inverse of latency and the front a single point."""
    return Objective.THROUGHPUT.value if objective == Objective.PARETO else objective


def throughput(stats: dict[str, float], batch: int) -> float:
    """Inferences per second: the aggregate a multi-instance trial measured, else the
    inverse of one instance's median latency."""
    if stats.get("throughput"):
        return float(stats["throughput"])
    return 1000.0 * batch / stats["median"]


def value_of(objective: str, stats: dict[str, float], batch: int) -> float:
    """The (first) objective value of a measured trial's statistics."""
    if objective in (Objective.P50, Objective.PARETO):
        return stats["median"]
    if objective in (Objective.P90, Objective.P99):
        return stats[objective]
    if objective == Objective.THROUGHPUT:
        return throughput(stats, batch)
    raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")


def better(objective: str, a: float, b: float) -> bool:
    """True when value a beats value b (pareto: by its first value, the median)."""
    return a > b if objective == Objective.THROUGHPUT else a < b


def best(trials: Iterable[R], objective: str) -> R | None:
    """The feasible (``ok``) trial with the best value, the earliest of equals."""
    found: R | None = None
    found_value = 0.0
    for t in trials:
        value = t.value
        if (
            t.status == TrialStatus.OK
            and value is not None
            and (found is None or better(objective, value, found_value))
        ):
            found, found_value = t, value
    return found


def unit(objective: str) -> str:
    return "inf/s" if objective == Objective.THROUGHPUT else "ms"
