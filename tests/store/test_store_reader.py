"""The lean read path of `tuner best` (tuner/store/_reader.py): DB-API directly, no
SQLAlchemy. Every query it runs returns what the store's ORM query returns, on SQLite
and on PostgreSQL; it opens where the read-only store would and leaves the rest to
it; its errors read as the store's; the names it uses are the schema's."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from store_helpers import execute, is_postgres

from tuner.errors import StoreError
from tuner.hardware import detect
from tuner.store import LeanReader, NewTrial, Store, open_reader
from tuner.store import _reader as R

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"
CPU_A = detect(str(FIXTURES / "sapphire_rapids")).to_dict()["cpu"]
CPU_B = detect(str(FIXTURES / "zen4")).to_dict()["cpu"]


def _fleet(url: str) -> None:
    """Three machines, two models (one model_id under two contents), winners at several
    lengths, objectives and batches, verify replays, nightly runs; NULLs, NaN and
    booleans of every kind where the schema allows them."""
    with Store.open(url) as store:
        a = store.upsert_machine({"cpu": CPU_A, "libraries": {"onnxruntime": "1.22.0"}}, "fp-a", "hw-a", "sw-a", "host-a")
        b = store.upsert_machine({"cpu": CPU_B}, "fp-b", "hw-b", "sw-b", "host-b")
        c = store.upsert_machine({"no": "cpu"}, "fp-c", "hw-a", "sw-c", "host-a")
        old = store.upsert_model("minilm", "hash-old", "/models/minilm", "embedding")
        new = store.upsert_model("minilm", "hash-new", "/models/minilm", "embedding")
        other = store.upsert_model("bert", "hash-bert", "/models/bert", "classification")
        n = 0
        for machine in (a, b, c):
            for model in (old, new, other):
                for seq_len in (16, 128):
                    for objective in ("p50", "throughput"):
                        if (machine, model, seq_len) == (c, other, 128):
                            continue  # a study without a winner
                        n += 1
                        study = store.get_or_create_study(
                            machine, model, seq_len, 1, objective, f"space-{n}", f"study-{n}", {"n": n, "x": None}
                        )
                        config = {"backend": "onnxruntime", "precision": "int8", "threads": n % 4 + 1}
                        ids = [
                            store.record_trial(
                                NewTrial(study.id, k, {**config, "k": k}, "ok", value=2.0 + k, median_ms=2.0 + k)
                            )
                            for k in range(2)
                        ]
                        if (machine, seq_len) == (c, 16) and model == other:
                            continue
                        store.set_best(
                            machine,
                            model,
                            seq_len,
                            1,
                            objective,
                            ids[n % 2],
                            config,
                            {"median_ms": 2.0, "value": float("nan") if n % 5 == 0 else 2.0},
                            5.0 if n % 3 else None,
                            2.5 if n % 3 else None,
                            speedup_low=2.4 if n % 2 else None,
                            speedup_high=2.6 if n % 2 else None,
                            significant=(True, False, None)[n % 3],
                            finalists=[{"speedup": 2.5}] if n % 4 == 0 else None,
                        )
                        if n % 3 == 0:
                            for role in ("candidate", "default"):
                                for round_ in range(2):
                                    store.record_replay(
                                        study.id,
                                        trial_id=ids[0] if role == "candidate" else None,
                                        kind="verify",
                                        role=role,
                                        round=round_,
                                        config=config,
                                        status="ok",
                                        median_ms=1.2 if round_ else None,
                                        samples_ms=[1.0, 1.5, float("nan")] if round_ else [],
                                        flags=["noisy"] if round_ else None,
                                        noise={"cv": 0.1} if round_ else None,
                                    )
        store.start_nightly_run(
            machine_id=a, hostname="host-a", fingerprint="fp-a", pid=7, settings={"previous_hosts": ["x"]}, plan=[]
        )
        store.start_nightly_run(machine_id=None, hostname="host-b", fingerprint="fp-b", pid=None, settings={}, plan=[{"w": 1}])


@pytest.fixture
def fleet(db_url: str) -> str:
    _fleet(db_url)
    return db_url


def _both(url: str) -> tuple[LeanReader, Store]:
    lean = LeanReader.open(url)
    assert lean is not None, "the lean path refused an up-to-date database"
    return lean, Store.open(url, read_only=True)


@pytest.fixture(params=["libpq", "psycopg"])
def driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """On PostgreSQL, the reader's two ways in: psycopg-binary's libpq through ctypes
    (tuner/store/_libpq.py), and psycopg itself where that cannot be used."""
    from tuner.store import _libpq

    if request.param == "psycopg":
        monkeypatch.setattr(_libpq, "connect", lambda arguments: None)
    elif _libpq.library() is None:
        pytest.skip("psycopg-binary's libpq is not installed here")
    return str(request.param)


CALLS = [
    ("best", ("fp-a", "minilm"), {}),
    ("best", ("fp-a", "minilm"), {"seq_len": 128}),
    ("best", ("fp-a", "hash-new"), {"seq_len": 16, "objective": "throughput"}),
    ("best", ("fp-b", "bert"), {"batch": 2}),
    ("best", ("fp-none", "minilm"), {}),
    ("peers", ("minilm", None, 1, "p50"), {}),
    ("peers", ("minilm", 128, 1, "p50"), {"winners_only": True}),
    ("peers", ("hash-bert", None, 1, "throughput"), {"exclude_fingerprint": "fp-a"}),
    ("peers", ("bert", 128, 1, "p50"), {"winners_only": True, "exclude_fingerprint": "fp-b"}),
    ("peers", ("nothing", None, 1, "p50"), {}),
    ("machines", (), {}),
    ("winners", (), {}),
    ("winners", ([1, 3],), {}),
    ("winners", ([],), {}),
    ("nightly_runs", (), {}),
    ("nightly_runs", (), {"hostname": "host-a"}),
    ("nightly_runs", (), {"limit": 1}),
]


def test_every_query_returns_what_the_store_returns(fleet: str, driver: str) -> None:
    lean, store = _both(fleet)
    assert lean.driver == (driver if is_postgres(fleet) else "sqlite3")
    with lean, store:
        for name, args, kwargs in CALLS:
            mine, theirs = getattr(lean, name)(*args, **kwargs), getattr(store, name)(*args, **kwargs)
            assert mine == theirs, (name, args, kwargs)
        assert lean.peers("minilm", None, 1, "p50")[0].cpu == CPU_A
        assert lean.machines()[2].info == {"no": "cpu"}
        studies = {w.study_id for w in store.winners()}
        for study_id in sorted(studies):
            for kind in (None, "verify", "finalist"):
                assert lean.replays(study_id, kind=kind) == store.replays(study_id, kind=kind)
        replays = [r for s in studies for r in lean.replays(s, kind="verify")]
        assert replays and any(r.samples_ms == [1.0, 1.5, None] for r in replays)
        bests = [w.best for w in lean.winners()]
        assert {b.significant for b in bests} == {True, False, None}
        assert any(b.metrics["value"] is None for b in bests)  # NaN stored as null
        assert all(b.updated.tzinfo is UTC for b in bests)


def test_times_come_back_as_the_store_returns_them(db_url: str, driver: str) -> None:
    """Microseconds and whole seconds, as aware UTC datetimes."""
    _fleet(db_url)
    for when in (T0, T0.replace(microsecond=0), T0 + timedelta(days=30)):
        value = when.replace(tzinfo=None).isoformat(sep=" ")
        execute(db_url, f"UPDATE tuner_machines SET last_seen = '{value}' WHERE fingerprint = 'fp-b'")
        lean, store = _both(db_url)
        with lean, store:
            assert lean.machines() == store.machines()
            assert [m.last_seen for m in lean.machines() if m.fingerprint == "fp-b"] == [when]


def test_open_reader_reads_lean_where_it_can_and_through_the_store_elsewhere(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fleet(db_url)
    with open_reader(db_url) as reader:
        assert isinstance(reader, LeanReader)
    if not is_postgres(db_url):
        path = db_url.removeprefix("sqlite:///")
        monkeypatch.chdir(Path(path).parent)
        for url in (path, Path(path).name, f"sqlite:///{Path(path).name}"):  # a bare path, a relative one
            with open_reader(url) as reader:
                assert isinstance(reader, LeanReader), url
                assert reader.machines()
        assert Path(path).name == "tuner.db"
        monkeypatch.setenv("TUNER_DATA_DIR", str(Path(path).parent))
        with open_reader(None) as reader:  # the default database
            assert isinstance(reader, LeanReader)
            assert reader.machines()
    # Another schema revision: the store's path (here: written by a newer tuner, refused).
    execute(db_url, "UPDATE tuner_alembic_version SET version_num = '9999'")
    assert LeanReader.open(db_url) is None
    with pytest.raises(StoreError) as lean:
        open_reader(db_url)
    with pytest.raises(StoreError) as store:
        Store.open(db_url, read_only=True)
    assert str(lean.value) == str(store.value)


def test_what_is_not_a_plain_database_is_opened_by_the_store(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    for url in (str(missing), f"sqlite:///{missing}", ":memory:", "sqlite://", f"sqlite:///{missing}?mode=ro",
                "postgresql+psycopg2://u@h/db", "postgresql://u@h1,h2/db", "postgresql://u@h/db?host=x"):
        assert LeanReader.open(url) is None, url
    with open_reader(str(missing)) as reader:  # nothing stored yet: empty, and nothing created
        assert isinstance(reader, Store) and reader.machines() == []
    assert not missing.exists()


def test_a_new_postgresql_database_reads_as_empty(postgres_url: str) -> None:
    assert LeanReader.open(postgres_url) is None
    with open_reader(postgres_url) as reader:
        assert reader.best("fp", "m") == []


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://tuner:s3cret@127.0.0.1:1/db",
        "postgresql+psycopg://tuner:s3cret@127.0.0.1:1/db?connect_timeout=2",
        "postgresql://tuner@127.0.0.1:1/db?password=t0p&sslmode=disable",
    ],
)
def test_a_server_that_cannot_be_reached_reads_as_the_store_says_it(url: str, driver: str) -> None:
    with pytest.raises(StoreError) as lean:
        open_reader(url)
    with pytest.raises(StoreError) as store:
        Store.open(url, read_only=True)
    assert str(lean.value) == str(store.value)
    assert "cannot reach the database server" in str(lean.value)
    assert "s3cret" not in str(lean.value) and "t0p" not in str(lean.value)


def test_a_file_that_is_not_a_database_reads_as_the_store_says_it(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError) as lean:
        open_reader(str(path))
    with pytest.raises(StoreError) as store:
        Store.open(str(path), read_only=True)
    assert str(lean.value) == str(store.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://tuner:s3cret@db.example:5433/fleet",
        "postgresql+psycopg://tuner:p%40ss%2Fw@[::1]/fleet?sslmode=require&connect_timeout=9",
        "postgresql://tuner@db.example/fleet?options=-c%20statement_timeout%3D5",
        "postgresql:///fleet",
        "postgresql://%74uner@db.example/fl%65et?application_name=x",
    ],
)
def test_psycopg_gets_the_arguments_sqlalchemy_gives_it(url: str) -> None:
    """The store's engine (resolve_url, the psycopg dialect, the read-only connect_args)
    and the lean path hand psycopg.connect the same keywords."""
    from tuner.store._engine import READ_ONLY_OPTIONS, resolve_url

    resolved = resolve_url(url)
    _, expected = resolved.get_dialect()().create_connect_args(resolved)
    expected.pop("context", None)  # SQLAlchemy's own adapters map
    expected["options"] = READ_ONLY_OPTIONS  # make_read_only_engine's connect_args win
    target = R._target(url)
    assert target is not None and target[0] == "postgresql"
    assert target[1] == expected


def test_sqlite_urls_name_the_file_the_store_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.store._engine import resolve_url, sqlite_file

    monkeypatch.chdir(tmp_path)
    for url in ("a.db", "~/x/a.db", str(tmp_path / "b c.db"), "sqlite:///rel/a.db", f"sqlite:///{tmp_path}/%61.db"):
        target = R._target(url)
        assert target == ("sqlite", sqlite_file(resolve_url(url))), url


def test_the_names_and_types_it_reads_are_the_schemas() -> None:
    """One description of the schema (_schema.py): every column the lean path names is
    there, and it decodes exactly the schema's JSON, time and boolean columns."""
    from sqlalchemy import Boolean

    from tuner.store._schema import Base, SafeJSON, UTCDateTime

    tables = Base.metadata.tables
    for table, columns in R.COLUMNS_READ.items():
        if table == R.VERSION_TABLE:
            continue
        assert set(columns) <= set(tables[table].c.keys()), table
        read = set(columns)
        for kinds, decoded in ((SafeJSON, R.JSON_COLUMNS), (UTCDateTime, R.TIME_COLUMNS), (Boolean, R.BOOL_COLUMNS)):
            of_kind = {c.name for c in tables[table].c if isinstance(c.type, kinds)} & read
            assert of_kind == set(decoded.get(table, ())), (table, kinds.__name__)


