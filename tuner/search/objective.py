"""Objectives: what a study minimises (latency percentiles), maximises (throughput),
or trades off (pareto: median latency down and throughput up at once, a front)."""

from __future__ import annotations

from tuner.vocabulary import OBJECTIVES

__all__ = ["OBJECTIVES", "better", "direction", "directions", "throughput", "unit", "value_of"]


def directions(objective: str) -> list[str]:
    """Optuna's direction per value: one for a single objective, two for pareto."""
    if objective == "pareto":
        return ["minimize", "maximize"]
    return [direction(objective)]


def direction(objective: str) -> str:
    if objective == "pareto":
        raise ValueError("pareto has two directions; use directions()")
    return "maximize" if objective == "throughput" else "minimize"


def throughput(stats: dict[str, float], batch: int) -> float:
    """Inferences per second: the aggregate a multi-instance trial measured, else the
    inverse of one instance's median latency."""
    if stats.get("throughput"):
        return float(stats["throughput"])
    return 1000.0 * batch / stats["median"]


def value_of(objective: str, stats: dict[str, float], batch: int) -> float:
    """The (first) objective value of a measured trial's statistics."""
    if objective in ("p50", "pareto"):
        return stats["median"]
    if objective in ("p90", "p99"):
        return stats[objective]
    if objective == "throughput":
        return throughput(stats, batch)
    raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")



def better(objective: str, a: float, b: float) -> bool:
    """True when value a beats value b (pareto: by its first value, the median)."""
    return a > b if objective == "throughput" else a < b


def unit(objective: str) -> str:
    return "inf/s" if objective == "throughput" else "ms"
