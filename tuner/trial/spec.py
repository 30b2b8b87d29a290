"""The versioned JSON that passes between the tuner and a trial worker.

The parent writes a ``TrialSpec`` to the worker's stdin and reads a ``TrialResult``
from a dedicated pipe fd (libraries print to stdout, so stdout is never the channel).
Both carry ``SPEC_VERSION``; a worker refuses a spec of another version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tuner.model import ModelRef
from tuner.vocabulary import TrialStatus

SPEC_VERSION = 1

# The statuses, by their old names (tuner.vocabulary.TrialStatus is the one list).
OK = TrialStatus.OK
UNSUPPORTED = TrialStatus.UNSUPPORTED
ERROR = TrialStatus.ERROR
CRASHED = TrialStatus.CRASHED
TIMEOUT = TrialStatus.TIMEOUT
INVALID = TrialStatus.INVALID
REJECTED = TrialStatus.REJECTED
INTERRUPTED = TrialStatus.INTERRUPTED
DUPLICATE = TrialStatus.DUPLICATE
SKIPPED = TrialStatus.SKIPPED
PRUNED = TrialStatus.PRUNED


@dataclass(frozen=True)
class Workload:
    seq_len: int
    batch: int = 1


@dataclass(frozen=True)
class MeasureSettings:
    """How long a trial warms up and measures (pyperf-style minimums)."""

    warmup_calls: int = 10
    warmup_seconds: float = 0.3
    min_calls: int = 30
    min_seconds: float = 1.0
    max_calls: int = 5000
    max_seconds: float = 10.0
    # Warm-up goes on until the median of the last window of calls is within
    # settle_tolerance of the window before (docs/measurement.md), up to max_warmup_seconds.
    settle_window: int = 10
    settle_tolerance: float = 0.05
    max_warmup_seconds: float = 5.0
    # The short first measurement that early stopping looks at.
    short_calls: int = 10
    short_seconds: float = 0.1
    # Stop after the short measurement when its median (ms) is above this (None: never).
    prune_above_ms: float | None = None


@dataclass
class TrialSpec:
    model: ModelRef
    workload: Workload
    config: dict[str, Any]  # flat: backend, precision, threads, binding, recipe keys...
    cache_dir: str
    eval_texts: list[str]
    reference_path: str | None = None  # .npz written by a "reference" run
    mode: str = "trial"  # "trial" or "reference"
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    # The CPU set the parent asked the binding for (None: unbound); the worker's
    # probe reports what it got, and the parent compares.
    expected_cpus: list[int] | None = None
    # A throughput trial runs `instances` workers side by side; this is one of them.
    instance: int = 0
    instances: int = 1
    version: int = SPEC_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrialSpec":
        data = json.loads(text)
        if data.get("version") != SPEC_VERSION:
            raise ValueError(f"trial spec version {data.get('version')} != {SPEC_VERSION}")
        data["model"] = ModelRef(**data["model"])
        data["workload"] = Workload(**data["workload"])
        data["measure"] = MeasureSettings(**data["measure"])
        return cls(**data)


@dataclass
class TrialResult:
    status: str
    reason: str | None = None
    samples_ms: list[float] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)  # median, p90, p99, mean, stdev, cv, n
    accuracy: dict[str, float] = field(default_factory=dict)
    effective: dict[str, Any] = field(default_factory=dict)  # probe: cpus, mems, threads, libs, env
    timings: dict[str, float] = field(default_factory=dict)  # import/prepare/load/warmup/measure seconds
    artifact: str | None = None  # cache key of the converted model used
    stderr_tail: str = ""
    # Stability flags of the timed run ("unstable", "outliers", "few-samples",
    # "not-settled", "noisy"), the load other processes put on the trial's CPUs while
    # it was timed, and the worker's peak resident memory after conversion.
    flags: list[str] = field(default_factory=list)
    noise: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    short_stats: dict[str, float] = field(default_factory=dict)  # the short first measurement
    version: int = SPEC_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrialResult":
        data = json.loads(text)
        data.pop("version", None)
        return cls(**data)
