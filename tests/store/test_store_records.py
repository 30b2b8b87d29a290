"""The repository API: upserts, studies, trials, best, and the records it returns."""

from __future__ import annotations

import dataclasses
import math
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tuner.store import (
    DuplicateTrialError,
    NewTrial,
    Store,
    StudyRecord,
    TrialRecord,
)
from tuner.trial.spec import TrialResult

if TYPE_CHECKING:
    from tests.store.conftest import Seeded


def test_upsert_machine_refreshes_a_known_fingerprint(store: Store) -> None:
    first = store.upsert_machine({"cores": 2}, "fp", "hw", "sw-1", "host-1")
    again = store.upsert_machine({"cores": 4}, "fp", "hw", "sw-2", "host-2")
    other = store.upsert_machine({"cores": 8}, "fp-other", "hw", "sw-1", "host-3")
    assert first == again != other
    (machine, _) = store.machines()
    assert (machine.info, machine.software_fingerprint, machine.hostname) == ({"cores": 4}, "sw-2", "host-2")
    assert machine.first_seen < machine.last_seen
    assert machine.last_seen.tzinfo == timezone.utc


def test_upsert_model_keeps_its_first_name_and_takes_the_latest_path(store: Store) -> None:
    first = store.upsert_model("org/minilm", "h1", "/cache/a", "embedding")
    again = store.upsert_model("./minilm", "h1", "/home/me/minilm", "embedding")
    other = store.upsert_model("org/minilm", "h2", "/cache/b", "embedding")
    assert first == again != other
    by_hash = {m.content_hash: m for m in store.models()}
    assert (by_hash["h1"].model_id, by_hash["h1"].path) == ("org/minilm", "/home/me/minilm")


def test_get_or_create_study_resumes_an_existing_study(seeded: Seeded) -> None:
    store, study = seeded.store, seeded.study
    assert (study.status, study.n_trials, study.fingerprint, study.model_id) == ("running", 0, "fp-a", "minilm")
    store.set_study_status(study.id, "done")
    again = store.get_or_create_study(
        seeded.machine_id, seeded.model_pk, 16, 1, "p50", "space-1", "study-seq16", {"trials": 9}
    )
    assert again.id == study.id
    assert (again.status, again.settings, again.created) == ("running", {"trials": 9}, study.created)
    assert again.updated > study.updated


def test_get_or_create_study_refuses_a_name_of_another_workload(seeded: Seeded) -> None:
    with pytest.raises(ValueError, match="already exists"):
        seeded.store.get_or_create_study(
            seeded.machine_id, seeded.model_pk, 128, 1, "p50", "space-1", "study-seq16", {}
        )


def test_study_arguments_are_checked(seeded: Seeded) -> None:
    store = seeded.store
    with pytest.raises(KeyError, match="machine"):
        store.get_or_create_study(999, seeded.model_pk, 16, 1, "p50", "s", "new", {})
    with pytest.raises(ValueError, match="objective"):
        store.get_or_create_study(seeded.machine_id, seeded.model_pk, 16, 1, "p95", "s", "new", {})
    with pytest.raises(ValueError, match="study status"):
        store.set_study_status(seeded.study.id, "paused")
    with pytest.raises(KeyError):
        store.set_study_status(999, "done")
    assert [s.optuna_study_name for s in store.studies()] == ["study-seq16"]


def test_studies_filter_by_machine_and_by_model_name_or_hash(seeded: Seeded) -> None:
    store = seeded.store
    other_machine = store.upsert_machine({}, "fp-b", "hw-b", "sw-b", "host-b")
    other_model = store.upsert_model("bert", "hash-bert", "/models/bert", "classification")
    store.get_or_create_study(other_machine, seeded.model_pk, 16, 1, "p50", "s", "b-minilm", {})
    store.get_or_create_study(seeded.machine_id, other_model, 16, 1, "p99", "s", "a-bert", {})
    store.record_trial(NewTrial(seeded.study.id, 0, config={}, status="ok"))

    def names(**kw: str) -> list[str]:
        return [s.optuna_study_name for s in store.studies(**kw)]

    assert names() == ["study-seq16", "b-minilm", "a-bert"]
    assert names(fingerprint="fp-a") == ["study-seq16", "a-bert"]
    assert names(model="minilm") == names(model="hash-minilm") == ["study-seq16", "b-minilm"]
    assert names(fingerprint="fp-a", model="bert") == ["a-bert"]
    assert names(fingerprint="nowhere") == []
    assert [s.n_trials for s in store.studies()] == [1, 0, 0]


