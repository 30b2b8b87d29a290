"""`tuner verify` judges a replay as its study judged the finalists: the study's own
accuracy guard and memory limit, and the probe against the plan (tuner.search._replay)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tuner.cli.main import build_parser
from tuner.cli.verify import verify_one
from tuner.model import ModelRef
from tuner.store import NewTrial, Store
from tuner.trial import spec as S
from tuner.trial.accuracy import Guard
from tuner.trial.plan import RuntimePlan

DEFAULT = {"backend": "torch", "precision": "fp32", "threads": 2}
WINNER = {"backend": "onnxruntime", "precision": "int8", "threads": 2}
# Passes the default guard (0.99 mean, 0.98 min), not the strict one the study stored.
CLOSE = {"cosine_mean": 0.995, "cosine_min": 0.993}
STRICT = {"min_cosine_mean": 0.999, "min_cosine_min": 0.998, "min_label_agreement": 0.99}


class FakeRunner:
    """Answers each run from ``answer(config)``: no process is started."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.measure = S.MeasureSettings()

    def reference(self, workload: S.Workload) -> str:
        return ""

    def run(self, workload: S.Workload, config: dict, reference: str | None) -> tuple[S.TrialResult, RuntimePlan]:
        ms = 5.0 if config == DEFAULT else 1.0
        samples = [ms * (1 + 0.01 * (i % 5)) for i in range(40)]
        result = S.TrialResult(status=S.OK, samples_ms=samples, stats={"median": ms, "p90": ms, "p99": ms, "n": 40},
                               accuracy={"cosine_mean": 1.0, "cosine_min": 1.0}, effective={"threads": 2})
        if config == WINNER:
            self.answer(result)
        return result, RuntimePlan()


def stored_winner(tmp_path: Path, settings: dict[str, Any]) -> tuple[Store, Any, ModelRef, Any]:
    """A store holding one study (with ``settings``) whose winner is WINNER, 5x the default."""
    store = Store.open(str(tmp_path / "tuner.db"))
    machine = SimpleNamespace(fingerprint="fp-test")
    model = ModelRef(model_id="m", path=str(tmp_path), content_hash="hash-m", task="embedding")
    machine_id = store.upsert_machine({}, machine.fingerprint, "hw", "sw", "host")
    model_pk = store.upsert_model(model.model_id, model.content_hash, model.path, model.task)
    study = store.get_or_create_study(machine_id, model_pk, 16, 1, "p50", "space", "study", {"default": DEFAULT, **settings})
    store.record_trial(NewTrial(study.id, 0, DEFAULT, "ok", value=5.0, median_ms=5.0))
    winner = store.record_trial(NewTrial(study.id, 1, WINNER, "ok", value=1.0, median_ms=1.0))
    store.set_best(machine_id, model_pk, 16, 1, "p50", winner, WINNER, {"median_ms": 1.0}, 5.0, 5.0,
                   speedup_low=4.8, speedup_high=5.2, significant=True)
    (best,) = store.best(machine.fingerprint, model.content_hash)
    return store, machine, model, best


def verify(store: Store, machine: Any, model: ModelRef, best: Any, answer: Any) -> bool:
    args = build_parser().parse_args(["verify", "--model", "m", "--rounds", "3", "--min-time", "0.1",
                                      "--noise-retries", "0", "--noise-wait", "0"])
    return verify_one(args, store, model, machine, best, runner=FakeRunner(answer))


def verify_rows(store: Store, study_id: int) -> list[tuple[str, str, str | None]]:
    return [(r.role, r.status, r.reason) for r in store.replays(study_id, kind="verify")]


