"""A fleet's database at scale, on PostgreSQL: `tuner best` end to end, the store's
fleet queries, and the dashboard, over 100 machines x 10 models x 2,000 trials.

    eval "$(scripts/start-postgres.sh)"
    python benchmarks/fleet_scale.py --server "$TUNER_TEST_POSTGRES_URL" [--runs 10]

1. The data: the synthetic fleet of tuner/service/synthetic.py (what
   benchmarks/serve_scale.py builds: 1,000 studies, 2,000,000 trial rows with their
   samples, 1,000 winners), built once as SQLite (``--sqlite``, reused when it exists)
   and copied with COPY into a database of its own on the server (``--database``,
   reused when it holds trials). The tuner's own migrations make the schema, and
   Optuna's tables are made as a study makes them.
2. This machine joins the fleet: its `tuner detect` fingerprint with a winner for
   ``org/encoder-3`` at seq 128 (as `tuner auto` leaves one: a study, its trials, the
   winner). The synthetic machines' winners stay theirs.
3. Timed, each ``--runs`` times after a warm-up (median and slowest):
   - `tuner best` as a deploy script runs it, a new process each time (its bytecode
     written first, as installing it writes it: ``compile_bytecode``): this machine's
     winner as JSON, as a shell prefix; a model it has no winner for (the error that
     names the most similar machine); that one with ``--from-similar``; and the first,
     for comparison, against a PostgreSQL database and a SQLite file that hold this
     machine's winner alone (what the fleet's size adds is the difference);
   - inside one process: the store's queries behind them (``best``, ``peers``,
     ``winners``), so what the database adds is seen apart from Python's start;
   - the dashboard (`tuner serve`'s app on this database, as serve_scale.py times it).
The target (issue 13): `tuner best` under 300 ms end to end.

``--baseline DIR`` also times each `tuner best` from an earlier tuner's source tree,
interleaved run by run with this one (the same load for both):

    mkdir /tmp/tuner-before && git archive REV | tar -x -C /tmp/tuner-before
    git rev-parse REV > /tmp/tuner-before/.rev
    python benchmarks/fleet_scale.py --baseline /tmp/tuner-before --best-only

``--best-only`` times `tuner best` alone (not the queries in one process, not the dashboard).
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_scale  # noqa: E402  (the dashboard's timing)

TARGET_MS = 300.0
MODEL, OTHER_MODEL, SEQ = "org/encoder-3", "org/encoder-5", 128
# The tables the synthetic store fills, in an order their foreign keys accept.
TABLES = ("tuner_machines", "tuner_models", "tuner_studies", "tuner_trials", "tuner_best", "tuner_replays")


def database_url(server: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server).set(database=name).render_as_string(hide_password=False)


def load(server: str, name: str, sqlite_path: Path) -> str:
    """The fleet on the server (built and copied unless it is there); its URL."""
    from sqlalchemy import create_engine, text

    from tuner.service.synthetic import Shape, build
    from tuner.store import Store

    url = database_url(server, name)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    with Store.open(url) as store:  # the schema, by the tuner's own migrations
        engine = store._engine
        with engine.connect() as connection:
            trials = connection.execute(text("SELECT count(*) FROM tuner_trials")).scalar_one()
    if trials:
        print(f"# {name}: {trials:,} trials already there", file=sys.stderr)
        return url
    if not sqlite_path.exists():
        started = time.perf_counter()
        counts = build(sqlite_path, Shape())
        print(f"# built {sqlite_path} in {time.perf_counter() - started:.0f} s: {counts}", file=sys.stderr)
    started = time.perf_counter()
    source = sqlite3.connect(sqlite_path)
    import psycopg

    with psycopg.connect(_libpq(url)) as target:
        for table in TABLES:
            columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
            kinds = _kinds(target, table)
            rows = source.execute(f"SELECT {', '.join(columns)} FROM {table}")
            with target.cursor() as cursor:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([_value(v, kinds[c]) for v, c in zip(row, columns)])
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT coalesce(max(id), 1) FROM {table}))")
            print(f"#   {table}: copied ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        target.commit()
        target.autocommit = True
        target.execute("ANALYZE")
    source.close()
    print(f"# copied {sqlite_path} into {name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return url


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return (f"host={parsed.host} port={parsed.port} dbname={parsed.database} user={parsed.username} "
            f"password={parsed.password}")


def _kinds(connection: Any, table: str) -> dict[str, str]:
    rows = connection.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
                              (table,)).fetchall()
    return {name: kind for name, kind in rows}


def _value(value: Any, kind: str) -> Any:
    """A SQLite value as PostgreSQL's column takes it: 0/1 as a boolean."""
    if kind == "boolean" and value is not None:
        return bool(value)
    return value