def test_a_trial_round_trips_every_field(seeded: Seeded) -> None:
    store, study = seeded.store, seeded.study
    started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    fields: dict[str, Any] = dict(
        config={"backend": "onnxruntime", "precision": "int8", "threads": 2, "reduce_range": False},
        status="rejected", reason="below the accuracy guard: cosine 0.93 < 0.99", value=1.25,
        median_ms=1.25, p90_ms=1.5, p99_ms=2.0, mean_ms=1.3, stdev_ms=0.1, cv=0.077, n_samples=4,
        samples_ms=[1.2, 1.25, 1.3, 2.0], accuracy={"cosine_min": 0.93}, accuracy_ok=False,
        effective={"cpus": [0, 1], "libs": ["libgomp"]}, timings={"load": 0.5}, artifact="ort-int8-abc",
        stderr_tail="warning: something", started_at=started, finished_at=started + timedelta(seconds=3),
    )
    trial_id = store.record_trial(NewTrial(study.id, 7, **fields))
    (record,) = store.trials(study.id)
    assert record == TrialRecord(id=trial_id, study_id=study.id, number=7, **fields)
    assert record.started_at is not None and record.started_at.tzinfo == timezone.utc
    assert store.trial(study.id, 7) == record and store.trial(study.id, 8) is None


def test_naive_times_are_local_and_non_finite_floats_become_null(seeded: Seeded) -> None:
    store, study = seeded.store, seeded.study
    naive = datetime(2026, 5, 6, 7, 8, 9)  # what Optuna's datetime_start is
    store.record_trial(NewTrial(
        study.id, 0, config={"threads": np.int64(2)}, status="error", value=math.nan, cv=math.inf,
        samples_ms=[1.0, math.nan], accuracy={"cosine": np.float32(0.5), "bad": math.nan}, started_at=naive,
    ))
    record = store.trial(study.id, 0)
    assert record is not None
    assert record.started_at == naive.astimezone(timezone.utc)
    assert (record.value, record.cv, record.samples_ms) == (None, None, [1.0, None])
    assert record.accuracy == {"cosine": 0.5, "bad": None} and record.config == {"threads": 2}
    assert (record.accuracy_ok, record.effective, record.stderr_tail) == (None, None, None)


def test_trials_are_ordered_by_number_and_never_written_twice(seeded: Seeded) -> None:
    store, study = seeded.store, seeded.study
    for number in (2, 0, 1):
        store.record_trial(NewTrial(study.id, number, config={"n": number}, status="ok", value=float(number)))
    with pytest.raises(DuplicateTrialError, match=f"trial 1 of study {study.id}"):
        store.record_trial(NewTrial(study.id, 1, config={"n": "again"}, status="crashed"))
    assert [(t.number, t.config["n"], t.status) for t in store.trials(study.id)] == [
        (0, 0, "ok"), (1, 1, "ok"), (2, 2, "ok"),
    ]
    assert store.has_trial(study.id, 2) and not store.has_trial(study.id, 3)
    assert store.trials(999) == []


def test_trial_arguments_are_checked(seeded: Seeded) -> None:
    with pytest.raises(KeyError, match="study"):
        seeded.store.record_trial(NewTrial(999, 0, config={}, status="ok"))
    with pytest.raises(ValueError, match="trial status"):
        seeded.store.record_trial(NewTrial(seeded.study.id, 0, config={}, status="fine"))
    with pytest.raises(TypeError):
        seeded.store.record_trial(NewTrial(seeded.study.id, 0, config={}, status="ok", colour="red"))  # type: ignore[call-arg]
    assert seeded.store.trials(seeded.study.id) == []


def trial_fields(result: TrialResult) -> dict[str, Any]:
    """What ``NewTrial.measured`` takes from a worker's result, by field name."""
    return vars(NewTrial.measured(0, 0, {}, result))


def test_trial_fields_map_a_worker_result() -> None:
    result = TrialResult(
        status="ok", samples_ms=[1.0, 2.0], stats={"median": 1.5, "p90": 1.9, "p99": 2.0, "mean": 1.5,
                                                     "stdev": 0.7, "cv": 0.47, "n": 2.0},
        accuracy={"cosine_min": 0.999}, effective={"threads": 2}, timings={"measure": 1.0}, artifact="key",
    )
    fields = trial_fields(result)
    assert fields["median_ms"] == 1.5 and fields["n_samples"] == 2 and isinstance(fields["n_samples"], int)
    assert fields["samples_ms"] == [1.0, 2.0] and fields["accuracy"] == {"cosine_min": 0.999}
    failed = trial_fields(TrialResult(status="crashed", reason="signal 9", stderr_tail="Killed"))
    assert (failed["median_ms"], failed["n_samples"], failed["accuracy"]) == (None, None, None)