def _join_this_machine(url: str) -> None:
    """This machine with a fresh winner of "mine" at seq 16, as `tuner auto` leaves one
    (the space's hash today's, so the staleness check needs no Optuna)."""
    from tuner.space import load_space

    here = detect()
    with Store.open(url) as store:
        machine = store.upsert_machine(
            here.to_dict(), here.fingerprint, here.hardware_fingerprint, here.software_fingerprint, here.hostname
        )
        model = store.upsert_model("mine", "hash-mine", "/models/mine", "embedding")
        study = store.get_or_create_study(
            machine, model, 16, 1, "p50", load_space(here).content_hash(), "mine-16", {}
        )
        config = {"backend": "onnxruntime", "precision": "int8", "threads": 1}
        trial = store.record_trial(NewTrial(study.id, 0, config, "ok", value=2.0, median_ms=2.0))
        store.set_best(machine, model, 16, 1, "p50", trial, config, {"median_ms": 2.0}, 5.0, 2.5)


# What `tuner best` must not import: SQLAlchemy and the rest of the store's stack (nor
# psycopg, where psycopg-binary's libpq serves), the Store class itself, and what
# importlib.metadata brings (tuner._metadata reads versions without it).
HEAVY = ("sqlalchemy", "alembic", "optuna", "numpy", "psycopg", "email", "tuner.store._store", "importlib.metadata")


