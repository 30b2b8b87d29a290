"""Objectives: what a study minimises (latency percentiles) or maximises (throughput)."""

from __future__ import annotations

OBJECTIVES = ("p50", "p90", "p99", "throughput")


def direction(objective: str) -> str:
    return "maximize" if objective == "throughput" else "minimize"


def value_of(objective: str, stats: dict[str, float], batch: int) -> float:
    """The objective value of a measured trial's statistics."""
    if objective == "p50":
        return stats["median"]
    if objective in ("p90", "p99"):
        return stats[objective]
    if objective == "throughput":
        return 1000.0 * batch / stats["median"]  # inferences per second of one instance
    raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")


def better(objective: str, a: float, b: float) -> bool:
    """True when value a beats value b."""
    return a > b if objective == "throughput" else a < b


def unit(objective: str) -> str:
    return "inf/s" if objective == "throughput" else "ms"