def test_trial_fields_feed_record_trial(seeded: Seeded) -> None:
    result = TrialResult(status="ok", samples_ms=[1.0], stats={"median": 1.0, "n": 1})
    measured = NewTrial.measured(seeded.study.id, 0, {"threads": 2}, result)
    seeded.store.record_trial(dataclasses.replace(measured, status="invalid", reason="threads 1 != 2"))
    record = seeded.store.trial(seeded.study.id, 0)
    assert record is not None and (record.status, record.median_ms) == ("invalid", 1.0)


def _two_studies(seeded: Seeded) -> tuple[int, int]:
    """Trial ids of the winner at seq 16 and at seq 128."""
    store = seeded.store
    seq128 = store.get_or_create_study(seeded.machine_id, seeded.model_pk, 128, 1, "p50", "space-1", "study-seq128", {})
    fast16 = store.record_trial(NewTrial(seeded.study.id, 0, config={"backend": "onnxruntime"}, status="ok", value=1.0))
    fast128 = store.record_trial(NewTrial(seq128.id, 0, config={"backend": "torch"}, status="ok", value=7.0))
    return fast16, fast128


def test_set_best_upserts_and_best_finds_it(seeded: Seeded) -> None:
    store, m, p = seeded.store, seeded.machine_id, seeded.model_pk
    fast16, fast128 = _two_studies(seeded)
    store.set_best(m, p, 128, 1, "p50", fast128, {"backend": "torch"}, {"median_ms": 7.0}, 20.8, 2.97)
    store.set_best(m, p, 16, 1, "p50", fast16, {"backend": "onnxruntime"}, {"median_ms": 1.0}, 5.4, math.inf)
    better16 = store.record_trial(NewTrial(seeded.study.id, 1, config={"backend": "openvino"}, status="ok", value=0.9))
    store.set_best(m, p, 16, 1, "p50", better16, {"backend": "openvino"}, {"median_ms": 0.9}, 5.4, 6.0)

    every = store.best("fp-a", "minilm")
    assert [(b.seq_len, b.trial_id, b.config["backend"]) for b in every] == [
        (16, better16, "openvino"), (128, fast128, "torch"),
    ]
    assert every[0].speedup == 6.0 and every[0].default_median_ms == 5.4 and every[0].content_hash == "hash-minilm"
    assert store.best("fp-a", "hash-minilm", seq_len=128) == [every[1]]
    assert store.best("fp-a", "minilm", seq_len=64) == []
    assert store.best("fp-a", "minilm", batch=8) == []
    assert store.best("fp-a", "minilm", objective="p99") == []
    assert store.best("fp-other", "minilm") == []


def test_set_best_checks_the_trial(seeded: Seeded) -> None:
    store, m, p = seeded.store, seeded.machine_id, seeded.model_pk
    fast16, _ = _two_studies(seeded)
    with pytest.raises(KeyError, match="trial"):
        store.set_best(m, p, 16, 1, "p50", 999, {}, {}, None, None)
    with pytest.raises(ValueError, match="measured for"):
        store.set_best(m, p, 128, 1, "p50", fast16, {}, {}, None, None)
    assert store.best("fp-a", "minilm") == []


def test_records_are_frozen_and_outlive_the_store(seeded: Seeded) -> None:
    seeded.store.record_trial(NewTrial(seeded.study.id, 0, config={"a": 1}, status="ok"))
    (study,) = seeded.store.studies()
    (trial,) = seeded.store.trials(study.id)
    seeded.store.close()
    assert isinstance(study, StudyRecord) and study.settings == {"trials": 5} and trial.config == {"a": 1}
    with pytest.raises(dataclasses.FrozenInstanceError):
        trial.status = "error"  # type: ignore[misc]
    with pytest.raises(RuntimeError, match="closed"):
        seeded.store.trials(study.id)


