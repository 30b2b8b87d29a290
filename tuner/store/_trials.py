"""The records of studies and trials: what ``Store`` hands back for them
(``StudyRecord``, ``TrialRecord``) and what it writes (``NewTrial``).

Apart from ``_records`` because building these dataclasses (some 70 fields) costs
start-up time that `tuner best`, which reads none of them, should not pay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.trial.spec import TrialResult


@dataclass(frozen=True)
class StudyRecord:
    id: int
    machine_id: int
    fingerprint: str  # the machine's, joined in so a listing needs no second query
    model_pk: int
    model_id: str
    content_hash: str
    seq_len: int
    batch: int
    objective: str
    space_hash: str
    optuna_study_name: str
    settings: dict[str, Any]
    status: str
    created: datetime
    updated: datetime
    n_trials: int
    pareto: list[int] | None = None  # trial numbers on the latency-throughput front


@dataclass(frozen=True)
class TrialRecord:
    id: int
    study_id: int
    number: int
    config: dict[str, Any]
    status: str
    reason: str | None
    value: float | None
    median_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    stdev_ms: float | None
    cv: float | None
    n_samples: int | None
    samples_ms: list[float]
    accuracy: dict[str, Any] | None
    accuracy_ok: bool | None
    effective: dict[str, Any] | None
    timings: dict[str, Any] | None
    artifact: str | None
    stderr_tail: str | None
    started_at: datetime | None
    finished_at: datetime | None
    flags: list[str] | None = None  # stability flags: unstable, outliers, few-samples, not-settled, noisy
    noise: dict[str, Any] | None = None  # noise checks: before the trial, during its timing, attempts
    peak_rss_mb: float | None = None
    throughput: float | None = None  # inferences per second


@dataclass(frozen=True)
class NewTrial:
    """One trial as ``Store.record_trial`` writes it: which study and Optuna trial
    number, the configuration, its status and what was measured.

    ``NewTrial.measured`` builds one from a worker's result; the parent then decides
    what the worker cannot (``value``, ``accuracy_ok``, the times) and may override
    the status with its own verdict (invalid, rejected): ``dataclasses.replace``.
    """

    study_id: int
    number: int
    config: Mapping[str, Any]
    status: str
    reason: str | None = None
    value: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    stdev_ms: float | None = None
    cv: float | None = None
    n_samples: int | None = None
    samples_ms: Sequence[float] = ()
    accuracy: Mapping[str, Any] | None = None
    accuracy_ok: bool | None = None
    effective: Mapping[str, Any] | None = None
    timings: Mapping[str, Any] | None = None
    artifact: str | None = None
    stderr_tail: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    flags: Sequence[str] | None = None  # stability flags: unstable, outliers, few-samples, not-settled, noisy
    noise: Mapping[str, Any] | None = None  # noise checks: before the trial, during its timing, attempts
    peak_rss_mb: float | None = None
    throughput: float | None = None  # inferences per second

    @classmethod
    def measured(
        cls,
        study_id: int,
        number: int,
        config: Mapping[str, Any],
        result: "TrialResult",
        *,
        value: float | None = None,
        accuracy_ok: bool | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> "NewTrial":
        """What a worker measured (its status and reason included), as a trial to record."""
        stats = result.stats
        n = stats.get("n")
        return cls(
            study_id,
            number,
            config,
            result.status,
            reason=result.reason,
            value=value,
            median_ms=stats.get("median"),
            p90_ms=stats.get("p90"),
            p99_ms=stats.get("p99"),
            mean_ms=stats.get("mean"),
            stdev_ms=stats.get("stdev"),
            cv=stats.get("cv"),
            n_samples=int(n) if n is not None else None,
            samples_ms=list(result.samples_ms),
            accuracy=dict(result.accuracy) or None,
            accuracy_ok=accuracy_ok,
            effective=dict(result.effective) or None,
            timings=dict(result.timings) or None,
            artifact=result.artifact,
            stderr_tail=result.stderr_tail,
            started_at=started_at,
            finished_at=finished_at,
            flags=list(result.flags) or None,
            noise=dict(result.noise) or None,
            peak_rss_mb=result.peak_rss_mb,
            throughput=stats.get("throughput"),
        )
