"""The store's side of `tuner nightly` (docs/nightly.md): every winner with what it
was chosen under, and a row per nightly run.

A mixin of ``Store`` (same contract: each method one transaction, frozen records,
``KeyError`` for an unknown id, ``ValueError`` for a value outside its set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tuner.store._records import BestRecord, MachineRecord, ModelRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# How a nightly run ended: still running (or killed: the next run, holding the
# machine lock, marks it interrupted), done, interrupted, or failed with an error.
NIGHTLY_STATUSES: tuple[str, ...] = ("running", "done", "interrupted", "failed")


@dataclass(frozen=True)
class WinnerRecord:
    """A stored winner and what it was chosen under: its machine (fingerprints, the
    library versions of the time), its model (content hash), its study (space hash,
    settings) and the tuner version that chose it (None: before schema 0003)."""

    best: BestRecord
    machine: MachineRecord
    model: ModelRecord
    study_id: int
    optuna_study_name: str
    space_hash: str
    study_settings: dict[str, Any]
    tuner_version: str | None


@dataclass(frozen=True)
class NightlyRunRecord:
    id: int
    machine_id: int | None
    hostname: str
    fingerprint: str
    pid: int | None
    status: str  # NIGHTLY_STATUSES
    exit_code: int | None
    settings: dict[str, Any]
    plan: list[dict[str, Any]]  # one item per workload: what was decided, and why
    results: list[dict[str, Any]] | None  # one per item done so far: what it found
    summary: str | None
    started: datetime
    finished: datetime | None


class NightlyRuns:
    """``Store`` methods for nightly runs and winners' dependencies."""

    if TYPE_CHECKING:

        def _transaction(self, write: bool = False) -> AbstractContextManager[Session]: ...

    # -- winners -------------------------------------------------------------------

    def winners(self, machine_ids: Sequence[int] | None = None) -> list[WinnerRecord]:
        """Every stored winner (of the given machines), oldest machine first, then by
        model, workload and objective."""
        from sqlalchemy import select

        from tuner.store._schema import BestRow, MachineRow, ModelRow, StudyRow, TrialRow

        query = (
            select(BestRow, MachineRow, ModelRow, StudyRow)
            .join(MachineRow, BestRow.machine_id == MachineRow.id)
            .join(ModelRow, BestRow.model_pk == ModelRow.id)
            .join(TrialRow, BestRow.trial_id == TrialRow.id)
            .join(StudyRow, TrialRow.study_id == StudyRow.id)
        )
        if machine_ids is not None:
            query = query.where(BestRow.machine_id.in_(list(machine_ids)))
        query = query.order_by(MachineRow.id, ModelRow.id, BestRow.seq_len, BestRow.batch, BestRow.objective)
        with self._transaction() as session:
            return [
                WinnerRecord(
                    best=_as(
                        BestRecord,
                        best,
                        fingerprint=machine.fingerprint,
                        model_id=model.model_id,
                        content_hash=model.content_hash,
                    ),
                    machine=_as(MachineRecord, machine),
                    model=_as(ModelRecord, model),
                    study_id=study.id,
                    optuna_study_name=study.optuna_study_name,
                    space_hash=study.space_hash,
                    study_settings=dict(study.settings or {}),
                    tuner_version=best.tuner_version,
                )
                for best, machine, model, study in session.execute(query)
            ]

    # -- nightly runs --------------------------------------------------------------

    def start_nightly_run(
        self,
        *,
        machine_id: int | None,
        hostname: str,
        fingerprint: str,
        pid: int | None,
        settings: Mapping[str, Any],
        plan: Sequence[Mapping[str, Any]],
    ) -> NightlyRunRecord:
        """A new run, "running", with its plan."""
        from tuner.store._schema import MachineRow, NightlyRunRow, utcnow

        with self._transaction(write=True) as session:
            if machine_id is not None and session.get(MachineRow, machine_id) is None:
                raise KeyError(f"no machine with id {machine_id} in the store")
            row = NightlyRunRow(
                machine_id=machine_id,
                hostname=hostname,
                fingerprint=fingerprint,
                pid=pid,
                status="running",
                exit_code=None,
                settings=dict(settings),
                plan=[dict(i) for i in plan],
                results=[],
                summary=None,
                started=utcnow(),
                finished=None,
            )
            session.add(row)
            session.flush()
            return _as(NightlyRunRecord, row)

    def record_nightly_results(self, run_id: int, results: Sequence[Mapping[str, Any]]) -> None:
        """Replace the run's results with ``results`` (saved after every step, so a
        killed run leaves what it finished)."""
        from tuner.store._schema import NightlyRunRow

        with self._transaction(write=True) as session:
            row = _require(session, NightlyRunRow, run_id)
            row.results = [dict(r) for r in results]

    def finish_nightly_run(
        self,
        run_id: int,
        *,
        status: str,
        exit_code: int | None,
        summary: str | None,
        results: Sequence[Mapping[str, Any]] | None = None,
    ) -> NightlyRunRecord:
        from tuner.store._schema import NightlyRunRow, utcnow

        _check_status(status)
        with self._transaction(write=True) as session:
            row = _require(session, NightlyRunRow, run_id)
            row.status, row.exit_code, row.summary, row.finished = status, exit_code, summary, utcnow()
            if results is not None:
                row.results = [dict(r) for r in results]
            session.flush()
            return _as(NightlyRunRecord, row)

    def interrupt_nightly_runs(self, hostname: str) -> list[NightlyRunRecord]:
        """Mark this host's runs still "running" as interrupted and return them.

        Call it holding the machine lock: then no run of this host is alive, and one
        still "running" was killed before it could say so.
        """
        from sqlalchemy import select

        from tuner.store._schema import NightlyRunRow, utcnow

        with self._transaction(write=True) as session:
            rows = (
                session.execute(
                    select(NightlyRunRow)
                    .where(NightlyRunRow.hostname == hostname, NightlyRunRow.status == "running")
                    .order_by(NightlyRunRow.id)
                )
                .scalars()
                .all()
            )
            for row in rows:
                row.status, row.finished = "interrupted", utcnow()
                row.summary = row.summary or "killed before it finished; the next run resumed its plan"
            session.flush()
            return [_as(NightlyRunRecord, row) for row in rows]

    def nightly_runs(self, limit: int | None = None, hostname: str | None = None) -> list[NightlyRunRecord]:
        """Nightly runs, newest first (of ``hostname`` when given)."""
        from sqlalchemy import select

        from tuner.store._schema import NightlyRunRow

        query = select(NightlyRunRow)
        if hostname is not None:
            query = query.where(NightlyRunRow.hostname == hostname)
        query = query.order_by(NightlyRunRow.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._transaction() as session:
            return [_as(NightlyRunRecord, row) for row in session.execute(query).scalars()]


def _check_status(status: str) -> None:
    if status not in NIGHTLY_STATUSES:
        raise ValueError(f"unknown nightly run status {status!r}; expected one of {', '.join(NIGHTLY_STATUSES)}")


def _require(session: Session, model: type, id_: int) -> Any:
    row = session.get(model, id_)
    if row is None:
        raise KeyError(f"no nightly run with id {id_} in the store")
    return row


def _as(cls: Any, row: Any, **extra: Any) -> Any:
    """A record of ``cls`` from a row's attributes of the same names, and ``extra``.
    A field the row lacks keeps the record's default (a column added later)."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in extra:
            values[f.name] = extra[f.name]
        elif hasattr(row, f.name):
            value = getattr(row, f.name)
            values[f.name] = list(value) if f.name == "samples_ms" and value is not None else value
    return cls(**values)