def test_threads_can_share_a_store(seeded: Seeded) -> None:
    errors: list[BaseException] = []

    def write(first: int) -> None:
        try:
            for number in range(first, first + 10):
                seeded.store.record_trial(NewTrial(seeded.study.id, number, config={}, status="ok"))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(first,)) for first in (0, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(seeded.store.trials(seeded.study.id)) == 20


def test_protocol_fields_round_trip(seeded: Seeded) -> None:
    store, study = seeded.store, seeded.study
    noise = {"before": {"busy": [{"pid": 42, "name": "yes", "cpu": 0.99}]}, "during": {"other_cpu": 0.97}}
    store.record_trial(NewTrial(study.id, 0, config={}, status="pruned", flags=["noisy", "few-samples"], noise=noise,
                       peak_rss_mb=312.5, throughput=float("inf")))
    record = store.trial(study.id, 0)
    assert record is not None
    assert (record.status, record.flags, record.noise, record.peak_rss_mb) == ("pruned", ["noisy", "few-samples"],
                                                                               noise, 312.5)
    assert record.throughput is None  # infinities are not numbers: NULL
    assert store.trial_by_id(record.id) == record
    with pytest.raises(KeyError, match="trial"):
        store.trial_by_id(12345)


def test_trial_fields_carry_flags_noise_memory_and_throughput() -> None:
    result = TrialResult(status="ok", samples_ms=[1.0], stats={"median": 1.0, "n": 1, "throughput": 950.0},
                         flags=["unstable"], noise={"during": {"other_cpu": 0.5}}, peak_rss_mb=200.0)
    fields = trial_fields(result)
    assert (fields["flags"], fields["noise"], fields["peak_rss_mb"], fields["throughput"]) == (
        ["unstable"], {"during": {"other_cpu": 0.5}}, 200.0, 950.0)
    empty = trial_fields(TrialResult(status="crashed"))
    assert (empty["flags"], empty["noise"], empty["peak_rss_mb"], empty["throughput"]) == (None, None, None, None)


def test_pareto_front_is_stored_with_the_study(seeded: Seeded) -> None:
    store, study = seeded.store, seeded.study
    store.set_pareto(study.id, [5, 1, 3])
    (again,) = store.studies()
    assert again.pareto == [1, 3, 5]
    with pytest.raises(KeyError):
        store.set_pareto(999, [])


def test_best_keeps_the_confidence_interval_and_the_finalists(seeded: Seeded) -> None:
    store, m, p = seeded.store, seeded.machine_id, seeded.model_pk
    fast16, _ = _two_studies(seeded)
    finalists = [{"trial": 0, "speedup": 4.1, "low": 3.9, "high": 4.3, "significant": True}]
    store.set_best(m, p, 16, 1, "p50", fast16, {"backend": "onnxruntime"}, {"median_ms": 1.0}, 5.4, 4.1,
                   speedup_low=3.9, speedup_high=4.3, significant=True, finalists=finalists)
    (best,) = store.best("fp-a", "minilm", seq_len=16)
    assert (best.speedup, best.speedup_low, best.speedup_high, best.significant) == (4.1, 3.9, 4.3, True)
    assert best.finalists == finalists
    # A later winner without an interval replaces the old one whole.
    store.set_best(m, p, 16, 1, "p50", fast16, {"backend": "onnxruntime"}, {"median_ms": 1.0}, 5.4, 4.0)
    (best,) = store.best("fp-a", "minilm", seq_len=16)
    assert (best.speedup, best.speedup_low, best.significant, best.finalists) == (4.0, None, None, None)


def test_replays_round_trip_in_order_and_are_checked(seeded: Seeded) -> None:
    store, study = seeded.store, seeded.study
    trial_id = store.record_trial(NewTrial(study.id, 0, config={"backend": "torch"}, status="ok", value=5.0))
    for round_ in range(2):
        store.record_replay(study.id, kind="finalist", role="default", round=round_, config={"backend": "torch"},
                            status="ok", trial_id=trial_id, median_ms=5.0 + round_, samples_ms=[5.0, 5.1],
                            n_samples=2, flags=["few-samples"], noise={"during": {"other_cpu": 0.0}})
        store.record_replay(study.id, kind="finalist", role="candidate", round=round_, config={"backend": "ort"},
                            status="crashed", reason="killed by SIGKILL")
    store.record_replay(study.id, kind="verify", role="default", round=0, config={}, status="ok", median_ms=4.0)
    finalist = store.replays(study.id, kind="finalist")
    assert [(r.role, r.round, r.median_ms) for r in finalist] == [
        ("default", 0, 5.0), ("candidate", 0, None), ("default", 1, 6.0), ("candidate", 1, None)]
    assert finalist[0].samples_ms == [5.0, 5.1] and finalist[0].trial_id == trial_id and finalist[1].samples_ms == []
    assert [r.kind for r in store.replays(study.id)] == ["finalist"] * 4 + ["verify"]
    with pytest.raises(ValueError, match="replay kind"):
        store.record_replay(study.id, kind="sweep", role="default", round=0, config={}, status="ok")
    with pytest.raises(ValueError, match="replay role"):
        store.record_replay(study.id, kind="verify", role="winner", round=0, config={}, status="ok")
    with pytest.raises(KeyError, match="trial"):
        store.record_replay(study.id, kind="verify", role="default", round=0, config={}, status="ok", trial_id=999)
    assert len(store.replays(study.id)) == 5
