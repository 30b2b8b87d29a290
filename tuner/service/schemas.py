"""The JSON API's shapes (version 1), as pydantic models: the OpenAPI schema at
``/openapi.json`` is generated from them, and docs/api.md describes every field.

Field names are stable within ``/api/v1``: a field may be added, never renamed or
removed. Times are ISO 8601 in UTC; latencies are milliseconds; NaN is never sent
(the store keeps it as null).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(_Model):
    error: str = Field(description="what went wrong, in one line")
    status: int = Field(description="the HTTP status code")
    detail: list[dict[str, Any]] | None = Field(None, description="for 422: each invalid parameter")


class InfoOut(_Model):
    api_version: int
    tuner_version: str
    database: str = Field(description="the database served: a SQLite path, or the URL without its password")
    dialect: str = Field(description="sqlite or postgresql")
    read_only: bool = Field(description="always true: the service cannot write")
    this_machine: str | None = Field(description="fingerprint of the machine serving, when it has been detected")


class GpuOut(_Model):
    index: int | None = None
    name: str | None = None
    memory_mib: int | None = None
    driver: str | None = None
    compute_capability: str | None = None


class MachineOut(_Model):
    id: int
    fingerprint: str = Field(description="hardware + software fingerprint: one row per distinct value")
    hardware_fingerprint: str
    software_fingerprint: str
    hostname: str
    first_seen: datetime
    last_seen: datetime
    cpu_vendor: str | None
    cpu_model: str | None
    arch: str | None
    isa: list[str] = Field(description="the speed-deciding ISA extensions present (avx2, avx512f, amx_int8, ...)")
    sockets: int | None
    cores: int | None
    threads_per_core: int | None
    numa_nodes: int | None
    memory_bytes: int | None
    gpus: list[GpuOut]
    gpu_note: str | None
    libraries: dict[str, str | None] = Field(description="library versions: the software fingerprint's parts")
    stale: bool = Field(description="a newer row of the same hostname has another hardware or software fingerprint")
    stale_reason: str | None


class MachineDetailOut(MachineOut):
    info: dict[str, Any] = Field(description="everything `tuner detect --json` reported, as stored")


class ModelOut(_Model):
    id: int
    model_id: str = Field(description="the name the model was first tuned under")
    content_hash: str
    path: str
    task: str = Field(description="embedding or classification")
    created: datetime


class FinalistOut(_Model):
    trial: int | None = Field(None, description="trial number in the study")
    speedup: float | None = None
    low: float | None = Field(None, description="95% confidence interval, low end")
    high: float | None = None
    significant: bool | None = None
    runs: int | None = Field(None, description="fresh processes run for this finalist")
    config: dict[str, Any] | None = None


class LaunchInstanceOut(_Model):
    prefix: list[str]
    env: dict[str, str]


class LaunchOut(_Model):
    """What `tuner best --format json` prints as ``launch``: how to run the winner here."""

    prefix: list[str] = Field(description="binding command, e.g. [taskset, -c, 0]")
    env: dict[str, str]
    unset: list[str]
    notes: list[str]
    python: str | None = Field(description="interpreter of the backend's own environment; null: the tuner's")
    instances: list[LaunchInstanceOut]


class BestOut(_Model):
    machine_id: int
    fingerprint: str
    hostname: str
    model_pk: int
    model_id: str
    content_hash: str
    seq_len: int
    batch: int
    objective: str
    study_id: int
    trial_id: int
    trial_number: int
    config: dict[str, Any]
    metrics: dict[str, Any] = Field(description="median_ms, p90_ms, p99_ms, accuracy, decision, ... of the winner")
    default_median_ms: float | None = Field(description="the stock default's median in the finalists' re-runs")
    speedup: float | None
    speedup_ci95: list[float] | None = Field(description="[low, high] 95% confidence interval of the speedup")
    significant: bool | None = Field(description="the interval excludes 1")
    finalists: list[FinalistOut]
    updated: datetime
    stale: bool = Field(description="the machine's hardware or software fingerprint changed since")
    stale_reason: str | None
    launch: LaunchOut | None = Field(
        None, description="only from /api/v1/best, and only for the machine serving: planned here"
    )
    launch_note: str | None = Field(None, description="why launch is null")


class ResultOut(_Model):
    """A stored winner in brief, as the overview lists it (/api/v1/best has everything)."""

    machine_id: int
    model_pk: int
    model_id: str
    seq_len: int
    batch: int
    objective: str
    study_id: int
    trial_id: int
    trial_number: int
    backend: str | None
    precision: str | None
    median_ms: float | None = Field(description="the winner's median in the study")
    default_median_ms: float | None
    speedup: float | None
    speedup_ci95: list[float] | None
    significant: bool | None
    updated: datetime
    stale: bool
    stale_reason: str | None


class OverviewOut(_Model):
    machines: list[MachineOut]
    models: list[ModelOut]
    results: list[ResultOut]
    running: list[int] = Field(description="ids of the studies running now")


class StudyOut(_Model):
    id: int
    machine_id: int
    fingerprint: str
    hostname: str
    model_pk: int
    model_id: str
    content_hash: str
    seq_len: int
    batch: int
    objective: str
    space_hash: str
    optuna_study_name: str
    settings: dict[str, Any] = Field(description="the run's options: trials, budget, guard, strategy, default, ...")
    status: str = Field(description="running or done")
    created: datetime
    updated: datetime
    n_trials: int
    counts: dict[str, int] = Field(description="trials by status")
    pareto: list[int] | None = Field(description="trial numbers on the latency-throughput front; null: not kept")


class StudyPageOut(_Model):
    total: int
    limit: int
    offset: int
    items: list[StudyOut]


class TrialSummaryOut(_Model):
    id: int
    study_id: int
    number: int
    config: dict[str, Any]
    backend: str | None
    precision: str | None
    status: str
    reason: str | None
    value: float | None = Field(description="the objective's value (ms for latency objectives, inf/s for throughput)")
    median_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    cv: float | None = Field(description="coefficient of variation of the samples")
    n_samples: int | None
    accuracy: dict[str, Any] | None = Field(description="cosine_mean/cosine_min or label_agreement/max_logit_diff")
    accuracy_ok: bool | None
    flags: list[str] = Field(description="stability flags: unstable, outliers, few-samples, not-settled, noisy")
    peak_rss_mb: float | None
    throughput: float | None = Field(description="inferences per second")
    started_at: datetime | None
    finished_at: datetime | None


class TrialPageOut(_Model):
    total: int = Field(description="trials matching the filters")
    limit: int
    offset: int
    items: list[TrialSummaryOut]


class SettingOut(_Model):
    setting: str
    requested: Any = Field(description="what the configuration asked for; null: not asked")
    effective: Any = Field(description="what the worker's probe found the process really had")
    match: bool | None = Field(description="null where the two cannot be compared")


class TrialOut(TrialSummaryOut):
    stdev_ms: float | None
    samples_ms: list[float | None] = Field(description="every timed call, in order")
    effective: dict[str, Any] | None = Field(description="the probe's report: CPUs, memory policy, malloc, OpenMP, ...")
    settings: list[SettingOut] = Field(description="requested vs effective, side by side")
    timings: dict[str, Any] | None = Field(description="prepare_s, load_s, warmup_s, measure_s, worker_s, ...")
    artifact: str | None
    stderr_tail: str | None
    noise: dict[str, Any] | None = Field(description="noise checks before and during the trial")


class SeriesOut(_Model):
    """A study's trials as columns, for plots. At most ``max_points`` trials are sent:
    with more, an even stride of them plus every trial that improved the best so far."""

    total: int
    sampled: bool
    objective: str
    unit: str = Field(description="ms, or inf/s for throughput")
    direction: str = Field(description="minimize or maximize")
    number: list[int]
    status: list[str]
    value: list[float | None]
    median_ms: list[float | None]
    throughput: list[float | None]
    accuracy: list[float | None] = Field(description="cosine mean (embedding) or label agreement (classification)")
    accuracy_ok: list[bool | None]
    backend: list[str | None]
    precision: list[str | None]
    best_so_far: list[float | None] = Field(description="the best feasible value up to each trial")
    guard: float | None = Field(description="the accuracy guard the study used (same measure as accuracy)")
    accuracy_measure: str = Field(description="cosine_mean or label_agreement")


class ParetoOut(_Model):
    computed: bool = Field(description="false for a study stored before fronts were kept")
    trials: list[TrialSummaryOut]


class ImportanceOut(_Model):
    available: bool
    reason: str | None = Field(description="why there is no importance (too few trials, no Optuna study, ...)")
    evaluator: str | None
    n_trials: int = Field(description="completed Optuna trials the importance was computed from")
    importances: dict[str, float] = Field(description="parameter -> share of the objective's variance, sums to 1")


class ReplayOut(_Model):
    id: int
    study_id: int
    trial_id: int | None
    kind: str = Field(description="finalist, verify or grid")
    role: str = Field(description="default or candidate")
    round: int
    config: dict[str, Any]
    status: str
    reason: str | None
    median_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    n_samples: int | None
    samples_ms: list[float | None]
    throughput: float | None
    flags: list[str]
    noise: dict[str, Any] | None
    created: datetime


class BackendBestOut(_Model):
    backend: str | None
    precision: str | None
    trial_number: int
    value: float | None
    median_ms: float | None
    throughput: float | None
    trials: int = Field(description="ok trials of this backend and precision")


class DifferenceOut(_Model):
    key: str
    a: Any
    b: Any
    same: bool


class CompareSideOut(_Model):
    label: str
    machine: MachineOut
    study: StudyOut | None = Field(description="for a comparison of studies")
    winners: list[BestOut]
    backends: list[BackendBestOut] = Field(description="for a comparison of studies: the best trial per backend")


class CompareRowOut(_Model):
    """One workload both sides may have a winner for (machines), or the two studies' winners."""

    model_id: str
    seq_len: int
    batch: int
    objective: str
    a: BestOut | None
    b: BestOut | None
    config: list[DifferenceOut] = Field(description="the winners' settings, differing ones first")


class CompareOut(_Model):
    kind: str = Field(description="studies or machines")
    a: CompareSideOut
    b: CompareSideOut
    machine: list[DifferenceOut] = Field(description="the machines' facts: CPU, ISA, cores, memory, libraries")
    rows: list[CompareRowOut]