@pytest.mark.parametrize(
    ("form", "exit_code"),
    [
        (["--model", "mine", "--seq-len", "16"], 0),  # this machine's winner, its staleness checked
        (["--model", "mine", "--format", "shell"], 0),
        (["--model", "minilm", "--seq-len", "16"], 2),  # no winner here: names the most similar machine
        (["--model", "minilm", "--seq-len", "16", "--from-similar"], 0),
        (["--model", "hash-new", "--seq-len", "16", "--from-similar", "--format", "shell"], 0),
    ],
    ids=["json", "shell", "no-winner", "from-similar", "from-similar-shell"],
)
def test_reading_imports_no_sqlalchemy(fleet: str, form: list[str], exit_code: int) -> None:
    """The point of it: `tuner best` on an up-to-date database, in each of its forms,
    never imports what it does not need."""
    _join_this_machine(fleet)
    code = (
        "import sys\n"
        "from tuner.cli.main import main\n"
        f"rc = main(['best', '--db', {fleet!r}, *{form!r}])\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy))\n"
        "print('RC', rc, 'LOADED', loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f"RC {exit_code} LOADED []" in done.stdout, done.stdout + done.stderr


def test_optuna_storage_is_the_stores(fleet: str) -> None:
    """The staleness check asks Optuna which backends a study searched: the same storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=fleet, study_name="searched").enqueue_trial({"backend": "onnxruntime"})
    lean, store = _both(fleet)
    with lean, store:
        mine, theirs = lean.optuna_storage(), store.optuna_storage()
        try:
            assert [s.study_name for s in mine.get_all_studies()] == ["searched"]
            assert [s.study_name for s in theirs.get_all_studies()] == ["searched"]
        finally:
            mine.engine.dispose()
            theirs.engine.dispose()


def test_a_login_refused_reads_as_the_store_says_it(postgres_url: str, driver: str) -> None:
    """The fast path leaves a refused login to psycopg: the store's words, no password."""
    from sqlalchemy.engine import make_url

    _fleet(postgres_url)
    wrong = make_url(postgres_url).set(password="not-the-password").render_as_string(hide_password=False)
    with pytest.raises(StoreError) as lean:
        open_reader(wrong)
    with pytest.raises(StoreError) as store:
        Store.open(wrong, read_only=True)
    assert str(lean.value) == str(store.value)
    assert "refused the login" in str(lean.value) and "not-the-password" not in str(lean.value)


def test_a_query_error_on_the_fast_path_is_the_stores_error(fleet: str, driver: str) -> None:
    """A server's error inside a query (here: the table gone) is a StoreError or a bug,
    as the store's path judges it, whichever driver reads."""
    lean = LeanReader.open(fleet)
    assert lean is not None
    with lean:
        execute(fleet, "DROP TABLE tuner_nightly_runs")
        with pytest.raises(Exception) as raised:
            lean.nightly_runs()
    with Store.open(fleet, read_only=True) as store, pytest.raises(Exception) as expected:
        store.nightly_runs()
    assert isinstance(raised.value, StoreError) == isinstance(expected.value, StoreError)


def test_server_errors_are_classed_as_psycopg_classes_them() -> None:
    """The store tells a bug from the environment by the DB-API class (via SQLAlchemy):
    the fast path's classes are psycopg's for every PostgreSQL SQLSTATE."""
    import psycopg.errors

    from tuner.store import _libpq

    names = ("NotSupportedError", "IntegrityError", "DataError", "ProgrammingError", "InternalError",
             "OperationalError")
    checked = 0
    for code, cls in psycopg.errors._sqlcodes.items():
        if code[:2] not in _libpq.SQLSTATE_CLASSES and not code[:2].isdigit():
            continue  # another database's codes (psycopg knows CockroachDB's too)
        theirs = next((n for n in names if any(k.__name__ == n for k in cls.__mro__)), "DatabaseError")
        assert _libpq.error_class(code).__name__ == theirs, code
        checked += 1
    assert checked > 200


def test_a_url_psycopg_refuses_reads_as_the_store_says_it(driver: str) -> None:
    url = "postgresql://tuner:s3cret@127.0.0.1:1/db?connect_timeout=abc"
    with pytest.raises(StoreError) as lean:
        open_reader(url)
    with pytest.raises(StoreError) as store:
        Store.open(url, read_only=True)
    assert str(lean.value) == str(store.value) and "s3cret" not in str(lean.value)


def test_empty_values_and_nulls_read_as_psycopg_reads_them(postgres_url: str) -> None:
    """The fast path asks libpq whether a value is NULL only where it reads empty: an
    empty text, a NULL and the rest come back as psycopg returns them."""
    import psycopg

    from tuner.store import _libpq

    target = R._target(postgres_url)
    assert target is not None and isinstance(target[1], dict)
    fast = _libpq.connect(target[1])
    if fast is None:
        pytest.skip("psycopg-binary's libpq is not installed here")
    sql = (
        "SELECT ''::text, NULL::text, 'x'::text, 0, NULL::int, '{}'::json, NULL::json, false, NULL::boolean "
        "UNION ALL SELECT NULL, '', '', NULL, 7, NULL, '[]', NULL, true"
    )
    try:
        cursor = fast.cursor()
        cursor.execute(sql, ())
        mine = cursor.fetchall()
    finally:
        fast.close()
    with psycopg.connect(**target[1]) as connection:
        theirs = connection.execute(sql).fetchall()
    assert mine == theirs
    assert mine[0][:3] == ("", None, "x") and mine[1][:3] == (None, "", "")
