"""`tuner nightly` as a scheduler runs it, on a database moved between machines:
real `tuner` processes that see themselves on captured CPUs ($TUNER_HW_ROOT), a real
SQLite file, a tiny model built from a config, ONNX Runtime only (the fastest to
convert), short trials and no noise re-runs: these tests are about what is decided
and stored, not about timings."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import run_tuner
from nightly_helpers import FIXTURES, execute, on, record_replay

from tuner._version import __version__
from tuner.hardware import detect
from tuner.store import Store

AUTO = ["--seq-len", "16", "--trials", "3", "--min-time", "0.1", "--quiet", "--seed", "1", "--finalists", "0",
        "--noise-retries", "0", "--noise-wait", "0", "--backends", "onnxruntime"]
NIGHTLY = ["--min-time", "0.1", "--noise-retries", "0", "--noise-wait", "0"]


def tuner(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    return run_tuner(*args, env=env, timeout=600, check=check)


def fingerprint(cpu: str) -> str:
    return detect(str(FIXTURES / cpu)).fingerprint


def query(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def study_trials(db: Path, fp: str) -> list[tuple[int, str]]:
    return query(db, "SELECT t.number, t.status FROM tuner_trials t JOIN tuner_studies s ON t.study_id = s.id "
                     "WHERE s.optuna_study_name LIKE ? ORDER BY t.number", f"tuner:{fp}:%")


def counted(rows: list[tuple[int, str]]) -> int:
    return sum(1 for _, status in rows if status not in ("duplicate", "interrupted", "skipped"))


def test_a_database_moved_to_new_cpus_is_retuned_and_drift_too(tiny_bert_dir: Path, env, tmp_path: Path) -> None:
    model = str(tiny_bert_dir)
    db = tmp_path / "data" / "tuner.db"
    url = f"sqlite:///{db}"
    spr, zen4 = fingerprint("sapphire_rapids"), fingerprint("zen4")
    tuner("auto", "--model", model, *AUTO, env=on(env, "sapphire_rapids"))
    here = json.loads(tuner("status", "--json", env=on(env, "sapphire_rapids")).stdout)
    assert here["machine"]["fingerprint"] == spr
    assert [(w["seq_len"], w["state"]) for w in here["winners"]] == [(16, "fresh")]
    assert here["winners"][0]["depends"]["tuner_version"] == __version__

    # Moved to a Zen 4: every winner stale, with what changed.
    dry = tuner("nightly", "--dry-run", env=on(env, "zen4")).stdout
    line = next(row for row in dry.splitlines() if "seq 16" in row)
    assert "retune" in line and "stale: hardware changed: Intel(R) Xeon(R) Platinum 8488C -> AMD EPYC 9R14" in line
    assert "amx_tile" in line and "disappeared" in line
    plan = json.loads(tuner("nightly", "--dry-run", "--json", env=on(env, "zen4")).stdout)["plan"]
    assert [(i["action"], i["state"], i["search"]) for i in plan] == [("retune", "stale", "full")]
    assert query(db, "SELECT count(*) FROM tuner_nightly_runs") == [(0,)]  # a dry run changes nothing
    assert query(db, "SELECT count(*) FROM tuner_machines") == [(1,)]

    run = tuner("nightly", "--trials", "3", *NIGHTLY, env=on(env, "zen4"), check=False)
    assert run.returncode in (0, 3), run.stdout + run.stderr
    assert f"tuner nightly: {model}: seq 16 re-tuned in 3 trials" in run.stdout, run.stdout
    last = json.loads(tuner("nightly", "--last", "--json", env=on(env, "zen4")).stdout)
    result = last["results"][0]
    assert (last["status"], last["exit_code"], result["outcome"]) == ("done", run.returncode, "tuned")
    assert (result["old"]["fingerprint"], result["new"]["fingerprint"]) == (spr, zen4)
    assert result["slower"] == (run.returncode == 3)
    shown = tuner("nightly", "--last", env=on(env, "zen4")).stdout
    assert "retune: stale: hardware changed" in shown and "re-tuned in 3 trials" in shown
    now = json.loads(tuner("status", "--json", env=on(env, "zen4")).stdout)["winners"]
    assert [(w["state"], w["winner"]["fingerprint"]) for w in now] == [("fresh", zen4)]
    assert sorted(query(db, "SELECT m.fingerprint FROM tuner_best b JOIN tuner_machines m ON b.machine_id = m.id")) \
        == sorted([(spr,), (zen4,)])  # the new winner beside the old one

    # `tuner best` warns (stderr) when the winner it returns is stale; stdout stays the JSON.
    execute(url, f"UPDATE tuner_best SET tuner_version = '0.0.1' WHERE machine_id = "
                 f"(SELECT id FROM tuner_machines WHERE fingerprint = '{zen4}')")
    best = tuner("best", "--model", model, "--format", "json", env=on(env, "zen4"))
    assert f"at seq 16 is stale: tuner 0.0.1 -> {__version__}" in best.stderr
    assert json.loads(best.stdout)[0]["seq_len"] == 16
    execute(url, f"UPDATE tuner_best SET tuner_version = '{__version__}'")
    assert "warning" not in tuner("best", "--model", model, "--format", "json", env=on(env, "zen4")).stderr

    # Drift: a verify measured a speedup below the stored interval; the next night re-tunes it.
    execute(url, f"UPDATE tuner_best SET speedup = 5.0, speedup_low = 4.8, speedup_high = 5.2 WHERE machine_id = "
                 f"(SELECT id FROM tuner_machines WHERE fingerprint = '{zen4}')")
    with Store.open(url) as store:
        winner = next(w for w in store.winners() if w.machine.fingerprint == zen4)
        for round_ in range(3):
            for role, ms in (("candidate", 5.0), ("default", 5.5)):
                samples = [ms * (1 + 0.01 * ((i % 5) - 2)) for i in range(60)]
                record_replay(store, winner.study_id, kind="verify", role=role, round=round_,
                              config=winner.best.config, status="ok",
                              trial_id=winner.best.trial_id if role == "candidate" else None, median_ms=ms,
                              n_samples=60, samples_ms=samples)
    drifted = json.loads(tuner("status", "--json", env=on(env, "zen4")).stdout)["winners"][0]
    assert drifted["state"] == "drifted" and "against the stored 5.00x" in drifted["reasons"][0]
    before = counted(study_trials(db, zen4))
    run = tuner("nightly", "--trials", "2", *NIGHTLY, env=on(env, "zen4"), check=False)
    assert run.returncode == 3, run.stdout + run.stderr  # the speedup no longer held
    assert "retune: drifted: the last verify" in run.stdout
    assert counted(study_trials(db, zen4)) == before + 2  # the same study, two more trials
    assert json.loads(tuner("status", "--json", env=on(env, "zen4")).stdout)["winners"][0]["state"] == "fresh"

    # A fresh winner not confirmed for `verify_after` is verified like `tuner verify` does
    # (and re-tuned at once when its speedup no longer holds).
    # (The winner made one of the study's measured configurations other than the stock
    # default, so that there is something to compare.)
    with Store.open(url) as store:
        winner = next(w for w in store.winners() if w.machine.fingerprint == zen4)
        other = next(t for t in store.trials(winner.study_id)
                     if t.status == "ok" and t.config != winner.study_settings["default"])
    execute(url, f"UPDATE tuner_best SET trial_id = {other.id}, config = '{json.dumps(other.config)}' "
                 f"WHERE trial_id = {winner.best.trial_id}")
    config = tmp_path / "nightly.toml"
    config.write_text('verify_after = "0s"\nrounds = 3\n')
    replays = query(db, "SELECT count(*) FROM tuner_replays WHERE kind = 'verify'")[0][0]
    run = tuner("nightly", "--config", str(config), "--trials", "2", *NIGHTLY, env=on(env, "zen4"), check=False)
    last = json.loads(tuner("nightly", "--last", "--json", env=on(env, "zen4")).stdout)
    [planned], [result] = last["plan"], last["results"]
    assert planned["action"] == "verify" and planned["reason"].startswith("fresh, chosen"), planned
    verify = result["verify"]
    assert query(db, "SELECT count(*) FROM tuner_replays WHERE kind = 'verify'")[0][0] == replays + 6
    assert result["outcome"] == {True: "verified", None: "unverified", False: "tuned"}[verify["holds"]], result
    assert run.returncode == (3 if verify["holds"] is False or result.get("slower") else 0), run.stdout

    # A library upgrade, simulated: the winner was chosen under another ONNX Runtime.
    execute(url, "UPDATE tuner_machines SET info = json_set(info, '$.libraries.onnxruntime', '1.0.0'), "
                 f"fingerprint = 'old-' || fingerprint, software_fingerprint = 'old' WHERE fingerprint = '{zen4}'")
    upgraded = json.loads(tuner("status", "--json", env=on(env, "zen4")).stdout)["winners"][0]
    installed = detect(str(FIXTURES / "zen4")).libraries["onnxruntime"]
    assert (upgraded["state"], upgraded["source"]) == ("stale", "previous incarnation")
    assert upgraded["reasons"] == [f"onnxruntime 1.0.0 -> {installed}"]
    plan = json.loads(tuner("nightly", "--dry-run", "--json", env=on(env, "zen4")).stdout)["plan"]
    assert [(i["action"], i["search"]) for i in plan] == [("retune", "short")]


def test_a_killed_nightly_is_resumed_without_a_trial_twice(tiny_bert_dir: Path, env, tmp_path: Path) -> None:
    model = str(tiny_bert_dir)
    db = tmp_path / "data" / "tuner.db"
    cascade = fingerprint("cascade_lake_2s")
    tuner("auto", "--model", model, *AUTO, env=on(env, "sapphire_rapids"))
    args = [sys.executable, "-m", "tuner", "nightly", "--trials", "4", *NIGHTLY]
    proc = subprocess.Popen(args, env=on(env, "cascade_lake_2s"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(study_trials(db, cascade)) < 2:
        time.sleep(0.3)
    if len(study_trials(db, cascade)) < 2:
        proc.kill()
        pytest.fail("the nightly re-tune stored no trials within 300 s")
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert query(db, "SELECT status FROM tuner_nightly_runs") == [("running",)]

    run = tuner("nightly", "--trials", "4", *NIGHTLY, env=on(env, "cascade_lake_2s"), check=False)
    assert run.returncode in (0, 3), run.stdout + run.stderr
    assert "was interrupted; resuming its plan" in run.stdout
    assert query(db, "SELECT status FROM tuner_nightly_runs ORDER BY id") == [("interrupted",), ("done",)]
    rows = study_trials(db, cascade)
    numbers = [n for n, _ in rows]
    assert len(numbers) == len(set(numbers)), rows
    assert counted(rows) == 4, rows  # the plan's 4 trials, not 4 more
    assert query(db, "SELECT count(*) FROM tuner_best b JOIN tuner_machines m ON b.machine_id = m.id "
                     "WHERE m.fingerprint = ?", cascade) == [(1,)]
