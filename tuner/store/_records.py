"""What the store hands back: plain frozen dataclasses, detached from any session.

Callers never see ORM objects, so a record can be kept after the store is closed,
passed to another thread or printed without a lazy load hitting a closed session.
This module imports nothing heavy: ``import tuner.store`` stays cheap. The records of
studies and trials are in ``_trials`` (their classes cost `tuner best`'s start-up
time, and it reads none).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

# Why a configuration was re-measured in a fresh process of its own: as a finalist of
# a study, by `tuner verify`, as a further pass over a benchmark's grid
# (benchmarks/search_efficiency.py), or as a leader raced during the search
# (tuner/search/racing.py); and whether that run was the stock default or the candidate.
REPLAY_KINDS: tuple[str, ...] = ("finalist", "verify", "grid", "race")
REPLAY_ROLES: tuple[str, ...] = ("default", "candidate")
STUDY_STATUSES: tuple[str, ...] = ("running", "done")


@dataclass(frozen=True)
class MachineRecord:
    id: int
    fingerprint: str
    hardware_fingerprint: str
    software_fingerprint: str
    hostname: str
    info: dict[str, Any]
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class ModelRecord:
    id: int
    model_id: str
    content_hash: str
    path: str
    task: str
    created: datetime


@dataclass(frozen=True)
class BestRecord:
    machine_id: int
    fingerprint: str
    model_pk: int
    model_id: str
    content_hash: str
    seq_len: int
    batch: int
    objective: str
    trial_id: int
    config: dict[str, Any]
    metrics: dict[str, Any]
    default_median_ms: float | None
    speedup: float | None
    updated: datetime
    speedup_low: float | None = None  # 95% confidence interval of the speedup
    speedup_high: float | None = None
    significant: bool | None = None  # the interval excludes 1
    finalists: list[dict[str, Any]] | None = None  # each finalist's re-measured speedup and interval


def from_row(cls: type, row: Any, **given: Any) -> Any:
    """A record dataclass from a row with attributes of the same names (the ORM's or a
    query's), the fields in ``given`` (joined-in identity, decoded values) taken from there."""
    return cls(**{f.name: given[f.name] if f.name in given else getattr(row, f.name) for f in fields(cls)})


def best_record(row: Any, fingerprint: str, model_id: str, content_hash: str) -> BestRecord:
    """A BestRecord from a tuner_best row and its machine's and model's identity, for
    the store and its fleet queries alike."""
    record: BestRecord = from_row(
        BestRecord, row, fingerprint=fingerprint, model_id=model_id, content_hash=content_hash
    )
    return record


@dataclass(frozen=True)
class ReplayRecord:
    """One fresh-process re-measurement of a configuration (a finalist round, a verify round)."""

    id: int
    study_id: int
    trial_id: int | None  # the trial whose configuration this is, when there is one
    kind: str  # "finalist", "verify", "grid" or "race"
    role: str  # "default" or "candidate"
    round: int
    config: dict[str, Any]
    status: str
    reason: str | None
    median_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    n_samples: int | None
    samples_ms: list[float]
    throughput: float | None
    flags: list[str] | None
    noise: dict[str, Any] | None
    created: datetime
