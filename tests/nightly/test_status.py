"""Staleness, stated: winners stored under captured machines, judged from another one.

Real SQLite, real search spaces loaded for the captured CPUs, Optuna's own tables for
the backends a study searched; only the model is named rather than hashed (a
resolver that says which content the name has today).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nightly_helpers import execute, machine, record_replay, record_trial

from tuner._version import __version__
from tuner.errors import ModelNotFoundError, UserError
from tuner.hardware import MachineInfo
from tuner.model import ModelRef
from tuner.nightly.config import NightlyConfig, load_config
from tuner.nightly.plan import CONFIRM, RETUNE, SKIP, TUNE, VERIFY, make_plan
from tuner.nightly.run import fit_seeds
from tuner.nightly.status import DRIFTED, FRESH, HERE, MISSING, STALE, UNAVAILABLE, Assessor, judge_winners
from tuner.space import load_space
from tuner.store import Store

MODEL = "my-model"
BACKENDS = ["onnxruntime"]


def resolver(content: str = "content-a") -> Any:
    def resolve(name: str) -> ModelRef:
        if name != MODEL:
            raise ModelNotFoundError(f"no model {name!r}")
        return ModelRef(MODEL, "/models/my-model", content, "embedding")

    return resolve


def store_winner(store: Store, on: MachineInfo, *, content: str = "content-a", seq_len: int = 16,
                 speedup: float = 2.0, space_hash: str | None = None, config: dict | None = None,
                 finalists: list | None = None) -> tuple[int, int]:
    """A study of ``on`` (searching ONNX Runtime) with one trial, made the winner; (study id, trial id)."""
    import optuna

    machine_id = store.upsert_machine(on.to_dict(), on.fingerprint, on.hardware_fingerprint, on.software_fingerprint,
                                      on.hostname)
    model_pk = store.upsert_model(MODEL, content, "/models/my-model", "embedding")
    space = load_space(on, backends=BACKENDS)
    name = f"tuner:{on.fingerprint}:{content}:seq{seq_len}"
    study = store.get_or_create_study(machine_id, model_pk, seq_len, 1, "p50", space_hash or space.content_hash(),
                                      name, {"default": space.default_config(), "trials": 12})
    config = config or {**space.default_config(), "threads": 2}
    trial_id = record_trial(store, study.id, 0, config, status="ok", value=5.0, median_ms=5.0)
    store.set_best(machine_id, model_pk, seq_len, 1, "p50", trial_id, config, {"median_ms": 5.0, "value": 5.0},
                   10.0, speedup, speedup_low=speedup * 0.95, speedup_high=speedup * 1.05, significant=True,
                   finalists=finalists)
    # What Optuna keeps of the study: the backends it chose from.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna_study = optuna.create_study(storage=store.url, study_name=name, load_if_exists=True)
    trial = optuna_study.ask()
    trial.suggest_categorical("backend", BACKENDS)
    optuna_study.tell(trial, 5.0)
    return study.id, trial_id


def assess(store: Store, here: MachineInfo, content: str = "content-a"):
    assessor = Assessor(store, here, resolve=resolver(content))
    try:
        statuses = assessor.assess()
        plan = make_plan(statuses, NightlyConfig(), assessor, datetime.now(UTC))
    finally:
        assessor.close()
    return statuses, plan


def test_a_winner_of_another_cpu_is_stale_saying_what_changed(store: Store) -> None:
    store_winner(store, machine("sapphire_rapids"))
    store_winner(store, machine("sapphire_rapids"), seq_len=128)
    statuses, plan = assess(store, machine("zen4"))
    assert [(s.seq_len, s.state) for s in statuses] == [(16, STALE), (128, STALE)]
    reason = statuses[0].reasons[0]
    assert reason.startswith("hardware changed: Intel(R) Xeon(R) Platinum 8488C -> AMD EPYC 9R14"), reason
    assert "amx_tile" in reason and "disappeared" in reason and "4 -> 8 cores" in reason
    assert [(i.seq_len, i.action, i.short) for i in plan] == [(16, RETUNE, False), (128, RETUNE, False)]
    assert plan[0].reason.startswith("stale: hardware changed")
    # The other way round, what appeared is named; an ARM server names its own features.
    cascade = assess(store, machine("cascade_lake_2s"))[0][0].reasons[0]
    assert "2 NUMA nodes" in cascade or "1 -> 2 NUMA nodes" in cascade
    graviton = assess(store, machine("graviton3"))[0][0].reasons[0]
    assert "sve" in graviton and "appeared" in graviton


def test_a_library_its_backend_uses_changed(store: Store) -> None:
    zen4 = machine("zen4")
    store_winner(store, machine("zen4", onnxruntime="1.0.0"))
    statuses, plan = assess(store, zen4)
    assert statuses[0].state == STALE
    assert statuses[0].reasons == [f"onnxruntime 1.0.0 -> {zen4.libraries['onnxruntime']}"]
    assert statuses[0].depends()["libraries"]["onnxruntime"] == "1.0.0"
    assert plan[0].action == RETUNE and plan[0].short  # the same hardware: a short search from the old winner


def test_a_library_its_backend_does_not_use_is_missing_and_confirmed(store: Store) -> None:
    store_winner(store, machine("zen4", openvino="0.0.1", optuna="0.0.1"))
    statuses, plan = assess(store, machine("zen4"))
    assert statuses[0].state == MISSING and statuses[0].software_only
    assert "openvino 0.0.1" in statuses[0].reasons[0] and "optuna 0.0.1" in statuses[0].reasons[0]
    assert plan[0].action == CONFIRM and plan[0].seeds


def test_fresh_then_verified_when_old(store: Store) -> None:
    zen4 = machine("zen4")
    store_winner(store, zen4)
    statuses, plan = assess(store, zen4)
    assert statuses[0].state == FRESH and statuses[0].reasons == []
    assert plan[0].action == SKIP and plan[0].reason.startswith("fresh, chosen")
    old = Assessor(store, zen4, resolve=resolver())
    try:
        later = make_plan(old.assess(), NightlyConfig(verify_after_s=60), old, datetime.now(UTC) + timedelta(hours=2))
    finally:
        old.close()
    assert later[0].action == VERIFY and "verified every 1 min" in later[0].reason


def test_tuner_version_space_and_weights(store: Store) -> None:
    zen4 = machine("zen4")
    store_winner(store, zen4, seq_len=16)
    store_winner(store, zen4, seq_len=32, space_hash="0" * 16)
    execute(store.url, "UPDATE tuner_best SET tuner_version = '0.0.1' WHERE seq_len = 16")
    statuses, _ = assess(store, zen4)
    assert [(s.seq_len, s.state, s.reasons) for s in statuses] == [
        (16, STALE, [f"tuner 0.0.1 -> {__version__}"]), (32, STALE, ["search space changed"])]
    weights = assess(store, zen4, content="content-b")[0]
    assert all(s.state == STALE and any("model weights changed" in r for r in s.reasons) for s in weights)


def test_similar_machine_moved_database_and_unavailable_model(store: Store) -> None:
    # Tuned on another host with the same CPU (and more memory): missing here, re-tuned
    # from that winner. (A host with the very same hardware shares this one's fingerprint.)
    store_winner(store, machine("zen4", hostname="other", memory_gib=256))
    store_winner(store, machine("sapphire_rapids", hostname="here"), seq_len=128)
    statuses, plan = assess(store, machine("zen4", hostname="here"))
    by_seq = {s.seq_len: s for s in statuses}
    assert by_seq[16].state == MISSING and "similar machine (other, AMD EPYC 9R14)" in by_seq[16].reasons[0]
    assert by_seq[128].state == STALE  # this host's previous incarnation had another CPU
    assert {i.seq_len: i.action for i in plan} == {16: RETUNE, 128: RETUNE}

    # A database from one other host, copied here: its machines are this one's past.
    assert [s.state for s in assess(store, machine("graviton3", hostname="new"))[0]] == []
    moved = Store.open(str(Path(store.url.split("///", 1)[1]).with_name("moved.db")))
    try:
        store_winner(moved, machine("sapphire_rapids", hostname="old"))
        statuses, _ = assess(moved, machine("zen4", hostname="new"))
        assert statuses[0].state == STALE and statuses[0].reasons[0].startswith("hardware changed")
        gone = Assessor(moved, machine("zen4", hostname="new"), resolve=lambda name: (_ for _ in ()).throw(
            ModelNotFoundError("gone")))
        try:
            unavailable = gone.assess()
            skipped = make_plan(unavailable, NightlyConfig(), gone, datetime.now(UTC))
        finally:
            gone.close()
        assert unavailable[0].state == UNAVAILABLE and "gone" in unavailable[0].reasons[0]
        assert skipped[0].action == SKIP

        # Once this host has winners of its own, another host counts as its past only
        # when a nightly run took it for that (a fleet's hosts are not each other's past).
        new = machine("zen4", hostname="new")
        store_winner(moved, new, seq_len=128)
        assert [s.seq_len for s in assess(moved, new)[0]] == [128]
        moved.start_nightly_run(machine_id=None, hostname="new", fingerprint=new.fingerprint, pid=1,
                                settings={"previous_hosts": ["old"]}, plan=[])
        assert [(s.seq_len, s.state) for s in assess(moved, new)[0]] == [(16, STALE), (128, FRESH)]
    finally:
        moved.close()


def _verify_rounds(store: Store, study_id: int, trial_id: int, config: dict, winner_ms: float, default_ms: float,
                   rounds: int = 3) -> None:
    for round_ in range(rounds):
        for role, ms in (("candidate", winner_ms), ("default", default_ms)):
            samples = [ms * (1 + 0.01 * ((i % 5) - 2)) for i in range(60)]
            record_replay(store, study_id, kind="verify", role=role, round=round_, config=config, status="ok",
                          trial_id=trial_id if role == "candidate" else None, median_ms=ms, n_samples=len(samples),
                          samples_ms=samples)


def test_a_verify_below_the_stored_interval_is_drift_and_is_retuned(store: Store) -> None:
    zen4 = machine("zen4")
    study_id, trial_id = store_winner(store, zen4, speedup=2.0)
    config = store.trial_by_id(trial_id).config
    _verify_rounds(store, study_id, trial_id, config, winner_ms=5.0, default_ms=10.0)  # 2.0x: it holds
    statuses, plan = assess(store, zen4)
    assert statuses[0].state == FRESH and statuses[0].verify is not None and statuses[0].verify.holds
    assert plan[0].action == SKIP and "verified" in plan[0].reason

    _verify_rounds(store, study_id, trial_id, config, winner_ms=5.0, default_ms=6.0)  # today 1.2x
    statuses, plan = assess(store, zen4)
    assert statuses[0].state == DRIFTED
    assert "measured 1.20x" in statuses[0].reasons[0] and "against the stored 2.00x" in statuses[0].reasons[0]
    assert plan[0].action == RETUNE and plan[0].short and plan[0].reason.startswith("drifted")


class _NoOtherMachine:
    """A store whose every machine and nightly run reading fails: what `tuner best`'s
    staleness check must not need (on a fleet's database they cost more than the rest)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name in ("machines", "nightly_runs"):
            raise AssertionError(f"judge_winners read {name}()")
        return getattr(self._store, name)


def test_judge_winners_judges_this_machines_winners_as_assess_does(store: Store) -> None:
    """`tuner best`'s staleness check: this machine's winners of one model, judged as
    `tuner status` judges them, read without the database's other machines."""
    here = machine("zen4", hostname="here")
    study_id, trial_id = store_winner(store, here, seq_len=16)
    _verify_rounds(store, study_id, trial_id, store.trial_by_id(trial_id).config, winner_ms=5.0, default_ms=6.0)
    store_winner(store, here, seq_len=32, space_hash="0" * 16)
    store_winner(store, here, seq_len=48)
    store_winner(store, here, seq_len=64, content="content-b")  # other weights: another model
    store_winner(store, machine("zen4", hostname="here", onnxruntime="1.0.0"), seq_len=128)  # its past
    store_winner(store, machine("sapphire_rapids", hostname="other"), seq_len=16)
    store.start_nightly_run(machine_id=None, hostname="here", fingerprint=here.fingerprint, pid=1,
                            settings={"previous_hosts": ["other"]}, plan=[])

    judged = judge_winners(_NoOtherMachine(store), here, "content-a", [16, 32, 48, 64, 128], 1, "p50")
    assessed = [s for s in assess(store, here)[0] if s.source == HERE and s.winner.model.content_hash == "content-a"]
    assert [(s.seq_len, s.state, s.reasons, s.winner.best.trial_id) for s in judged] == [
        (s.seq_len, s.state, s.reasons, s.winner.best.trial_id) for s in assessed]
    assert [(s.seq_len, s.state) for s in judged] == [(16, DRIFTED), (32, STALE), (48, FRESH)]
    assert judge_winners(store, here, "content-a", [16], 1, "throughput") == []
    assert judge_winners(store, machine("graviton3"), "content-a", [16], 1, "p50") == []


def test_a_config_file_adds_workloads_and_explains_its_mistakes(tmp_path: Path, store: Store) -> None:
    zen4 = machine("zen4")
    store_winner(store, zen4)
    path = tmp_path / "nightly.toml"
    path.write_text('trials = 7\n[[models]]\nmodel = "my-model"\nseq_lens = [16, 64]\nbudget = "5m"\n')
    config = load_config(path)
    assessor = Assessor(store, zen4, resolve=resolver())
    try:
        plan = make_plan(assessor.assess(), config, assessor, datetime.now(UTC))
    finally:
        assessor.close()
    assert [(i.seq_len, i.action, i.trials, i.budget_s) for i in plan] == [(64, TUNE, 7, 300.0), (16, SKIP, 7, 300.0)]
    assert "never tuned" in plan[0].reason

    path.write_text('[[models]]\nmodel = "m"\nseq_len = [16]\n')
    with pytest.raises(UserError, match=r"nightly.toml: \[\[models\]\] #1: unknown key 'seq_len'"):
        load_config(path)
    path.write_text('budget = "soon"\n')
    with pytest.raises(UserError, match="budget 'soon' is not a duration"):
        load_config(path)


def test_seeds_fit_the_new_machine(store: Store) -> None:
    from tuner.nightly.plan import PlanItem

    zen4 = machine("zen4")
    config = {**load_space(zen4, backends=BACKENDS).default_config(), "threads": 64}
    item = PlanItem(MODEL, 16, 1, "p50", RETUNE, STALE, "", backends=BACKENDS)
    seeds, first = fit_seeds(zen4, item, [config, {"backend": "onnxruntime", "precision": "fp4"}])
    threads = max(d.high for d in load_space(zen4, backends=BACKENDS).dimensions("onnxruntime") if d.name == "threads")
    assert [s["threads"] for s in seeds] == [threads]  # brought down to this machine's cores; the unknown choice left
    assert first >= 2
