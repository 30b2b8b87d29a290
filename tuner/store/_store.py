"""The store: every trial of every study, and the best configuration per workload.

Contract (the Optuna ``BaseStorage`` way):
- every public method is one transaction: it commits whole or leaves nothing;
- records returned are frozen dataclasses, detached from any session;
- an unknown id raises ``KeyError``; a value outside its set (status, objective)
  raises ``ValueError``: both are bugs in the caller;
- what the user's environment causes (unwritable path, not a database, locked,
  newer schema, unreachable server) raises ``StoreError`` with one line that says
  what to do.
- a Store may be shared by threads: each call takes its own session.

SQLAlchemy and Alembic are imported when a store is opened, not when this module
is, so ``from tuner.store import Store`` costs nothing at CLI start-up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from tuner._version import __version__
from tuner.errors import StoreError
from tuner.store._claims import Claims
from tuner.store._nightly import NightlyRuns
from tuner.store._records import (
    REPLAY_KINDS,
    REPLAY_ROLES,
    STUDY_STATUSES,
    BestRecord,
    MachineRecord,
    ModelRecord,
    ReplayRecord,
    best_record,
    from_row,
)
from tuner.store._similar import FleetQueries
from tuner.store._trials import NewTrial, StudyRecord, TrialRecord
from tuner.vocabulary import OBJECTIVES, TRIAL_STATUSES

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.orm import Session

    from tuner.store._schema import StudyRow, TrialRow


class DuplicateTrialError(StoreError):
    """This (study, trial number) is already recorded; rows are never written twice."""


class Store(NightlyRuns, FleetQueries, Claims):
    """Open with ``Store.open(url)``; ``url`` is then reusable by Optuna's RDBStorage."""

    url: str

    def __init__(self, engine: "Engine", url: "URL") -> None:
        """Use ``Store.open``: it prepares the folder and migrates the schema first."""
        from sqlalchemy.orm import sessionmaker

        from tuner.store._engine import WRITE_OPTION

        self._engine = engine
        self._url = url
        self.url = url.render_as_string(hide_password=False)
        self._reader = sessionmaker(bind=engine, expire_on_commit=False)
        # Writes begin with the write lock held (SQLite BEGIN IMMEDIATE; ignored elsewhere).
        self._writer = sessionmaker(bind=engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)
        self._closed = False
        self.read_only = False  # opened by Store.open(..., read_only=True): every write is refused

    @classmethod
    def open(cls, url: str | None = None, *, read_only: bool = False) -> "Store":
        """Open (creating if needed) the database at ``url`` and upgrade its schema.

        ``None`` is ``tuner.paths.default_db_url()``; a bare path means a SQLite file.
        ``read_only``: open an existing database without writing anything (no folder,
        file or migration; a database that does not exist reads as an empty one), for the
        commands that only read: they then work on a read-only file system.
        """
        from sqlalchemy.exc import SQLAlchemyError

        from tuner.store import _engine, _migrate

        parsed = _engine.resolve_url(url)
        in_memory = parsed.get_backend_name() == "sqlite" and _engine.sqlite_file(parsed) is None
        if read_only and not in_memory:  # an in-memory database (tests) has nothing to protect
            return cls._open_read_only(parsed, url)
        _engine.prepare_sqlite_folder(parsed)
        engine = _engine.make_engine(parsed)
        try:
            _migrate.migrate(engine, parsed)
        except SQLAlchemyError as exc:
            engine.dispose()
            if _engine.is_environment_error(exc):
                raise _engine.store_error(exc, parsed) from exc
            raise
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, parsed)

    @classmethod
    def _open_read_only(cls, parsed: "URL", url: str | None) -> "Store":
        from sqlalchemy import inspect as sqlalchemy_inspect
        from sqlalchemy.exc import SQLAlchemyError

        from tuner.store import _engine, _migrate
        from tuner.store._schema import SCHEMA_HEAD

        file = _engine.sqlite_file(parsed)
        where = _engine.describe(parsed)
        if file is not None and not file.is_file():
            empty = cls.open(":memory:")  # nothing stored yet: read as empty, and create nothing
            empty.read_only = True
            return empty
        engine = _engine.make_read_only_engine(parsed)
        try:
            with engine.connect() as connection:
                revisions = _migrate.current_revisions(connection)
                # A database with no tables at all (a new server database) holds
                # nothing yet, as a missing SQLite file does; any other is refused below.
                blank = not revisions and not sqlalchemy_inspect(connection).get_table_names()
        except SQLAlchemyError as exc:
            engine.dispose()
            if _engine.is_environment_error(exc):
                raise _engine.store_error(exc, parsed) from exc
            raise
        except BaseException:
            engine.dispose()
            raise
        if blank:
            engine.dispose()
            empty = cls.open(":memory:")
            empty.read_only = True
            return empty
        if revisions != (SCHEMA_HEAD,):
            engine.dispose()
            if not revisions:
                raise StoreError(
                    f"{where} has no tuner tables; run `tuner auto` first, or pass --db with the tuner's database"
                )
            _migrate.check_known(revisions, parsed)  # written by a newer tuner: refused
            if file is None or _engine.folder_writable(file):
                return cls.open(url)  # an older schema, upgraded where it can be written
            raise StoreError(
                f"the database {where} has schema revision {', '.join(revisions)}, older than this tuner's "
                f"{SCHEMA_HEAD}, and cannot be upgraded here (read-only); upgrade it once where it can be written "
                f"(e.g. `tuner history --db {where}`), or use the tuner that wrote it"
            )
        store = cls(engine, parsed)
        store.read_only = True
        return store

    def optuna_storage(self) -> Any:
        """Optuna's RDBStorage on this database, its schema checked first
        (tuner.store._optuna); read-only when this store is."""
        from tuner.store._optuna import optuna_storage

        return optuna_storage(self._url, read_only=self.read_only)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        from tuner.store._engine import describe

        return f"Store({describe(self._url)!r})"

    # -- machines and models ---------------------------------------------------------

    def upsert_machine(
        self,
        info: Mapping[str, Any],
        fingerprint: str,
        hardware_fingerprint: str,
        software_fingerprint: str,
        hostname: str,
    ) -> int:
        """The machine's id; a known fingerprint gets its info, hostname and last_seen refreshed."""
        from tuner.store._schema import MachineRow, utcnow

        now = utcnow()
        values = {
            "fingerprint": fingerprint,
            "hardware_fingerprint": hardware_fingerprint,
            "software_fingerprint": software_fingerprint,
            "hostname": hostname,
            "info": dict(info),
            "first_seen": now,
            "last_seen": now,
        }
        with self._transaction(write=True) as session:
            return self._upsert(
                session,
                MachineRow,
                values,
                key=("fingerprint",),
                update=("hardware_fingerprint", "software_fingerprint", "hostname", "info", "last_seen"),
            )

    def upsert_model(self, model_id: str, content_hash: str, path: str, task: str) -> int:
        """The model's id, by content hash.

        A known hash keeps the ``model_id`` it was first recorded under (so ``best``
        keeps finding it by that name) and gets its latest ``path`` and ``task``.
        """
        from tuner.store._schema import ModelRow, utcnow

        values = {"model_id": model_id, "content_hash": content_hash, "path": path, "task": task, "created": utcnow()}
        with self._transaction(write=True) as session:
            return self._upsert(session, ModelRow, values, key=("content_hash",), update=("path", "task"))

    def machines(self) -> list[MachineRecord]:
        from sqlalchemy import select

        from tuner.store._schema import MachineRow

        with self._transaction() as session:
            rows = session.execute(select(MachineRow).order_by(MachineRow.id)).scalars()
            return [from_row(MachineRecord, row) for row in rows]

    def machine_counts(self) -> dict[int, tuple[int, int]]:
        """Per machine id: its number of studies and of winners (``tuner machines``).

        Machines with neither are absent. Two grouped counts, not a walk over studies.
        """
        from sqlalchemy import func, select

        from tuner.store._schema import BestRow, StudyRow

        with self._transaction() as session:
            by_study = select(StudyRow.machine_id, func.count()).group_by(StudyRow.machine_id)
            by_best = select(BestRow.machine_id, func.count()).group_by(BestRow.machine_id)
            studies = dict(session.execute(by_study).tuples().all())
            winners = dict(session.execute(by_best).tuples().all())
        return {m: (int(studies.get(m, 0)), int(winners.get(m, 0))) for m in studies.keys() | winners.keys()}

    def models(self) -> list[ModelRecord]:
        from sqlalchemy import select

        from tuner.store._schema import ModelRow

        with self._transaction() as session:
            rows = session.execute(select(ModelRow).order_by(ModelRow.id)).scalars()
            return [from_row(ModelRecord, row) for row in rows]

    # -- studies ---------------------------------------------------------------------

    def get_or_create_study(
        self,
        machine_id: int,
        model_pk: int,
        seq_len: int,
        batch: int,
        objective: str,
        space_hash: str,
        optuna_study_name: str,
        settings: Mapping[str, Any],
    ) -> StudyRecord:
        """The study named ``optuna_study_name``, created if new.

        An existing study is being resumed: its status goes back to "running" and its
        settings become those of this run. A name that belongs to a study of another
        machine, model, workload, objective or space is a bug and raises ValueError.
        """
        from sqlalchemy import select

        from tuner.store._schema import MachineRow, ModelRow, StudyRow, utcnow

        _check(objective, OBJECTIVES, "objective")
        if seq_len < 1 or batch < 1:
            raise ValueError(f"seq_len and batch must be >= 1, not {seq_len} and {batch}")
        now = utcnow()
        wanted = {
            "machine_id": machine_id,
            "model_pk": model_pk,
            "seq_len": seq_len,
            "batch": batch,
            "objective": objective,
            "space_hash": space_hash,
        }
        with self._transaction(write=True) as session:
            row = session.execute(
                select(StudyRow).where(StudyRow.optuna_study_name == optuna_study_name)
            ).scalar_one_or_none()
            if row is None:
                _require(session, MachineRow, machine_id, "machine")
                _require(session, ModelRow, model_pk, "model")
                # Another process may create it between our read and this insert (a
                # PostgreSQL fleet): then its row wins and is read back below.
                insert = _insert_for(session)
                session.execute(
                    insert(StudyRow.__table__)
                    .values(
                        **wanted,
                        optuna_study_name=optuna_study_name,
                        settings=dict(settings),
                        status="running",
                        created=now,
                        updated=now,
                    )
                    .on_conflict_do_nothing(index_elements=["optuna_study_name"])
                )
            else:
                found = {k: getattr(row, k) for k in wanted}
                if found != wanted:
                    raise ValueError(f"study {optuna_study_name!r} already exists with {found}, not {wanted}")
                row.status, row.settings, row.updated = "running", dict(settings), now
            session.flush()
            result = session.execute(self._studies_query().where(StudyRow.optuna_study_name == optuna_study_name)).one()
            return _study_record(*result)

    def set_study_status(self, study_id: int, status: str) -> None:
        from tuner.store._schema import StudyRow, utcnow

        _check(status, STUDY_STATUSES, "study status")
        with self._transaction(write=True) as session:
            row = _require(session, StudyRow, study_id, "study")
            row.status, row.updated = status, utcnow()

    def studies(self, fingerprint: str | None = None, model: str | None = None) -> list[StudyRecord]:
        """Studies, oldest first; ``model`` matches a model_id or a content hash."""
        from sqlalchemy import or_

        from tuner.store._schema import MachineRow, ModelRow, StudyRow

        query = self._studies_query()
        if fingerprint is not None:
            query = query.where(MachineRow.fingerprint == fingerprint)
        if model is not None:
            query = query.where(or_(ModelRow.model_id == model, ModelRow.content_hash == model))
        with self._transaction() as session:
            return [_study_record(*row) for row in session.execute(query.order_by(StudyRow.id))]

    def _studies_query(self) -> "Select[Any]":
        from sqlalchemy import func, select

        from tuner.store._schema import MachineRow, ModelRow, StudyRow, TrialRow

        n_trials = (
            select(func.count(TrialRow.id))
            .where(TrialRow.study_id == StudyRow.id)
            .correlate(StudyRow)
            .scalar_subquery()
        )
        return (
            select(StudyRow, MachineRow.fingerprint, ModelRow.model_id, ModelRow.content_hash, n_trials)
            .join(MachineRow, StudyRow.machine_id == MachineRow.id)
            .join(ModelRow, StudyRow.model_pk == ModelRow.id)
        )

    # -- trials ----------------------------------------------------------------------

    def record_trial(self, trial: NewTrial) -> int:
        """Write ``trial``: trial ``trial.number`` (the Optuna trial number) of study
        ``trial.study_id``; returns its id.

        One transaction with the study's ``updated`` stamp. A second call for the same
        (study, number) raises DuplicateTrialError and writes nothing. NaN and
        infinite floats are stored as NULL. A naive datetime is taken as local time.
        ``NewTrial.measured(...)`` turns a worker's TrialResult into a trial to record.
        """
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError

        from tuner.store._schema import StudyRow, TrialRow, utcnow

        _check(trial.status, TRIAL_STATUSES, "trial status")
        study_id, number = trial.study_id, trial.number
        row = TrialRow(**_trial_columns(trial))
        duplicate = DuplicateTrialError(f"trial {number} of study {study_id} is already recorded")
        try:
            with self._transaction(write=True) as session:
                study = _require(session, StudyRow, study_id, "study")
                exists = session.execute(
                    select(TrialRow.id).where(TrialRow.study_id == study_id, TrialRow.number == number)
                ).first()
                if exists is not None:
                    raise duplicate
                session.add(row)
                # The row, then the study's stamp: a failure in the second must take
                # the first with it (tests/store/test_atomic.py checks it does).
                session.flush()
                study.updated = utcnow()
                session.flush()
                return row.id
        except IntegrityError as exc:
            if "unique" not in str(exc.orig).lower():
                raise
            # Lost a race with another process recording the same number (PostgreSQL).
            raise duplicate from exc

    def has_trial(self, study_id: int, number: int) -> bool:
        return self.trial(study_id, number) is not None

    def trial(self, study_id: int, number: int) -> TrialRecord | None:
        """Trial ``number`` of the study, or None."""
        from sqlalchemy import select

        from tuner.store._schema import TrialRow

        with self._transaction() as session:
            row = session.execute(
                select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.number == number)
            ).scalar_one_or_none()
            return None if row is None else _trial_record(row)

    def trials(self, study_id: int) -> list[TrialRecord]:
        """The study's trials ordered by number (empty for an unknown study)."""
        from sqlalchemy import select

        from tuner.store._schema import TrialRow

        with self._transaction() as session:
            rows = session.execute(
                select(TrialRow).where(TrialRow.study_id == study_id).order_by(TrialRow.number)
            ).scalars()
            return [_trial_record(row) for row in rows]

    def trial_by_id(self, trial_id: int) -> TrialRecord:
        """The trial with this id (``BestRecord.trial_id``); KeyError when there is none."""
        from tuner.store._schema import TrialRow

        with self._transaction() as session:
            return _trial_record(_require(session, TrialRow, trial_id, "trial"))

    def set_pareto(self, study_id: int, numbers: Sequence[int]) -> None:
        """Store the trial numbers on the study's latency-throughput Pareto front."""
        from tuner.store._schema import StudyRow, utcnow

        with self._transaction(write=True) as session:
            row = _require(session, StudyRow, study_id, "study")
            row.pareto, row.updated = sorted(int(n) for n in numbers), utcnow()

    # -- re-measurements -------------------------------------------------------------

    def record_replay(
        self,
        study_id: int,
        *,
        kind: str,
        role: str,
        round: int,
        config: Mapping[str, Any],
        status: str,
        trial_id: int | None = None,
        reason: str | None = None,
        median_ms: float | None = None,
        p90_ms: float | None = None,
        p99_ms: float | None = None,
        n_samples: int | None = None,
        samples_ms: Sequence[float] = (),
        throughput: float | None = None,
        flags: Sequence[str] | None = None,
        noise: Mapping[str, Any] | None = None,
    ) -> int:
        """Store one fresh-process re-measurement (a finalist round, a verify round); returns its id."""
        from tuner.store._schema import ReplayRow, StudyRow, TrialRow, utcnow

        _check(kind, REPLAY_KINDS, "replay kind")
        _check(role, REPLAY_ROLES, "replay role")
        _check(status, TRIAL_STATUSES, "trial status")
        with self._transaction(write=True) as session:
            _require(session, StudyRow, study_id, "study")
            if trial_id is not None:
                _require(session, TrialRow, trial_id, "trial")
            row = ReplayRow(
                study_id=study_id,
                trial_id=trial_id,
                kind=kind,
                role=role,
                round=round,
                config=dict(config),
                status=status,
                reason=reason,
                median_ms=median_ms,
                p90_ms=p90_ms,
                p99_ms=p99_ms,
                n_samples=n_samples,
                samples_ms=list(samples_ms),
                throughput=throughput,
                flags=list(flags) if flags is not None else None,
                noise=dict(noise) if noise is not None else None,
                created=utcnow(),
            )
            session.add(row)
            session.flush()
            return row.id

    def replays(self, study_id: int, kind: str | None = None) -> list[ReplayRecord]:
        """The study's re-measurements in the order they ran (all kinds when None)."""
        from sqlalchemy import select

        from tuner.store._schema import ReplayRow

        query = select(ReplayRow).where(ReplayRow.study_id == study_id)
        if kind is not None:
            query = query.where(ReplayRow.kind == kind)
        with self._transaction() as session:
            rows = session.execute(query.order_by(ReplayRow.id)).scalars()
            return [from_row(ReplayRecord, row, samples_ms=row.samples_ms or []) for row in rows]

    # -- best ------------------------------------------------------------------------

    def set_best(
        self,
        machine_id: int,
        model_pk: int,
        seq_len: int,
        batch: int,
        objective: str,
        trial_id: int,
        config: Mapping[str, Any],
        metrics: Mapping[str, Any],
        default_median_ms: float | None,
        speedup: float | None,
        *,
        speedup_low: float | None = None,
        speedup_high: float | None = None,
        significant: bool | None = None,
        finalists: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Make ``trial_id`` the best for (machine, model, seq_len, batch, objective).

        The trial must belong to a study of that machine, model and workload.
        ``speedup_low``/``speedup_high`` are the speedup's 95% confidence interval.
        """
        from tuner.store._schema import BestRow, StudyRow, TrialRow, utcnow

        _check(objective, OBJECTIVES, "objective")
        values = {
            "machine_id": machine_id,
            "model_pk": model_pk,
            "seq_len": seq_len,
            "batch": batch,
            "objective": objective,
            "trial_id": trial_id,
            "config": dict(config),
            "metrics": dict(metrics),
            "default_median_ms": default_median_ms,
            "speedup": speedup,
            "updated": utcnow(),
            "speedup_low": speedup_low,
            "speedup_high": speedup_high,
            "significant": significant,
            "finalists": [dict(f) for f in finalists] if finalists is not None else None,
            "tuner_version": __version__,  # a winner depends on the tuner that chose it (docs/nightly.md)
        }
        with self._transaction(write=True) as session:
            trial = _require(session, TrialRow, trial_id, "trial")
            study = session.get_one(StudyRow, trial.study_id)
            measured = (study.machine_id, study.model_pk, study.seq_len, study.batch)
            if measured != (machine_id, model_pk, seq_len, batch):
                raise ValueError(
                    f"trial {trial_id} was measured for (machine, model, seq_len, batch) {measured}, "
                    f"not {(machine_id, model_pk, seq_len, batch)}"
                )
            self._upsert(
                session,
                BestRow,
                values,
                key=("machine_id", "model_pk", "seq_len", "batch", "objective"),
                update=(
                    "trial_id",
                    "config",
                    "metrics",
                    "default_median_ms",
                    "speedup",
                    "updated",
                    "speedup_low",
                    "speedup_high",
                    "significant",
                    "finalists",
                    "tuner_version",
                ),
            )

    def best(
        self,
        fingerprint: str,
        model: str,
        seq_len: int | None = None,
        batch: int = 1,
        objective: str = "p50",
    ) -> list[BestRecord]:
        """The best configurations on this machine, ordered by seq_len (all when None).

        ``model`` matches a model_id or a content hash; a model_id recorded for two
        contents (the model changed) yields one record per content: see content_hash.
        """
        from sqlalchemy import or_, select

        from tuner.store._schema import BestRow, MachineRow, ModelRow

        query = (
            select(BestRow, MachineRow.fingerprint, ModelRow.model_id, ModelRow.content_hash)
            .join(MachineRow, BestRow.machine_id == MachineRow.id)
            .join(ModelRow, BestRow.model_pk == ModelRow.id)
            .where(
                MachineRow.fingerprint == fingerprint,
                or_(ModelRow.model_id == model, ModelRow.content_hash == model),
                BestRow.batch == batch,
                BestRow.objective == objective,
            )
        )
        if seq_len is not None:
            query = query.where(BestRow.seq_len == seq_len)
        with self._transaction() as session:
            rows = session.execute(query.order_by(BestRow.seq_len, ModelRow.id))
            return [best_record(*row) for row in rows]

    # -- plumbing --------------------------------------------------------------------

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator["Session"]:
        """One session, one transaction: committed on success, rolled back on any error."""
        from sqlalchemy.exc import SQLAlchemyError

        from tuner.store._engine import is_environment_error, store_error

        if self._closed:
            raise RuntimeError("this Store is closed")
        factory = self._writer if write else self._reader
        try:
            with factory() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            if is_environment_error(exc):
                raise store_error(exc, self._url) from exc
            raise

    @staticmethod
    def _upsert(
        session: "Session",
        model: type,
        values: dict[str, Any],
        key: tuple[str, ...],
        update: tuple[str, ...],
    ) -> int:
        """INSERT ... ON CONFLICT (key) DO UPDATE: atomic even against other processes."""
        table = model.__table__  # type: ignore[attr-defined]
        insert = _insert_for(session)
        stmt = insert(table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(key), set_={name: stmt.excluded[name] for name in update}
        ).returning(table.c.id)
        return int(session.execute(stmt).scalar_one())


def _insert_for(session: "Session") -> Any:
    """The dialect's ``insert`` with ON CONFLICT (the same API on SQLite and PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def _require(session: "Session", model: type, id_: int, what: str) -> Any:
    row = session.get(model, id_)
    if row is None:
        raise KeyError(f"no {what} with id {id_} in the store")
    return row


def _trial_columns(trial: NewTrial) -> dict[str, Any]:
    """A trial's fields as TrialRow columns: mappings and sequences as the plain dicts
    and lists its JSON columns hold."""
    columns: dict[str, Any] = {}
    for f in fields(NewTrial):
        value = getattr(trial, f.name)
        if isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            value = list(value)
        columns[f.name] = value
    return columns


def _trial_record(row: "TrialRow") -> TrialRecord:
    record: TrialRecord = from_row(TrialRecord, row, samples_ms=row.samples_ms or [])
    return record


def _study_record(row: "StudyRow", fingerprint: str, model_id: str, content_hash: str, n_trials: int) -> StudyRecord:
    record: StudyRecord = from_row(
        StudyRecord, row, fingerprint=fingerprint, model_id=model_id, content_hash=content_hash, n_trials=int(n_trials)
    )
    return record
