"""Read-only queries for the dashboard and its JSON API (``tuner serve``).

Every function takes an open SQLAlchemy ``Session`` (the caller decides how the
database was opened: ``tuner serve`` opens it read-only) and returns plain dicts and
lists, never ORM objects. Nothing here writes.

They are written for a fleet's database (100 machines x 10 models x 2,000 trials):
a listing never loads a trial's samples, a study's trials are found through the
(study_id, number) unique index and paged in SQL, and counts are taken only for the
studies a page shows. benchmarks/serve_scale.py times them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Session

# The trial columns a listing shows: everything but the samples, the noise checks,
# the effective settings and the stderr tail (the detail view has those).
_SUMMARY_COLUMNS = (
    "id",
    "study_id",
    "number",
    "config",
    "status",
    "reason",
    "value",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "cv",
    "n_samples",
    "accuracy",
    "accuracy_ok",
    "flags",
    "peak_rss_mb",
    "throughput",
    "started_at",
    "finished_at",
)
# Columns a trial listing may be sorted by ("-" before the name: descending).
TRIAL_SORT_KEYS: tuple[str, ...] = (
    "number",
    "value",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "cv",
    "throughput",
    "peak_rss_mb",
)


@dataclass(frozen=True)
class TrialFilter:
    """Which trials of a study a listing shows; None or empty means any."""

    statuses: Sequence[str] = ()
    backend: str | None = None
    precision: str | None = None
    flag: str | None = None  # a stability flag, e.g. "unstable"; "none": trials without flags
    after: int | None = None  # only trials numbered above this (a running study's new trials)


def _row_dict(row: Any, names: Sequence[str]) -> dict[str, Any]:
    """An ORM object's or a result row's named values (a row's mapping is the faster way in)."""
    mapping = getattr(row, "_mapping", None)
    if mapping is not None:
        return {name: mapping[name] for name in names}
    return {name: getattr(row, name) for name in names}


# -- machines and models ---------------------------------------------------------------

_MACHINE_COLUMNS = (
    "id",
    "fingerprint",
    "hardware_fingerprint",
    "software_fingerprint",
    "hostname",
    "info",
    "first_seen",
    "last_seen",
)
_MODEL_COLUMNS = ("id", "model_id", "content_hash", "path", "task", "created")


def machines(session: "Session") -> list[dict[str, Any]]:
    from sqlalchemy import select

    from tuner.store._schema import MachineRow

    rows = session.execute(select(MachineRow).order_by(MachineRow.id)).scalars()
    return [_row_dict(row, _MACHINE_COLUMNS) for row in rows]


def machine(session: "Session", machine_id: int) -> dict[str, Any] | None:
    from tuner.store._schema import MachineRow

    row = session.get(MachineRow, machine_id)
    return None if row is None else _row_dict(row, _MACHINE_COLUMNS)


def models(session: "Session") -> list[dict[str, Any]]:
    from sqlalchemy import select

    from tuner.store._schema import ModelRow

    rows = session.execute(select(ModelRow).order_by(ModelRow.id)).scalars()
    return [_row_dict(row, _MODEL_COLUMNS) for row in rows]


def model(session: "Session", model_pk: int) -> dict[str, Any] | None:
    from tuner.store._schema import ModelRow

    row = session.get(ModelRow, model_pk)
    return None if row is None else _row_dict(row, _MODEL_COLUMNS)


# -- best configurations ----------------------------------------------------------------

_BEST_COLUMNS = (
    "machine_id",
    "model_pk",
    "seq_len",
    "batch",
    "objective",
    "trial_id",
    "config",
    "metrics",
    "default_median_ms",
    "speedup",
    "speedup_low",
    "speedup_high",
    "significant",
    "finalists",
    "updated",
)


def best(
    session: "Session",
    machine_id: int | None = None,
    model: str | None = None,
    seq_len: int | None = None,
    batch: int | None = None,
    objective: str | None = None,
    model_pk: int | None = None,
) -> list[dict[str, Any]]:
    """Stored winners with their study and trial number, by machine, model, length.

    ``model`` matches a model_id or a content hash; ``model_pk`` the model's id.
    """
    from sqlalchemy import or_, select

    from tuner.store._schema import BestRow, MachineRow, ModelRow, TrialRow

    query = (
        select(
            BestRow,
            MachineRow.fingerprint,
            MachineRow.hostname,
            ModelRow.model_id,
            ModelRow.content_hash,
            TrialRow.study_id,
            TrialRow.number,
        )
        .join(MachineRow, BestRow.machine_id == MachineRow.id)
        .join(ModelRow, BestRow.model_pk == ModelRow.id)
        .join(TrialRow, BestRow.trial_id == TrialRow.id)
    )
    if machine_id is not None:
        query = query.where(BestRow.machine_id == machine_id)
    if model is not None:
        query = query.where(or_(ModelRow.model_id == model, ModelRow.content_hash == model))
    if model_pk is not None:
        query = query.where(BestRow.model_pk == model_pk)
    if seq_len is not None:
        query = query.where(BestRow.seq_len == seq_len)
    if batch is not None:
        query = query.where(BestRow.batch == batch)
    if objective is not None:
        query = query.where(BestRow.objective == objective)
    query = query.order_by(BestRow.machine_id, BestRow.model_pk, BestRow.seq_len, BestRow.batch, BestRow.objective)
    found = []
    for row, fingerprint, hostname, model_id, content_hash, study_id, number in session.execute(query):
        entry = _row_dict(row, _BEST_COLUMNS)
        entry.update(
            fingerprint=fingerprint,
            hostname=hostname,
            model_id=model_id,
            content_hash=content_hash,
            study_id=study_id,
            trial_number=number,
        )
        found.append(entry)
    return found


def best_summaries(session: "Session") -> list[dict[str, Any]]:
    """Every stored winner in a few fields (the overview): no config, metrics or finalists
    to decode, only the backend, precision and median pulled out of them in SQL."""
    from sqlalchemy import select

    from tuner.store._schema import BestRow, ModelRow, TrialRow

    names = (
        "machine_id",
        "model_pk",
        "model_id",
        "seq_len",
        "batch",
        "objective",
        "study_id",
        "trial_id",
        "trial_number",
        "backend",
        "precision",
        "median_ms",
        "default_median_ms",
        "speedup",
        "speedup_low",
        "speedup_high",
        "significant",
        "updated",
    )
    query = (
        select(
            BestRow.machine_id,
            BestRow.model_pk,
            ModelRow.model_id,
            BestRow.seq_len,
            BestRow.batch,
            BestRow.objective,
            TrialRow.study_id,
            BestRow.trial_id,
            TrialRow.number.label("trial_number"),
            _json_text(BestRow.config, "backend").label("backend"),
            _json_text(BestRow.config, "precision").label("precision"),
            BestRow.metrics["median_ms"].as_float().label("median_ms"),
            BestRow.default_median_ms,
            BestRow.speedup,
            BestRow.speedup_low,
            BestRow.speedup_high,
            BestRow.significant,
            BestRow.updated,
        )
        .join(ModelRow, BestRow.model_pk == ModelRow.id)
        .join(TrialRow, BestRow.trial_id == TrialRow.id)
        .order_by(BestRow.machine_id, BestRow.model_pk, BestRow.seq_len, BestRow.batch, BestRow.objective)
    )
    return [_row_dict(row, names) for row in session.execute(query)]


# -- studies ------------------------------------------------------------------------------

_STUDY_COLUMNS = (
    "id",
    "machine_id",
    "model_pk",
    "seq_len",
    "batch",
    "objective",
    "space_hash",
    "optuna_study_name",
    "settings",
    "status",
    "created",
    "updated",
    "pareto",
)


def _studies_query() -> Any:  # a Select of (StudyRow, fingerprint, hostname, model_id, content_hash)
    from sqlalchemy import select

    from tuner.store._schema import MachineRow, ModelRow, StudyRow

    return (
        select(StudyRow, MachineRow.fingerprint, MachineRow.hostname, ModelRow.model_id, ModelRow.content_hash)
        .join(MachineRow, StudyRow.machine_id == MachineRow.id)
        .join(ModelRow, StudyRow.model_pk == ModelRow.id)
    )


def _study_dicts(session: "Session", rows: Sequence[Any], with_counts: bool = True) -> list[dict[str, Any]]:
    """Study rows with the machine's and model's names and (``with_counts``) their trials
    counted by status; without, ``n_trials`` is 0 and ``counts`` empty."""
    studies = []
    for row, fingerprint, hostname, model_id, content_hash in rows:
        entry = _row_dict(row, _STUDY_COLUMNS)
        entry.update(
            fingerprint=fingerprint,
            hostname=hostname,
            model_id=model_id,
            content_hash=content_hash,
            n_trials=0,
            counts={},
        )
        studies.append(entry)
    if studies and with_counts:
        counts = trial_counts(session, [s["id"] for s in studies])
        for entry in studies:
            entry["counts"] = counts.get(entry["id"], {})
            entry["n_trials"] = sum(entry["counts"].values())
    return studies


def trial_counts(session: "Session", study_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """{study id: {status: trials}} for these studies only."""
    from sqlalchemy import func, select

    from tuner.store._schema import TrialRow

    query = (
        select(TrialRow.study_id, TrialRow.status, func.count())
        .where(TrialRow.study_id.in_(list(study_ids)))
        .group_by(TrialRow.study_id, TrialRow.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for study_id, status, n in session.execute(query):
        counts.setdefault(study_id, {})[status] = int(n)
    return counts


def studies(
    session: "Session",
    machine_id: int | None = None,
    model_pk: int | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
    with_counts: bool = True,
) -> tuple[int, list[dict[str, Any]]]:
    """(how many match, one page of them oldest first) with trial counts by status
    (``with_counts=False``: without, for a list of names)."""
    from sqlalchemy import func, select

    from tuner.store._schema import StudyRow

    conditions: list[ColumnElement[bool]] = []
    if machine_id is not None:
        conditions.append(StudyRow.machine_id == machine_id)
    if model_pk is not None:
        conditions.append(StudyRow.model_pk == model_pk)
    if status is not None:
        conditions.append(StudyRow.status == status)
    total = session.execute(select(func.count(StudyRow.id)).where(*conditions)).scalar_one()
    rows = session.execute(_studies_query().where(*conditions).order_by(StudyRow.id).limit(limit).offset(offset)).all()
    return int(total), _study_dicts(session, rows, with_counts)


def study(session: "Session", study_id: int) -> dict[str, Any] | None:
    from tuner.store._schema import StudyRow

    rows = session.execute(_studies_query().where(StudyRow.id == study_id)).all()
    found = _study_dicts(session, rows)
    return found[0] if found else None


# -- trials --------------------------------------------------------------------------------


def _json_text(column: Any, key: str) -> "ColumnElement[str]":
    """``column[key]`` as text, the same on SQLite and PostgreSQL."""
    return column[key].as_string()


def _trial_conditions(study_id: int, where: TrialFilter) -> list["ColumnElement[bool]"]:
    from sqlalchemy import Text, cast, or_

    from tuner.store._schema import TrialRow

    conditions: list[ColumnElement[bool]] = [TrialRow.study_id == study_id]
    if where.statuses:
        conditions.append(TrialRow.status.in_(list(where.statuses)))
    if where.backend:
        conditions.append(_json_text(TrialRow.config, "backend") == where.backend)
    if where.precision:
        conditions.append(_json_text(TrialRow.config, "precision") == where.precision)
    if where.flag == "none":
        conditions.append(or_(TrialRow.flags.is_(None), cast(TrialRow.flags, Text) == "[]"))
    elif where.flag:
        # Flags are lowercase words (validated by the caller), stored as a JSON list of
        # strings: its text contains the word in quotes exactly when the list holds it.
        conditions.append(cast(TrialRow.flags, Text).like(f'%"{where.flag}"%'))
    if where.after is not None:
        conditions.append(TrialRow.number > where.after)
    return conditions


def trials(
    session: "Session",
    study_id: int,
    where: TrialFilter = TrialFilter(),
    sort: str = "number",
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """(how many match, one page of trial summaries: no samples, effective settings or output)."""
    from sqlalchemy import func, select

    from tuner.store._schema import TrialRow

    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in TRIAL_SORT_KEYS:
        raise ValueError(f"cannot sort trials by {sort!r}; use one of {', '.join(TRIAL_SORT_KEYS)}")
    conditions = _trial_conditions(study_id, where)
    total = session.execute(select(func.count(TrialRow.id)).where(*conditions)).scalar_one()
    column = getattr(TrialRow, key)
    order = [(column.desc() if descending else column.asc()).nulls_last()]
    if key != "number":
        order.append(TrialRow.number.asc())
    columns = [getattr(TrialRow, name) for name in _SUMMARY_COLUMNS]
    rows = session.execute(select(*columns).where(*conditions).order_by(*order).limit(limit).offset(offset))
    return int(total), [_row_dict(row, _SUMMARY_COLUMNS) for row in rows]


_TRIAL_COLUMNS = _SUMMARY_COLUMNS + (
    "stdev_ms",
    "samples_ms",
    "effective",
    "timings",
    "artifact",
    "stderr_tail",
    "noise",
)


def trial(session: "Session", study_id: int, number: int) -> dict[str, Any] | None:
    """Everything stored about trial ``number`` of the study, or None."""
    from sqlalchemy import select

    from tuner.store._schema import TrialRow

    row = session.execute(
        select(TrialRow).where(TrialRow.study_id == study_id, TrialRow.number == number)
    ).scalar_one_or_none()
    if row is None:
        return None
    found = _row_dict(row, _TRIAL_COLUMNS)
    found["samples_ms"] = found["samples_ms"] or []
    return found


def trial_series(session: "Session", study_id: int) -> list[dict[str, Any]]:
    """Every trial of the study, by number, with only what the study's plots draw."""
    from sqlalchemy import select

    from tuner.store._schema import TrialRow

    names = ("number", "status", "value", "median_ms", "throughput", "accuracy", "accuracy_ok", "backend", "precision")
    query = (
        select(
            TrialRow.number,
            TrialRow.status,
            TrialRow.value,
            TrialRow.median_ms,
            TrialRow.throughput,
            TrialRow.accuracy,
            TrialRow.accuracy_ok,
            _json_text(TrialRow.config, "backend").label("backend"),
            _json_text(TrialRow.config, "precision").label("precision"),
        )
        .where(TrialRow.study_id == study_id)
        .order_by(TrialRow.number)
    )
    return [_row_dict(row, names) for row in session.execute(query)]


def trial_configs(session: "Session", study_id: int, statuses: Sequence[str] = ("ok",)) -> list[dict[str, Any]]:
    """(number, config, value, median_ms, throughput) of the study's trials with these statuses."""
    from sqlalchemy import select

    from tuner.store._schema import TrialRow

    names = ("number", "config", "value", "median_ms", "throughput", "accuracy")
    query = (
        select(
            TrialRow.number, TrialRow.config, TrialRow.value, TrialRow.median_ms, TrialRow.throughput, TrialRow.accuracy
        )
        .where(TrialRow.study_id == study_id, TrialRow.status.in_(list(statuses)))
        .order_by(TrialRow.number)
    )
    return [_row_dict(row, names) for row in session.execute(query)]


def trials_by_number(session: "Session", study_id: int, numbers: Sequence[int]) -> list[dict[str, Any]]:
    """Summaries of these trials of the study (e.g. its Pareto front), by number."""
    from sqlalchemy import select

    from tuner.store._schema import TrialRow

    if not numbers:
        return []
    columns = [getattr(TrialRow, name) for name in _SUMMARY_COLUMNS]
    rows = session.execute(
        select(*columns)
        .where(TrialRow.study_id == study_id, TrialRow.number.in_(list(numbers)))
        .order_by(TrialRow.number)
    )
    return [_row_dict(row, _SUMMARY_COLUMNS) for row in rows]


# -- replays ---------------------------------------------------------------------------------

_REPLAY_COLUMNS = (
    "id",
    "study_id",
    "trial_id",
    "kind",
    "role",
    "round",
    "config",
    "status",
    "reason",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "n_samples",
    "samples_ms",
    "throughput",
    "flags",
    "noise",
    "created",
)


def replays(session: "Session", study_id: int, kind: str | None = None) -> list[dict[str, Any]]:
    """The study's fresh-process re-measurements in the order they ran."""
    from sqlalchemy import select

    from tuner.store._schema import ReplayRow

    query = select(ReplayRow).where(ReplayRow.study_id == study_id)
    if kind is not None:
        query = query.where(ReplayRow.kind == kind)
    found = []
    for row in session.execute(query.order_by(ReplayRow.id)).scalars():
        entry = _row_dict(row, _REPLAY_COLUMNS)
        entry["samples_ms"] = entry["samples_ms"] or []
        found.append(entry)
    return found