def space_hash(here: Any) -> str:
    """The hash of this machine's whole space, as a study of it records (so the winner is fresh)."""
    from tuner.search.objective import space_objective
    from tuner.space import load_space

    return str(load_space(here, objective=space_objective("p50")).content_hash())


def join_this_machine(url: str) -> Any:
    """This machine with a winner for MODEL at SEQ, as `tuner auto` leaves one."""
    import optuna

    from tuner.hardware import detect
    from tuner.store import NewTrial, Store

    optuna.storages.RDBStorage(url).engine.dispose()  # Optuna's tables, as a study makes them
    here = detect()
    config = {"backend": "onnxruntime", "precision": "int8", "threads": 2, "binding": "none", "allocator": "system"}
    with Store.open(url) as store:
        machine = store.upsert_machine(here.to_dict(), here.fingerprint, here.hardware_fingerprint,
                                       here.software_fingerprint, here.hostname)
        model = next(m for m in store.models() if m.model_id == MODEL)
        study = store.get_or_create_study(machine, model.id, SEQ, 1, "p50", space_hash(here),
                                          f"bench:{here.fingerprint}", {"strategy": "structured"})
        if not store.best(here.fingerprint, MODEL, seq_len=SEQ):
            ids = [store.record_trial(NewTrial(study.id, n, config, "ok", value=2.0 + n, median_ms=2.0 + n))
                   for n in range(3)]
            store.set_best(machine, model.id, SEQ, 1, "p50", ids[0], config, {"median_ms": 2.0}, 5.0, 2.5)
    return here


def alone(url: str, here: Any) -> str:
    """A database holding this machine's winner alone (what the tuner costs without a fleet)."""
    import optuna

    from tuner.store import NewTrial, Store

    optuna.storages.RDBStorage(url).engine.dispose()
    config = {"backend": "onnxruntime", "precision": "int8", "threads": 2, "binding": "none", "allocator": "system"}
    with Store.open(url) as store:
        if not store.best(here.fingerprint, MODEL, seq_len=SEQ):
            machine = store.upsert_machine(here.to_dict(), here.fingerprint, here.hardware_fingerprint,
                                           here.software_fingerprint, here.hostname)
            model = store.upsert_model(MODEL, f"{3:064x}", "/models/encoder-3", "embedding")
            study = store.get_or_create_study(machine, model, SEQ, 1, "p50", space_hash(here), "alone",
                                              {"strategy": "structured"})
            trial = store.record_trial(NewTrial(study.id, 0, config, "ok", value=2.0, median_ms=2.0))
            store.set_best(machine, model, SEQ, 1, "p50", trial, config, {"median_ms": 2.0}, 5.0, 2.5)
    return url


def compile_bytecode(tree: Path | None) -> None:
    """Write the bytecode of the tuner ``python -m tuner`` imports from ``tree`` (None:
    from here), as installing it does. Where PYTHONDONTWRITEBYTECODE is set (as in the
    sessions these figures come from), a fresh source tree has none and every changed
    module has stale bytecode, so each run would compile them again: 100 ms or more of
    a `tuner best` here, which a deployed tuner never pays, and more for a tree freshly
    unpacked than for this one."""
    done = subprocess.run([sys.executable, "-c", "import tuner; print(tuner.__file__)"], capture_output=True,
                          text=True, cwd=tree, check=True)
    package = Path(done.stdout.strip()).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL)