def test_verify_rejects_a_winner_whose_replay_fails_its_studys_guard(tmp_path: Path, capsys: Any) -> None:
    store, machine, model, best = stored_winner(tmp_path, {"guard": STRICT})

    def close_to_fp32(result: S.TrialResult) -> None:
        result.accuracy = dict(CLOSE)

    assert Guard().check("embedding", CLOSE) is None  # a default Guard() would have let it through
    try:
        assert verify(store, machine, model, best, close_to_fp32) is False
        rows = verify_rows(store, store.trial_by_id(best.trial_id).study_id)
    finally:
        store.close()
    winner = [(status, reason) for role, status, reason in rows if role == "candidate"]
    assert len(winner) == 3 and all(status == "rejected" and reason == "below the accuracy guard: mean cosine "
                                    "0.9950 < 0.999" for status, reason in winner), winner
    assert [status for role, status, _ in rows if role == "default"] == ["ok"] * 3
    out = capsys.readouterr()
    assert "round 1 winner : rejected: below the accuracy guard" in out.out
    assert "winner  0/3 runs measured" in out.out and "speedup" not in out.out
    assert "the stored winner failed 3 of 3 replays (rejected: below the accuracy guard" in out.err
    assert "too few runs produced a result" in out.err


@pytest.mark.parametrize(("answer", "status", "reason"), [
    (lambda r: setattr(r, "effective", {"threads": 1}), "invalid", "asked for 2 threads, the framework uses 1"),
    (lambda r: setattr(r, "peak_rss_mb", 900.0), "rejected", "peak memory 900 MB above --max-memory 500 MB"),
])
def test_verify_flags_invalid_settings_and_the_studys_memory_limit(tmp_path: Path, answer: Any, status: str,
                                                                   reason: str) -> None:
    store, machine, model, best = stored_winner(tmp_path, {"max_memory_mb": 500.0})
    try:
        assert verify(store, machine, model, best, answer) is False
        rows = verify_rows(store, store.trial_by_id(best.trial_id).study_id)
    finally:
        store.close()
    assert [(s, r) for role, s, r in rows if role == "candidate"] == [(status, reason)] * 3


def test_verify_states_the_speedup_of_a_winner_that_passes(tmp_path: Path, capsys: Any) -> None:
    store, machine, model, best = stored_winner(tmp_path, {"guard": STRICT})
    try:
        assert verify(store, machine, model, best, lambda result: None) is True
    finally:
        store.close()
    assert "stored speedup 5.00x (95% CI 4.80-5.20) lies within today's interval: it holds" in capsys.readouterr().out


def test_verify_reports_a_winner_whose_processes_fall_into_speed_clusters(tmp_path: Path, capsys: Any) -> None:
    """On the AMX Xeon a fresh process was either fast or ~1.7x slower (issue 17): verify
    says so with the cluster sizes, and each replay row keeps the clusters so far."""
    store, machine, model, best = stored_winner(tmp_path, {})
    runs = []

    def fast_or_slow(result: S.TrialResult) -> None:
        runs.append(result)
        scale = 1.7 if len(runs) % 2 == 0 else 1.0
        result.samples_ms = [s * scale for s in result.samples_ms]
        result.stats = {k: v * scale for k, v in result.stats.items() if k != "n"} | {"n": 40}

    args = build_parser().parse_args(["verify", "--model", "m", "--rounds", "6", "--min-time", "0.1",
                                      "--noise-retries", "0", "--noise-wait", "0", "--quiet"])
    try:
        verify_one(args, store, model, machine, best, runner=FakeRunner(fast_or_slow))
        rows = [r for r in store.replays(store.trial_by_id(best.trial_id).study_id, kind="verify")
                if r.role == "candidate"]
    finally:
        store.close()
    out = capsys.readouterr().out
    assert "fresh processes on this host fall into speed clusters (fast+slow processes: winner 3+3 (1.70x))" in out
    assert "winner: 2 speed clusters: 3 at 1 ms, 3 at 1.7 ms (1.70x apart)" in out
    assert "default:" not in out.split("speed clusters")[-1]
    assert [r.noise.get("clusters", {}).get("sizes") for r in rows] == [None, None, None, [2, 2], [3, 2], [3, 3]]
