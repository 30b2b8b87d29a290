"""The lean read path of `tuner best`: the few queries it runs, on DB-API directly.

`tuner best` runs in a deploy script, a new process each time, and must answer within
300 ms (issue 13). Importing SQLAlchemy's ORM and the store's classes costs most of
that before any query, so this module imports neither: it opens the database the way
the read-only ``Store`` does (SQLite through ``read_only_connector``: ``mode=ro``, or
``immutable=1`` where the folder cannot be written; PostgreSQL with psycopg's connect
arguments, the same connect timeout, every transaction READ ONLY: through the libpq
psycopg-binary ships, with ctypes (_libpq.py: importing psycopg costs more than all
the rest), else through psycopg) and runs plain SQL over the table names of
``_names`` (the ones ``_schema`` uses).

``LeanReader`` has the read methods `tuner best` calls on a store (``best``, ``peers``,
``machines``, ``winners``, ``nightly_runs``, ``replays``, ``optuna_storage``), each
returning the same records as ``Store``'s (tests/store compares them on SQLite and
PostgreSQL). ``open_reader`` returns one where it can, and ``Store.open(url,
read_only=True)`` otherwise: a URL of another form or driver, a database that is
missing, empty, or at another schema revision. An error is worded by the store's own
functions (then SQLAlchemy is imported, on that path only), so a message and its
masked password read as they always did.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl, unquote

from tuner.store._names import (
    BEST,
    MACHINES,
    MODELS,
    NIGHTLY_RUNS,
    REPLAYS,
    SCHEMA_HEAD,
    STUDIES,
    TRIALS,
    VERSION_TABLE,
)
from tuner.store._nightly import NightlyRunRecord, WinnerRecord
from tuner.store._records import BestRecord, MachineRecord, ModelRecord, ReplayRecord

if TYPE_CHECKING:
    # Imported in peers(): the fleet's record (and the similarity ranking its module
    # brings) is for the forms of `tuner best` that look at other machines.
    from tuner.store._similar import PeerRecord

# How each column is stored, where it is not a plain number or text: decoded as the
# schema's types decode them (SafeJSON, UTCDateTime, Boolean). tests/store checks
# these sets against _schema's columns.
JSON_COLUMNS: dict[str, frozenset[str]] = {
    MACHINES: frozenset({"info"}),
    STUDIES: frozenset({"settings"}),
    BEST: frozenset({"config", "metrics", "finalists"}),
    REPLAYS: frozenset({"config", "samples_ms", "flags", "noise"}),
    NIGHTLY_RUNS: frozenset({"settings", "plan", "results"}),
}
TIME_COLUMNS: dict[str, frozenset[str]] = {
    MACHINES: frozenset({"first_seen", "last_seen"}),
    MODELS: frozenset({"created"}),
    BEST: frozenset({"updated"}),
    REPLAYS: frozenset({"created"}),
    NIGHTLY_RUNS: frozenset({"started", "finished"}),
}
BOOL_COLUMNS: dict[str, frozenset[str]] = {BEST: frozenset({"significant"})}

# The columns each query reads: the records' fields, less what a join adds.
MACHINE_COLUMNS = tuple(f.name for f in fields(MachineRecord))
MODEL_COLUMNS = tuple(f.name for f in fields(ModelRecord))
_JOINED = ("fingerprint", "model_id", "content_hash")
BEST_COLUMNS = tuple(f.name for f in fields(BestRecord) if f.name not in _JOINED)
REPLAY_COLUMNS = tuple(f.name for f in fields(ReplayRecord))
NIGHTLY_COLUMNS = tuple(f.name for f in fields(NightlyRunRecord))
STUDY_COLUMNS = ("id", "optuna_study_name", "space_hash", "settings")  # what a WinnerRecord carries
# Every (table, column) named in this module's SQL, for the test against the schema.
COLUMNS_READ: dict[str, tuple[str, ...]] = {
    MACHINES: MACHINE_COLUMNS,
    MODELS: MODEL_COLUMNS,
    BEST: (*BEST_COLUMNS, "id", "tuner_version"),
    STUDIES: (*STUDY_COLUMNS, "machine_id", "model_pk", "seq_len", "batch", "objective"),
    TRIALS: ("id", "study_id"),
    REPLAYS: REPLAY_COLUMNS,
    NIGHTLY_RUNS: NIGHTLY_COLUMNS,
    VERSION_TABLE: ("version_num",),
}

# SQLAlchemy's URL syntax (sqlalchemy.engine.url._parse_url), so a URL means here what
# it means to the store.
_URL = re.compile(
    r"""
    (?P<name>[\w\+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/\?]+)\]|(?P<ipv4host>[^/:\?]+))?(?::(?P<port>[^/\?]*))?)?
    (?:/(?P<database>[^\?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.X,
)
_POSTGRES_NAMES = ("postgresql", "postgresql+psycopg")


def open_reader(url: str | None = None) -> Any:
    """What `tuner best` reads through: a ``LeanReader`` where the URL and the database
    allow it, else ``Store.open(url, read_only=True)`` (same methods, same records)."""
    reader = LeanReader.open(url)
    if reader is not None:
        return reader
    from tuner.store._store import Store

    return Store.open(url, read_only=True)


class LeanReader:
    """A read-only database connection with the store's read methods `tuner best` uses."""

    read_only = True
    driver = ""  # what reads: sqlite3, libpq (psycopg-binary's, through _libpq) or psycopg

    def __init__(self, connection: Any, postgres: bool, url: str | None, base: type[Exception]) -> None:
        self._connection = connection
        self._postgres = postgres
        self._url = url  # as given: resolved by the store's own code where an error is worded
        self._base = base  # the driver's DB-API Error
        self._closed = False

    @classmethod
    def open(cls, url: str | None = None) -> LeanReader | None:
        """The reader, or None where the store's own path should open ``url``: another
        form or driver, no such SQLite file, no tuner tables, another schema revision."""
        target = _target(url)
        if target is None:
            return None
        kind, where = target
        try:
            if kind == "sqlite":
                import sqlite3

                from tuner.store._dbapi import read_only_connector

                assert isinstance(where, Path)
                if not where.is_file():
                    return None  # read as empty, by the store
                base: type[Exception] = sqlite3.Error
                connect = read_only_connector(where)
                driver = "sqlite3"
            else:
                from tuner.store import _libpq

                assert isinstance(where, dict)
                fast = _libpq.connect(where)  # psycopg's own libpq, without importing psycopg
                if fast is not None:
                    base, driver = _libpq.Error, "libpq"

                    def connect() -> Any:
                        return fast

                else:  # the canonical way: psycopg connects, or says why it cannot
                    import psycopg

                    base, driver = psycopg.Error, "psycopg"

                    def connect() -> Any:
                        return psycopg.connect(**where)

        except ImportError:
            return None  # no driver: the store says what to install
        try:
            connection = connect()
        except base as exc:
            _raise(exc, url, None, base)
        reader = cls(connection, kind == "postgresql", url, base)
        reader.driver = driver
        try:
            revisions = reader._revisions()
        except BaseException:
            reader.close()
            raise
        if revisions != (SCHEMA_HEAD,):
            reader.close()
            return None
        return reader

    def _revisions(self) -> tuple[str, ...]:
        """The schema revisions stamped in the database; () where its table is missing."""
        if self._postgres:
            exists = "SELECT to_regclass(?) IS NOT NULL"
        else:
            exists = "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?"
        with self._transaction() as run:
            if not run(exists, (VERSION_TABLE,))[0][0]:
                return ()
            return tuple(sorted(row[0] for row in run(f"SELECT version_num FROM {VERSION_TABLE}")))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.close()

    def __enter__(self) -> LeanReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "LeanReader(...)"

    def optuna_storage(self) -> Any:
        """Optuna's read-only storage on this database (the staleness check asks it which
        backends a study searched, only when the space's hash changed): the store's way."""
        from tuner.store._engine import resolve_url
        from tuner.store._optuna import optuna_storage

        return optuna_storage(resolve_url(self._url), read_only=True)

    # -- the queries ----------------------------------------------------------------

    def best(
        self,
        fingerprint: str,
        model: str,
        seq_len: int | None = None,
        batch: int = 1,
        objective: str = "p50",
    ) -> list[BestRecord]:
        """``Store.best``: this machine's winners of the model, by seq_len."""
        sql = (
            f"SELECT {_cols('b', BEST_COLUMNS)}, m.fingerprint, d.model_id, d.content_hash "
            f"FROM {BEST} b JOIN {MACHINES} m ON b.machine_id = m.id JOIN {MODELS} d ON b.model_pk = d.id "
            "WHERE m.fingerprint = ? AND (d.model_id = ? OR d.content_hash = ?) AND b.batch = ? AND b.objective = ?"
        )
        params: list[Any] = [fingerprint, model, model, batch, objective]
        if seq_len is not None:
            sql += " AND b.seq_len = ?"
            params.append(seq_len)
        with self._transaction() as run:
            rows = run(sql + " ORDER BY b.seq_len, d.id", params)
        return [self._best(row) for row in rows]

    def peers(
        self,
        model: str,
        seq_len: int | None,
        batch: int,
        objective: str,
        *,
        winners_only: bool = False,
        exclude_fingerprint: str | None = None,
    ) -> list[PeerRecord]:
        """``Store.peers``: the machines with a winner (or a study) of the workload."""
        from tuner.store._similar import PeerRecord

        where = "(d.model_id = ? OR d.content_hash = ?) AND {t}.batch = ? AND {t}.objective = ?"
        params: list[Any] = [model, model, batch, objective]
        if seq_len is not None:
            where += " AND {t}.seq_len = ?"
            params.append(seq_len)
        best_sql = (
            f"SELECT {_cols('b', BEST_COLUMNS)}, m.fingerprint, d.model_id, d.content_hash "
            f"FROM {BEST} b JOIN {MACHINES} m ON b.machine_id = m.id JOIN {MODELS} d ON b.model_pk = d.id "
            f"WHERE {where.format(t='b')} ORDER BY b.seq_len, b.id"
        )
        study_sql = (
            f"SELECT s.id, s.machine_id FROM {STUDIES} s JOIN {MODELS} d ON s.model_pk = d.id "
            f"WHERE {where.format(t='s')} ORDER BY s.id DESC"
        )
        cpu = "m.info -> 'cpu'" if self._postgres else "json_quote(json_extract(m.info, '$.\"cpu\"'))"
        with self._transaction() as run:
            winners: dict[int, BestRecord] = {}
            for row in run(best_sql, params):
                record = self._best(row)
                winners.setdefault(record.machine_id, record)
            studies: dict[int, list[int]] = {}
            if not winners_only:
                for study_id, machine_id in run(study_sql, params):
                    studies.setdefault(machine_id, []).append(study_id)
            wanted = sorted(winners.keys() | studies.keys())
            if not wanted:
                return []
            machines = run(
                f"SELECT m.id, m.fingerprint, m.hardware_fingerprint, m.hostname, m.last_seen, {cpu} "
                f"FROM {MACHINES} m WHERE m.id IN ({', '.join('?' * len(wanted))}) ORDER BY m.id",
                wanted,
            )
        found = []
        for machine_id, fingerprint, hardware_fingerprint, hostname, last_seen, info_cpu in machines:
            if fingerprint == exclude_fingerprint:
                continue
            cpu_value = info_cpu if self._postgres or info_cpu is None else json.loads(info_cpu)
            found.append(
                PeerRecord(
                    machine_id=machine_id,
                    fingerprint=fingerprint,
                    hardware_fingerprint=hardware_fingerprint,
                    hostname=hostname,
                    cpu=dict(cpu_value) if isinstance(cpu_value, dict) else {},
                    last_seen=self._time(last_seen),
                    best=winners.get(machine_id),
                    study_ids=tuple(studies.get(machine_id, ())),
                )
            )
        return found

    def machines(self) -> list[MachineRecord]:
        """``Store.machines``: every machine, by id."""
        with self._transaction() as run:
            rows = run(f"SELECT {_cols('m', MACHINE_COLUMNS)} FROM {MACHINES} m ORDER BY m.id")
        return [MachineRecord(**self._decode(MACHINES, MACHINE_COLUMNS, row)) for row in rows]

    def nightly_runs(self, limit: int | None = None, hostname: str | None = None) -> list[NightlyRunRecord]:
        """``Store.nightly_runs``: newest first (of ``hostname`` when given)."""
        sql = f"SELECT {_cols('n', NIGHTLY_COLUMNS)} FROM {NIGHTLY_RUNS} n"
        params: list[Any] = []
        if hostname is not None:
            sql += " WHERE n.hostname = ?"
            params.append(hostname)
        sql += " ORDER BY n.id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._transaction() as run:
            rows = run(sql, params)
        return [NightlyRunRecord(**self._decode(NIGHTLY_RUNS, NIGHTLY_COLUMNS, row)) for row in rows]

    def winners(self, machine_ids: Sequence[int] | None = None) -> list[WinnerRecord]:
        """``Store.winners``: every winner (of these machines) with its machine, model and study."""
        best_cols = (*BEST_COLUMNS, "tuner_version")
        sql = (
            f"SELECT {_cols('b', best_cols)}, {_cols('m', MACHINE_COLUMNS)}, {_cols('d', MODEL_COLUMNS)}, "
            f"{_cols('s', STUDY_COLUMNS)} "
            f"FROM {BEST} b JOIN {MACHINES} m ON b.machine_id = m.id JOIN {MODELS} d ON b.model_pk = d.id "
            f"JOIN {TRIALS} t ON b.trial_id = t.id JOIN {STUDIES} s ON t.study_id = s.id"
        )
        params = list(machine_ids) if machine_ids is not None else []
        if machine_ids is not None:
            if not params:
                return []
            sql += f" WHERE b.machine_id IN ({', '.join('?' * len(params))})"
        sql += " ORDER BY m.id, d.id, b.seq_len, b.batch, b.objective"
        with self._transaction() as run:
            rows = run(sql, params)
        found = []
        a, b, c = (
            len(best_cols),
            len(best_cols) + len(MACHINE_COLUMNS),
            len(best_cols) + len(MACHINE_COLUMNS) + len(MODEL_COLUMNS),
        )
        for row in rows:
            best = self._decode(BEST, best_cols, row[:a])
            machine = MachineRecord(**self._decode(MACHINES, MACHINE_COLUMNS, row[a:b]))
            model = ModelRecord(**self._decode(MODELS, MODEL_COLUMNS, row[b:c]))
            study = self._decode(STUDIES, STUDY_COLUMNS, row[c:])
            tuner_version = best.pop("tuner_version")
            found.append(
                WinnerRecord(
                    best=BestRecord(
                        **best,
                        fingerprint=machine.fingerprint,
                        model_id=model.model_id,
                        content_hash=model.content_hash,
                    ),
                    machine=machine,
                    model=model,
                    study_id=study["id"],
                    optuna_study_name=study["optuna_study_name"],
                    space_hash=study["space_hash"],
                    study_settings=dict(study["settings"] or {}),
                    tuner_version=tuner_version,
                )
            )
        return found

    def replays(self, study_id: int, kind: str | None = None) -> list[ReplayRecord]:
        """``Store.replays``: the study's re-measurements in the order they ran."""
        sql = f"SELECT {_cols('r', REPLAY_COLUMNS)} FROM {REPLAYS} r WHERE r.study_id = ?"
        params: list[Any] = [study_id]
        if kind is not None:
            sql += " AND r.kind = ?"
            params.append(kind)
        with self._transaction() as run:
            rows = run(sql + " ORDER BY r.id", params)
        found = []
        for row in rows:
            values = self._decode(REPLAYS, REPLAY_COLUMNS, row)
            values["samples_ms"] = values["samples_ms"] or []
            found.append(ReplayRecord(**values))
        return found

    # -- plumbing ---------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """``run(sql, params) -> rows`` inside one transaction (a method of the store is
        one); a driver's error becomes the store's StoreError, or is re-raised (a bug)."""
        if self._closed:
            raise RuntimeError("this reader is closed")
        connection = self._connection
        statement: list[str | None] = [None]

        def run(sql: str, params: Sequence[Any] = ()) -> list[Any]:
            if self._postgres:
                sql = sql.replace("?", "%s")
            statement[0] = sql
            cursor = connection.cursor()
            try:
                cursor.execute(sql, tuple(params))
                return list(cursor.fetchall())
            finally:
                cursor.close()

        try:
            yield run
            if self._postgres:
                connection.rollback()  # READ ONLY: nothing to commit; ends the transaction
        except self._base as exc:
            try:
                connection.rollback()
            except self._base:
                pass
            _raise(exc, self._url, statement[0], self._base)

    def _best(self, row: Sequence[Any]) -> BestRecord:
        values = self._decode(BEST, BEST_COLUMNS, row[: len(BEST_COLUMNS)])
        fingerprint, model_id, content_hash = row[len(BEST_COLUMNS) :]
        return BestRecord(**values, fingerprint=fingerprint, model_id=model_id, content_hash=content_hash)

    def _decode(self, table: str, names: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
        """A row's values as the schema's types return them."""
        json_columns = JSON_COLUMNS.get(table, frozenset())
        time_columns = TIME_COLUMNS.get(table, frozenset())
        bool_columns = BOOL_COLUMNS.get(table, frozenset())
        values: dict[str, Any] = {}
        for name, value in zip(names, row, strict=True):
            if value is not None:
                if name in json_columns:
                    value = value if self._postgres else json.loads(value)
                elif name in time_columns:
                    value = self._time(value)
                elif name in bool_columns:
                    value = bool(value)
            values[name] = value
        return values

    def _time(self, value: Any) -> datetime:
        """UTCDateTime's value (not NULL): naive UTC in the database, an aware datetime out."""
        if isinstance(value, str):  # SQLite keeps text
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


def _cols(alias: str, names: Sequence[str]) -> str:
    return ", ".join(f"{alias}.{name}" for name in names)


def _raise(exc: Exception, url: str | None, statement: str | None, base: type[Exception]) -> NoReturn:
    """The store's StoreError for a driver's error (``statement`` None: no connection
    made), worded by tuner.store._engine as every other; a bug is re-raised as it is."""
    from tuner.store._engine import dbapi_store_error, resolve_url

    error = dbapi_store_error(exc, resolve_url(url), statement, base)
    if error is None:
        raise exc
    raise error from exc


def _target(url: str | None) -> tuple[str, Path | dict[str, Any]] | None:
    """("sqlite", the file) or ("postgresql", psycopg's connect arguments) for ``url``
    as tuner.store._engine.resolve_url reads it; None for every other form (a query on
    a SQLite URL, in-memory, another driver, several hosts), which the store opens."""
    from tuner import paths
    from tuner.store._dbapi import CONNECT_TIMEOUT_S, READ_ONLY_OPTIONS

    raw = paths.default_db_url() if url is None else url.strip()
    if raw == ":memory:":
        return None
    if "://" not in raw:
        raw = f"sqlite:///{Path(raw).expanduser().absolute()}"
    match = _URL.match(raw)
    if match is None:
        return None
    parts = match.groupdict()
    name = parts["name"]
    query_text = parts["query"]
    username, password, database = (
        None if parts[key] is None else unquote(parts[key]) for key in ("username", "password", "database")
    )
    host = parts["ipv4host"] or parts["ipv6host"]
    if name == "sqlite":
        if query_text is not None or username or password or host or parts["port"]:
            return None
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return "sqlite", Path(database).expanduser().absolute()
    if name not in _POSTGRES_NAMES or (host and "," in host):
        return None
    query: dict[str, str] = {}
    for key, value in parse_qsl(query_text or ""):
        if key in query or key == "host":  # several values, or hosts in the query: the store's way
            return None
        query[key] = value
    try:
        port = int(parts["port"]) if parts["port"] else None
    except ValueError:
        return None
    arguments: dict[str, Any] = {}
    for key, value in (("host", host), ("dbname", database), ("user", username), ("password", password)):
        if value:
            arguments[key] = value
    if port:
        arguments["port"] = port
    arguments.update(query)
    arguments.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    arguments["options"] = READ_ONLY_OPTIONS
    return "postgresql", arguments