def command(args: list[str], runs: int, ok: tuple[int, ...] = (0,),
            trees: tuple[Path | None, ...] = (None,)) -> list[tuple[list[float], list[float], str]]:
    """Wall and CPU (user + system) milliseconds of ``tuner ARGS``, a new process each
    run, after one warm-up; and its last line of output. ``trees``: the source trees to
    run it from, interleaved run by run (None: the installed tuner; a folder: the tuner
    in it, as ``python -m tuner`` there imports it), one result each."""
    found: list[tuple[list[float], list[float], str]] = [([], [], "") for _ in trees]
    for tree in trees:
        compile_bytecode(tree)
    for i in range(runs + 1):
        for (walls, cpus, _), tree, k in zip(found, trees, range(len(trees))):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "tuner", *args], capture_output=True, text=True,
                                  cwd=tree)
            wall = (time.perf_counter() - started) * 1000
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode not in ok:
                raise SystemExit(f"tuner {' '.join(args[:2])} ... exited {done.returncode}: {done.stderr[-2000:]}")
            found[k] = (walls, cpus, (done.stderr.strip().splitlines() or [""])[-1])
            if i:
                walls.append(wall)
                cpus.append(((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000)
    return found


def baseline_tree(folder: Path) -> str:
    """The revision of an earlier tuner's source tree (``git archive REV | tar -x -C
    FOLDER``; its .rev file, if any, names it), checked to be what ``python -m tuner``
    imports there."""
    done = subprocess.run([sys.executable, "-c", "import tuner; print(tuner.__file__)"], capture_output=True,
                          text=True, cwd=folder, check=True)
    if not Path(done.stdout.strip()).resolve().is_relative_to(folder.resolve()):
        raise SystemExit(f"--baseline {folder}: python -m tuner there imports {done.stdout.strip()}, not its tuner/")
    rev = folder / ".rev"
    return rev.read_text().strip()[:10] if rev.is_file() else folder.name


def in_process(call: Callable[[], Any], runs: int) -> list[float]:
    call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def dashboard(url: str, requests: int) -> list[tuple[str, float, float]]:
    import http.client

    import uvicorn

    from tuner.service.app import create_app
    from tuner.service.db import open_readonly

    store = open_readonly(url)
    app = create_app(store)
    port = serve_scale.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    found = []
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        connection.request("GET", "/api/v1/studies?limit=1")
        study = max(1, int(__import__("json").loads(connection.getresponse().read())["total"]) // 2)
        for label, path in [("overview API", "/api/v1/overview"),
                            ("a study's first trial page", f"/api/v1/studies/{study}/trials?limit=50"),
                            ("... filtered and sorted", f"/api/v1/studies/{study}/trials?status=ok&sort=median_ms&limit=50"),
                            ("the study's plot columns", f"/api/v1/studies/{study}/series")]:
            times, _ = serve_scale.timed(connection, path, requests)
            found.append((label, statistics.median(times), max(times)))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("TUNER_TEST_POSTGRES_URL"),
                        help="a PostgreSQL URL whose user may create databases (default: $TUNER_TEST_POSTGRES_URL)")
    parser.add_argument("--database", default="tuner_fleet_scale")
    parser.add_argument("--sqlite", type=Path, default=Path("/tmp/serve-scale.db"),
                        help="the synthetic fleet as SQLite (built when missing; serve_scale.py's default file)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL's plans of the `tuner best` queries")
    parser.add_argument("--baseline", type=Path, action="append", default=[], metavar="DIR",
                        help="also time `tuner best` from an earlier tuner's source tree (git archive REV | tar -x "
                             "-C DIR), interleaved run by run with this one (repeatable)")
    parser.add_argument("--best-only", action="store_true",
                        help="time `tuner best` alone (not the store's queries, not the dashboard)")
    args = parser.parse_args()
    if not args.server:
        parser.error("pass --server postgresql://... (or start one: eval \"$(scripts/start-postgres.sh)\")")

    from sqlalchemy import create_engine, text

    from tuner.deploy.lookup import closest_winner
    from tuner.store import Store

    url = load(args.server, args.database, args.sqlite)
    here = join_this_machine(url)
    pg_alone = database_url(args.server, f"{args.database}_alone")
    admin = create_engine(args.server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if not connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": f"{args.database}_alone"}).first():
            connection.execute(text(f'CREATE DATABASE "{args.database}_alone"'))
    admin.dispose()
    alone(pg_alone, here)
    sqlite_alone = alone(f"sqlite:///{args.sqlite.parent / 'fleet-scale-alone.db'}", here)
    env_runs = args.runs
    print(f"# {here.cpu.model_name} (family {here.cpu.family}, model {here.cpu.model}), "
          f"{len(here.available_cpus)} CPUs; load average {os.getloadavg()[0]:.1f} at the start")

    trees: tuple[Path | None, ...] = (None, *args.baseline)
    revisions = {tree: baseline_tree(tree) for tree in args.baseline}
    rows: list[tuple[str, list[float], list[float] | None]] = []
    for label, cli, ok in [
        ("tuner best --format json (this machine's winner)", ["best", "--db", url, "--model", MODEL], (0,)),
        ("tuner best --format shell --seq-len 128", ["best", "--db", url, "--model", MODEL, "--seq-len", str(SEQ),
                                                      "--format", "shell"], (0,)),
        ("tuner best, no winner here (names the most similar)", ["best", "--db", url, "--model", OTHER_MODEL], (2,)),
        ("tuner best --from-similar", ["best", "--db", url, "--model", OTHER_MODEL, "--from-similar"], (0,)),
        ("tuner best --format json, PostgreSQL with this winner alone",
         ["best", "--db", pg_alone, "--model", MODEL], (0,)),
        ("tuner best --format json, SQLite with this winner alone",
         ["best", "--db", sqlite_alone, "--model", MODEL], (0,)),
    ]:
        for (walls, cpus, last), tree in zip(command(cli, env_runs, ok, trees), trees):
            shown = label if tree is None else f"{label}, before ({revisions[tree]})"
            rows.append((shown, walls, cpus))
            print(f"  {shown}: {statistics.median(walls):.0f} ms ({last[:120]})", file=sys.stderr)
    if args.best_only:
        _table(rows, args.runs)
        return 0

    from tuner.store import LeanReader

    lean = LeanReader.open(url)
    assert lean is not None
    with lean:
        for label, call in [
            ("lean best (`tuner best`'s read, no SQLAlchemy)", lambda: lean.best(here.fingerprint, MODEL, seq_len=SEQ)),
            ("lean peers", lambda: lean.peers(OTHER_MODEL, None, 1, "p50", winners_only=True)),
            # What judge_winners reads: this machine's row through its winners of the
            # model, then its winners (not every machine, as it did before).
            ("lean best + winners (the staleness check)",
             lambda: lean.winners([b.machine_id for b in lean.best(here.fingerprint, f"{3:064x}")])),
            ("lean machines (every machine: what the staleness check read before)", lambda: lean.machines()),
        ]:
            rows.append((label, in_process(call, args.runs * 3), None))

    with Store.open(url, read_only=True) as store:
        model_hash = f"{3:064x}"
        for label, call in [
            ("store.best (this machine, the model)", lambda: store.best(here.fingerprint, MODEL, seq_len=SEQ)),
            ("store.peers (machines with a winner of the model)",
             lambda: store.peers(OTHER_MODEL, None, 1, "p50", winners_only=True)),
            ("closest_winner (peers ranked by similarity)",
             lambda: closest_winner(store, here, OTHER_MODEL, None, 1, "p50")),
            ("store.peers + top_trials (a new study's similar start)",
             lambda: [store.top_trials(p.study_ids[0], 5) for p in store.peers(model_hash, SEQ, 1, "p50")[:3]]),
            ("store.winners (this machine's, for the staleness check)",
             lambda: store.winners([store.best(here.fingerprint, MODEL)[0].machine_id])),
        ]:
            rows.append((label, in_process(call, args.runs * 3), None))
        if args.explain:
            _explain(store, here.fingerprint)

    _table(rows, args.runs, dashboard(url, args.runs))
    return 0


def _table(rows: list[tuple[str, list[float], list[float] | None]], runs: int,
           dashboard_rows: list[tuple[str, float, float]] | None = None) -> None:
    print(f"\n100 machines x 10 models x 2,000 trials on PostgreSQL; {runs} runs after a warm-up "
          f"(in-process queries: {runs * 3})")
    print("| what | median ms | slowest ms | CPU ms (median) | CPU ms (slowest) |")
    print("|---|---|---|---|---|")
    for label, times, cpus in rows:
        cpu = f"{statistics.median(cpus):.0f} | {max(cpus):.0f}" if cpus else "- | -"
        print(f"| {label} | {statistics.median(times):.1f} | {max(times):.1f} | {cpu} |")
    for label, median, slowest in dashboard_rows or []:
        print(f"| dashboard: {label} | {median:.1f} | {slowest:.1f} | - | - |")
    mine = [(label, t) for label, t, c in rows if c is not None and "alone" not in label and "before" not in label]
    worst = max(statistics.median(t) for _, t in mine)
    print(f"\ntarget: `tuner best` under {TARGET_MS:.0f} ms end to end: {'met' if worst < TARGET_MS else 'NOT met'} "
          f"(slowest median {worst:.0f} ms); load average {os.getloadavg()[0]:.1f} at the end")


def _explain(store: Any, fingerprint: str) -> None:
    from sqlalchemy import text

    for query in [
        "SELECT b.* FROM tuner_best b JOIN tuner_machines m ON b.machine_id = m.id JOIN tuner_models o "
        "ON b.model_pk = o.id WHERE m.fingerprint = :fp AND (o.model_id = :model OR o.content_hash = :model) "
        "AND b.batch = 1 AND b.objective = 'p50'",
        "SELECT t.config, t.value FROM tuner_trials t WHERE t.study_id = 500 AND t.status = 'ok' "
        "AND t.value IS NOT NULL ORDER BY t.value, t.number LIMIT 5",
    ]:
        with store._engine.connect() as connection:
            plan = connection.execute(text("EXPLAIN ANALYZE " + query), {"fp": fingerprint, "model": MODEL}).all()
        print("\n".join(row[0] for row in plan), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
