"""`tuner nightly` around its work: the machine lock, an empty database, the run log."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import run_tuner

from tuner.search.lock import MachineLock


def test_it_waits_for_the_lock_then_exits_1_saying_who_holds_it(env: dict[str, str]) -> None:
    with MachineLock(path=Path(env["TUNER_LOCK_FILE"]), what="tuner auto --model x"):
        held = run_tuner("nightly", "--lock-timeout", "2s", env=env, check=False)
    assert held.returncode == 1
    assert "waiting up to" in held.stdout and "tuner auto --model x" in held.stderr, held.stdout + held.stderr
    assert "gave up" in held.stderr and "Traceback" not in held.stderr


def test_an_empty_database_is_nothing_to_do_and_one_journal_line(env: dict[str, str]) -> None:
    assert "no nightly run recorded" in run_tuner("nightly", "--last", env=env).stdout
    done = run_tuner("nightly", env=env)
    assert done.stdout.strip().splitlines() == [
        "tuner nightly: nothing to do: no stored winner for this machine, a previous incarnation or a similar "
        "machine, and no --config"]
    last = run_tuner("nightly", "--last", env=env).stdout
    assert last.startswith("nightly run #1 on ") and ": done, exit 0;" in last
