"""A synthetic fleet (3 machines, one of them stale, x 2 models, 10,000 trials per
study): paging on the server, thinned plot columns, staleness, comparisons; and
parameter importance from a real Optuna study."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import make_client

TRIALS = 10_000


def test_a_study_of_10000_trials_is_paged_on_the_server(synthetic: Any) -> None:
    study = synthetic.get("/api/v1/studies/1").json()
    assert study["n_trials"] == TRIALS and study["status"] == "running"
    page = synthetic.get("/api/v1/studies/1/trials").json()
    assert page["total"] == TRIALS and len(page["items"]) == 50
    assert [t["number"] for t in page["items"]] == list(range(50))
    assert all("samples_ms" not in t and "effective" not in t for t in page["items"])
    last = synthetic.get("/api/v1/studies/1/trials", params={"offset": TRIALS - 10, "limit": 500}).json()
    assert [t["number"] for t in last["items"]] == list(range(TRIALS - 10, TRIALS))
    fresh = synthetic.get("/api/v1/studies/1/trials", params={"after": TRIALS - 3}).json()
    assert [t["number"] for t in fresh["items"]] == [TRIALS - 2, TRIALS - 1]
    flagged = synthetic.get("/api/v1/studies/1/trials", params={"flag": "noisy", "limit": 500}).json()
    assert 0 < flagged["total"] < TRIALS and all("noisy" in t["flags"] for t in flagged["items"])
    clean = synthetic.get("/api/v1/studies/1/trials", params={"flag": "none", "limit": 500}).json()
    assert all(t["flags"] == [] for t in clean["items"])
    statuses = synthetic.get("/api/v1/studies/1/trials", params=[("status", "error"), ("status", "invalid")]).json()
    assert statuses["total"] == study["counts"]["error"] + study["counts"]["invalid"]


def test_plot_columns_are_thinned_but_keep_every_improvement(synthetic: Any) -> None:
    full = synthetic.get("/api/v1/studies/1/series", params={"max_points": 50_000}).json()
    assert full["total"] == len(full["number"]) == TRIALS and not full["sampled"]
    thin = synthetic.get("/api/v1/studies/1/series", params={"max_points": 500}).json()
    assert thin["sampled"] and len(thin["number"]) <= 500 + 50
    improvements = {n for i, n in enumerate(full["number"])
                    if full["best_so_far"][i] is not None and (i == 0 or full["best_so_far"][i] != full["best_so_far"][i - 1])}
    assert improvements <= set(thin["number"])
    assert thin["best_so_far"][-1] == full["best_so_far"][-1] == min(
        v for v, s in zip(full["value"], full["status"]) if s == "ok" and v is not None)
    assert thin["guard"] == 0.99 and thin["accuracy_measure"] == "cosine_mean"


def test_the_overview_marks_stale_results(synthetic: Any) -> None:
    overview = synthetic.get("/api/v1/overview").json()
    stale = {m["id"]: m["stale_reason"] for m in overview["machines"] if m["stale"]}
    assert list(stale) == [1] and "onnxruntime 1.31.0 -> 1.32.0" in stale[1]
    assert all(r["stale"] == (r["machine_id"] == 1) for r in overview["results"])
    assert len(overview["results"]) == 3 * 2 and overview["running"] == [1]
    page = synthetic.get("/").text
    assert page.count('class="result stale"') == 2 and "badge stale" in page


def test_stale_rule() -> None:
    from tuner.service.stale import stale_reasons

    def machine(id_: int, host: str, hw: str, sw: str, day: int, onnxruntime: str = "1.0") -> dict[str, Any]:
        cpu = {"model_name": f"CPU {hw}", "isa": {"avx2": True, "avx512_vnni": hw == "h2"}}
        return {"id": id_, "hostname": host, "hardware_fingerprint": hw, "software_fingerprint": sw,
                "last_seen": datetime(2026, 1, day, tzinfo=UTC),
                "info": {"libraries": {"onnxruntime": onnxruntime}, "cpu": cpu}}

    reasons = stale_reasons([
        machine(1, "a", "h1", "s1", 1), machine(2, "a", "h1", "s2", 2, "1.1"),  # software changed
        machine(3, "b", "h1", "s1", 3), machine(4, "b", "h2", "s1", 1),  # 4 is older with other hardware
        machine(5, "c", "h1", "s1", 1),  # alone
    ])
    assert set(reasons) == {1, 4}
    assert "software" in reasons[1] and "onnxruntime 1.0 -> 1.1" in reasons[1]
    assert "hardware" in reasons[4] and "CPU h2 -> CPU h1; avx512_vnni disappeared" in reasons[4]


def test_compare_two_machines(synthetic: Any) -> None:
    data = synthetic.get("/api/v1/compare/machines", params={"a": 1, "b": 2}).json()
    assert data["kind"] == "machines" and len(data["rows"]) == 2
    facts = {d["key"]: d for d in data["machine"]}
    assert not facts["lib:onnxruntime"]["same"] and facts["hostname"]["same"]
    assert data["machine"][0]["same"] is False, "differences first"
    for row in data["rows"]:
        assert row["a"]["machine_id"] == 1 and row["b"]["machine_id"] == 2
        keys = [d["key"] for d in row["config"]]
        assert len(keys) == len(set(keys))
    page = synthetic.get("/compare/machines", params={"a": 1, "b": 2}).text
    assert 'class="same"' in page and "differences-only" in page
    assert synthetic.get("/api/v1/compare/machines", params={"a": 1, "b": 99}).status_code == 404
    assert synthetic.get("/api/v1/compare/machines", params={"a": 1, "b": 2, "model_pk": 99}).status_code == 404


def test_settings_side_by_side() -> None:
    from tuner.service.views import settings_side_by_side

    rows = settings_side_by_side(
        {"backend": "torch", "precision": "fp32", "threads": 2, "binding": "taskset", "allocator": "jemalloc",
         "openmp": "intel", "graph": "fused"},
        {"threads": 1, "cpus": [0, 1], "malloc": {"kind": "jemalloc", "library": "/usr/lib/libjemalloc.so.2"},
         "openmp": {"runtime": "gnu"}, "env": {"OMP_NUM_THREADS": "2"}})
    by = {r["setting"]: r for r in rows}
    assert by["threads"]["match"] is False and by["allocator"]["match"] is True
    assert by["OpenMP runtime"]["match"] is False and by["binding / CPUs"]["effective"] == [0, 1]
    assert by["$OMP_NUM_THREADS"]["effective"] == "2" and by["graph"]["requested"] == "fused"
    assert "backend" not in by


def test_importance_from_a_real_optuna_study(tmp_path: Path) -> None:
    import optuna

    from tuner.service.synthetic import Shape, build

    db = tmp_path / "importance.db"
    build(db, Shape(machines=1, models=1, trials=5, stale_every=0))
    url = f"sqlite:///{db}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="synthetic:fp00000:1:seq128", storage=url,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    # Latency driven by threads, barely by the allocator.
    study.optimize(lambda t: 10.0 / t.suggest_int("threads", 1, 8) + 0.01 * t.suggest_float("allocator", 0, 1),
                   n_trials=30)
    client = make_client(db)
    importance = client.get("/api/v1/studies/1/importance").json()
    assert importance["available"] and importance["n_trials"] == 30
    assert importance["evaluator"] == "PedAnovaImportanceEvaluator"
    assert max(importance["importances"], key=importance["importances"].get) == "threads"
    assert client.get("/api/v1/studies/1/importance").json() == importance  # cached


@pytest.mark.parametrize("n", [0, 3])
def test_importance_needs_trials(tmp_path: Path, n: int) -> None:
    import optuna

    from tuner.service.synthetic import Shape, build

    db = tmp_path / "few.db"
    build(db, Shape(machines=1, models=1, trials=5, stale_every=0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="synthetic:fp00000:1:seq128", storage=f"sqlite:///{db}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
    importance = make_client(db).get("/api/v1/studies/1/importance").json()
    assert not importance["available"] and "at least 5" in importance["reason"]
