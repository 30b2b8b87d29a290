"""The store's side of a fleet, on SQLite and PostgreSQL: which machines have results
for a workload (``peers``), ranked by similarity (``rank_peers``), their best trials,
and claims (insert-if-absent, heartbeat, takeover of a stale one)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tuner.hardware import detect
from tuner.hardware.similarity import Similarity
from tuner.store import NewTrial, Store, rank_peers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"


def _machine(store: Store, name: str, hardware: str, fixture: str) -> int:
    info = detect(str(FIXTURES / fixture)).to_dict()
    return store.upsert_machine(info, f"fp-{name}", hardware, f"sw-{name}", name)


def _fleet(store: Store) -> dict[str, int]:
    """spr-1 with a winner and a study at seq 16 and 128; zen4-1 with a study at seq 16
    (no winner); cl-1 with a study of another model only."""
    ids = {"spr-1": _machine(store, "spr-1", "hw-spr", "sapphire_rapids"),
           "zen4-1": _machine(store, "zen4-1", "hw-zen4", "zen4"),
           "cl-1": _machine(store, "cl-1", "hw-cl", "cascade_lake_2s")}
    minilm = store.upsert_model("minilm", "hash-minilm", "/m", "embedding")
    other = store.upsert_model("bert", "hash-bert", "/b", "embedding")
    for seq in (16, 128):
        study = store.get_or_create_study(ids["spr-1"], minilm, seq, 1, "p50", "space", f"spr-{seq}", {})
        trials = [store.record_trial(NewTrial(study.id, n, {"backend": "onnxruntime", "threads": n}, "ok",
                                              value=5.0 - n, median_ms=5.0 - n)) for n in range(4)]
        store.set_best(ids["spr-1"], minilm, seq, 1, "p50", trials[3], {"backend": "onnxruntime", "threads": 3},
                       {"median_ms": 2.0}, 5.0, 2.5)
    study = store.get_or_create_study(ids["zen4-1"], minilm, 16, 1, "p50", "space", "zen4-16", {})
    store.record_trial(NewTrial(study.id, 0, {"backend": "torch"}, "ok", value=9.0))
    store.record_trial(NewTrial(study.id, 1, {"backend": "torch", "precision": "int8"}, "rejected", value=1.0))
    store.record_trial(NewTrial(study.id, 2, {"backend": "onnxruntime"}, "ok", value=3.0))
    store.get_or_create_study(ids["cl-1"], other, 16, 1, "p50", "space", "cl-16", {})
    return ids


def test_peers_are_the_machines_with_results_for_the_workload(store: Store) -> None:
    ids = _fleet(store)
    peers = {p.hostname: p for p in store.peers("minilm", 16, 1, "p50")}
    assert set(peers) == {"spr-1", "zen4-1"}  # cl-1 tuned another model
    assert peers["spr-1"].best is not None and peers["spr-1"].best.config == {"backend": "onnxruntime", "threads": 3}
    assert peers["zen4-1"].best is None and len(peers["zen4-1"].study_ids) == 1
    assert peers["zen4-1"].cpu["model_name"] == "AMD EPYC 9R14" and "topology" not in peers["zen4-1"].cpu
    assert [p.hostname for p in store.peers("hash-minilm", 16, 1, "p50", winners_only=True)] == ["spr-1"]
    assert [p.hostname for p in store.peers("minilm", 128, 1, "p50")] == ["spr-1"]
    assert store.peers("minilm", 16, 1, "p90") == [] and store.peers("minilm", 16, 4, "p50") == []
    assert [p.hostname for p in store.peers("minilm", None, 1, "p50", winners_only=True)] == ["spr-1"]
    assert [p.hostname for p in store.peers("minilm", 16, 1, "p50", exclude_fingerprint="fp-spr-1")] == ["zen4-1"]
    assert ids["spr-1"] == peers["spr-1"].machine_id


def test_top_trials_are_the_best_passing_ones_first(store: Store) -> None:
    _fleet(store)
    (zen4,) = [p for p in store.peers("minilm", 16, 1, "p50") if p.hostname == "zen4-1"]
    study_id = zen4.study_ids[0]
    assert store.top_trials(study_id, 5) == [({"backend": "onnxruntime"}, 3.0), ({"backend": "torch"}, 9.0)]
    assert store.top_trials(study_id, 1, descending=True) == [({"backend": "torch"}, 9.0)]  # throughput: larger first


def test_peers_ranked_by_similarity_to_this_machine(store: Store) -> None:
    _fleet(store)
    here = detect(str(FIXTURES / "zen4"))  # a Zen 4 asking: the other Zen 4 model first
    info = here.to_dict()
    peers = store.peers("minilm", 16, 1, "p50")
    ranked = rank_peers(peers, "hw-other", info)
    assert [(p.hostname, p.similarity) for p in ranked] == [("zen4-1", Similarity.SAME_CPU),
                                                          ("spr-1", Similarity.ANY)]
    assert rank_peers(peers, "hw-spr", info)[0].hostname == "spr-1"  # the same hardware fingerprint comes first
    assert "the same CPU model and ISA" in ranked[0].describe()


def test_a_claim_is_taken_once_and_taken_over_when_its_holder_stops_beating(store: Store) -> None:
    _fleet(store)
    study_id = store.studies()[0].id
    mine = store.claim(study_id, "finalists@3", "a:1", stale_after_s=60)
    assert mine.held_by("a:1") and mine.done is None
    theirs = store.claim(study_id, "finalists@3", "b:2", stale_after_s=60)
    assert theirs.id == mine.id and theirs.owner == "a:1" and not theirs.held_by("b:2")
    assert store.beat_claim(mine.id, "a:1") and not store.beat_claim(mine.id, "b:2")
    time.sleep(1.2)
    taken = store.claim(study_id, "finalists@3", "b:2", stale_after_s=1)  # a:1 has not beaten for a second
    assert taken.held_by("b:2") and not store.beat_claim(mine.id, "a:1") and not store.finish_claim(mine.id, "a:1")
    assert store.finish_claim(taken.id, "b:2")
    done = store.claim(study_id, "finalists@3", "c:3", stale_after_s=0)
    assert done.done is not None and done.owner == "b:2"  # a done claim is never taken over
    assert [c.name for c in store.claims(study_id)] == ["finalists@3"]


def test_of_many_claiming_at_once_exactly_one_holds(store: Store) -> None:
    _fleet(store)
    study_id = store.studies()[0].id
    barrier = threading.Barrier(6)
    held: list[str] = []

    def claim(owner: str) -> None:
        barrier.wait()
        if store.claim(study_id, "start", owner, stale_after_s=60).held_by(owner):
            held.append(owner)

    threads = [threading.Thread(target=claim, args=(f"w:{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(held) == 1


def test_machines_opening_a_new_database_at_once_create_optunas_tables_once(db_url: str) -> None:
    """A fleet's machines starting together (`tuner auto --join`) on a new database: each
    opens the store and Optuna's tables at the same instant; none fails."""
    import subprocess
    import sys

    start = time.time() + 3
    script = (
        "import sys, time\n"
        "from tuner.store import Store\n"
        f"time.sleep(max(0.0, {start} - time.time()))\n"
        "with Store.open(sys.argv[1]) as store:\n"
        "    store.optuna_storage().engine.dispose()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, db_url], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
