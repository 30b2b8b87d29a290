"""The tuner's words: enumerations, defaults and the helpers every layer shares.

This module imports nothing of the tuner's and nothing heavy, so the CLI can read
its choices and defaults without importing the search, and every package can use
it without an import cycle (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any


class Objective(StrEnum):
    """What a study optimises: a latency percentile (minimised), throughput
    (maximised), or pareto (median latency down and throughput up at once)."""

    P50 = "p50"
    P90 = "p90"
    P99 = "p99"
    THROUGHPUT = "throughput"
    PARETO = "pareto"


class Strategy(StrEnum):
    """How a study proposes configurations (docs/search.md)."""

    STRUCTURED = "structured"
    TPE = "tpe"
    RANDOM = "random"


class Task(StrEnum):
    """What a model's outputs are, and so how its accuracy is judged."""

    EMBEDDING = "embedding"  # an encoder's states, pooled (mean, CLS, ...: ModelRef.pooling)
    CLASSIFICATION = "classification"  # a sequence classifier's logits
    TOKEN_CLASSIFICATION = "token_classification"  # logits per token (NER, POS tagging)


class TrialStatus(StrEnum):
    """A trial's outcome as stored. The worker itself reports ok, unsupported or
    error; the parent assigns the rest."""

    OK = "ok"
    UNSUPPORTED = "unsupported"  # the backend cannot run this configuration
    ERROR = "error"  # an exception inside the worker
    CRASHED = "crashed"  # exited or was killed by a signal without a result
    TIMEOUT = "timeout"
    INVALID = "invalid"  # effective settings differ from the requested ones
    REJECTED = "rejected"  # measured, but below the accuracy guard
    INTERRUPTED = "interrupted"  # the tuner itself died during the trial
    DUPLICATE = "duplicate"  # same configuration as an earlier trial; result reused
    SKIPPED = "skipped"  # not run: its backend is far slower than the best so far (structured search)
    PRUNED = "pruned"  # stopped after its short first measurement: clearly slower than the best so far


OBJECTIVES: tuple[str, ...] = tuple(o.value for o in Objective)
# The objectives with one value per trial, which have a single best configuration.
SINGLE_OBJECTIVES: tuple[str, ...] = tuple(o.value for o in Objective if o is not Objective.PARETO)
# The objectives that rank by a latency percentile (minimised).
LATENCY_OBJECTIVES: tuple[str, ...] = (Objective.P50.value, Objective.P90.value, Objective.P99.value)
STRATEGIES: tuple[str, ...] = tuple(s.value for s in Strategy)
TASKS: tuple[str, ...] = tuple(t.value for t in Task)
TRIAL_STATUSES: tuple[str, ...] = tuple(t.value for t in TrialStatus)

DEFAULT_OBJECTIVE = Objective.P50
DEFAULT_STRATEGY = Strategy.STRUCTURED
# Finalists re-measured at the end of a study, each (and the stock default) in this
# many fresh processes, interleaved: 5 per side gives 93% coverage of a nominal 95%
# interval on a noisy 2-vCPU host (benchmarks/ci_coverage.py, docs/measurement.md).
DEFAULT_FINALISTS = 3
DEFAULT_FINALIST_ROUNDS = 5
# Fewer processes per side than this give no usable interval.
MIN_FINALIST_ROUNDS = 3
# While finalists the leader's interval cannot be told apart from are left, each of
# them (and the leader) gets another fresh process, up to this many; past it the
# outcome is "not separable on this host" (docs/measurement.md).
DEFAULT_FINALIST_MAX_ROUNDS = 12
# Racing (docs/search.md): after every this many measured trials, each of the
# RACE_TOP leading configurations with fewer than RACE_PROCESSES fresh processes gets
# one more, and the search ranks by the median of their per-process figures (0: off).
DEFAULT_RACE_EVERY = 5
RACE_TOP = 3
RACE_PROCESSES = 3
# Finalists: beside the best K, the best of every backend/precision family within
# this factor of the best figure, at most K more.
FAMILY_MARGIN = 1.5
# Early stopping: a trial whose short first median is this fraction above the best
# so far is "clearly slower" and stopped (docs/search.md).
DEFAULT_PRUNE_MARGIN = 0.5
# Measured trials per sequence length when neither --trials nor --budget is given.
DEFAULT_TRIALS = 30
# Structured search: a backend whose every trial took this many times the best median
# is not run again (0: run every proposal; docs/search.md).
DEFAULT_SKIP_DOMINATED = 3.0
# A run timed while other processes used its CPUs is run again up to this many times;
# before a run, a busy machine is given this many seconds to calm down.
DEFAULT_NOISE_RETRIES = 1
DEFAULT_NOISE_WAIT_S = 3.0
# The stock default every speedup is measured against: PyTorch eager, fp32.
DEFAULT_BACKEND = "torch"
# How a missing library's version is written where a version is expected.
ABSENT = "absent"


def config_key(config: dict[str, Any]) -> str:
    """A configuration as a string that is equal exactly when the configurations are."""
    return json.dumps(config, sort_keys=True)


def describe_config(config: dict[str, Any]) -> str:
    """A one-line, human summary of a configuration."""
    head = f"{config.get('backend')} {config.get('precision', '')}".strip()
    rest = [f"{k}={v}" for k, v in config.items() if k not in ("backend", "precision")]
    return f"{head} ({', '.join(rest)})" if rest else head


def version_or_absent(version: str | None) -> str:
    """A version as stored and shown: the version, or ``absent``."""
    return version if version is not None else ABSENT
