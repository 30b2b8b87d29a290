"""The tuner's tables, as SQLAlchemy 2 ORM classes.

Every table is prefixed ``tuner_`` because Optuna's RDBStorage shares the database
and owns the unprefixed names (``studies``, ``trials``, ``alembic_version``...).
This module describes the *current* schema; the migrations in ``db/versions`` are
what build it, and a test checks that the two agree. Change both together.

Only portable types: JSON is ``sqlalchemy.JSON`` (TEXT on SQLite, json on
PostgreSQL), times are UTC.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from tuner.store._names import (
    BEST,
    CLAIMS,
    MACHINES,
    MODELS,
    NIGHTLY_RUNS,
    REPLAYS,
    STUDIES,
    TRIALS,
)

# The schema's revision and its table, defined beside the table names (no SQLAlchemy
# there) and imported from here as before.
from tuner.store._names import SCHEMA_HEAD as SCHEMA_HEAD
from tuner.store._names import VERSION_TABLE as VERSION_TABLE

# Named constraints: Alembic's batch mode (how SQLite alters a table) needs names to
# find a constraint again, and PostgreSQL then gets the same names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, stored as naive UTC, returned as an aware UTC datetime.

    SQLite keeps no time zone, so storing naive UTC is what behaves the same on every
    dialect. A naive datetime given in is taken as local time (Python's convention,
    and what Optuna's ``datetime_start`` is).
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, and numpy scalars made plain.

    A failed trial is data: a NaN cosine must not make its row unwritable, and
    PostgreSQL's json type refuses NaN.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        return json_safe(value.item())
    return value


class SafeJSON(TypeDecorator[Any]):
    """JSON whose Python None is SQL NULL, and which never writes NaN."""

    impl = JSON
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(none_as_null=True)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json_safe(value)


class FiniteFloat(TypeDecorator[float]):
    """A float column where NaN and infinities are stored as NULL (not a number)."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        if value is None:
            return None
        value = float(value)
        return value if math.isfinite(value) else None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class MachineRow(Base):
    __tablename__ = MACHINES

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(128), unique=True)
    hardware_fingerprint: Mapped[str] = mapped_column(String(128), index=True)
    software_fingerprint: Mapped[str] = mapped_column(String(128))
    hostname: Mapped[str] = mapped_column(String(255))
    info: Mapped[dict[str, Any]] = mapped_column(SafeJSON())
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelRow(Base):
    __tablename__ = MODELS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(512), index=True)
    content_hash: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str] = mapped_column(Text)
    task: Mapped[str] = mapped_column(String(32))
    created: Mapped[datetime] = mapped_column(UTCDateTime())


class StudyRow(Base):
    __tablename__ = STUDIES
    __table_args__ = (Index(None, "machine_id", "model_pk", "seq_len", "batch", "objective"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey(f"{MACHINES}.id", ondelete="CASCADE"))
    model_pk: Mapped[int] = mapped_column(ForeignKey(f"{MODELS}.id", ondelete="CASCADE"), index=True)
    seq_len: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    objective: Mapped[str] = mapped_column(String(32))
    space_hash: Mapped[str] = mapped_column(String(128))
    optuna_study_name: Mapped[str] = mapped_column(String(512), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(SafeJSON())
    status: Mapped[str] = mapped_column(String(32))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    updated: Mapped[datetime] = mapped_column(UTCDateTime())
    pareto: Mapped[list[int] | None] = mapped_column(SafeJSON())  # since 0002


class TrialRow(Base):
    __tablename__ = TRIALS
    __table_args__ = (UniqueConstraint("study_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey(f"{STUDIES}.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(SafeJSON())
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(FiniteFloat())
    median_ms: Mapped[float | None] = mapped_column(FiniteFloat())
    p90_ms: Mapped[float | None] = mapped_column(FiniteFloat())
    p99_ms: Mapped[float | None] = mapped_column(FiniteFloat())
    mean_ms: Mapped[float | None] = mapped_column(FiniteFloat())
    stdev_ms: Mapped[float | None] = mapped_column(FiniteFloat())
    cv: Mapped[float | None] = mapped_column(FiniteFloat())
    n_samples: Mapped[int | None] = mapped_column(Integer)
    samples_ms: Mapped[list[float] | None] = mapped_column(SafeJSON())
    accuracy: Mapped[dict[str, Any] | None] = mapped_column(SafeJSON())
    accuracy_ok: Mapped[bool | None] = mapped_column(Boolean)
    effective: Mapped[dict[str, Any] | None] = mapped_column(SafeJSON())
    timings: Mapped[dict[str, Any] | None] = mapped_column(SafeJSON())
    artifact: Mapped[str | None] = mapped_column(Text)
    stderr_tail: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Since 0002: measurement protocol and constraints.
    flags: Mapped[list[str] | None] = mapped_column(SafeJSON())
    noise: Mapped[dict[str, Any] | None] = mapped_column(SafeJSON())
    peak_rss_mb: Mapped[float | None] = mapped_column(FiniteFloat())
    throughput: Mapped[float | None] = mapped_column(FiniteFloat())


class BestRow(Base):
    __tablename__ = BEST
    __table_args__ = (UniqueConstraint("machine_id", "model_pk", "seq_len", "batch", "objective"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey(f"{MACHINES}.id", ondelete="CASCADE"))
    model_pk: Mapped[int] = mapped_column(ForeignKey(f"{MODELS}.id", ondelete="CASCADE"), index=True)
    seq_len: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    objective: Mapped[str] = mapped_column(String(32))
    trial_id: Mapped[int] = mapped_column(ForeignKey(f"{TRIALS}.id", ondelete="CASCADE"), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(SafeJSON())
    metrics: Mapped[dict[str, Any]] = mapped_column(SafeJSON())
    default_median_ms: Mapped[float | None] = mapped_column(FiniteFloat())
    speedup: Mapped[float | None] = mapped_column(FiniteFloat())
    updated: Mapped[datetime] = mapped_column(UTCDateTime())
    # Since 0002: the speedup's 95% confidence interval from the finalists' re-measurement.
    speedup_low: Mapped[float | None] = mapped_column(FiniteFloat())
    speedup_high: Mapped[float | None] = mapped_column(FiniteFloat())
    significant: Mapped[bool | None] = mapped_column(Boolean)
    finalists: Mapped[list[dict[str, Any]] | None] = mapped_column(SafeJSON())
    # Since 0003: the tuner version that chose it (a winner depends on it; docs/nightly.md).
    tuner_version: Mapped[str | None] = mapped_column(String(32))


class ReplayRow(Base):
    """A configuration re-measured in a fresh process outside the search (since 0002)."""

    __tablename__ = REPLAYS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey(f"{STUDIES}.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[int | None] = mapped_column(ForeignKey(f"{TRIALS}.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    round: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(SafeJSON())
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    median_ms: Mapped[float | None] = mapped_column(FiniteFloat())
    p90_ms: Mapped[float | None] = mapped_column(FiniteFloat())
    p99_ms: Mapped[float | None] = mapped_column(FiniteFloat())
    n_samples: Mapped[int | None] = mapped_column(Integer)
    samples_ms: Mapped[list[float] | None] = mapped_column(SafeJSON())
    throughput: Mapped[float | None] = mapped_column(FiniteFloat())
    flags: Mapped[list[str] | None] = mapped_column(SafeJSON())
    noise: Mapped[dict[str, Any] | None] = mapped_column(SafeJSON())
    created: Mapped[datetime] = mapped_column(UTCDateTime())


class NightlyRunRow(Base):
    """One `tuner nightly` run (since 0003): what it planned and why, what each step
    found, and how it ended (docs/nightly.md)."""

    __tablename__ = NIGHTLY_RUNS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[int | None] = mapped_column(ForeignKey(f"{MACHINES}.id", ondelete="SET NULL"), index=True)
    hostname: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(SafeJSON())
    plan: Mapped[list[dict[str, Any]]] = mapped_column(SafeJSON())
    results: Mapped[list[dict[str, Any]] | None] = mapped_column(SafeJSON())
    summary: Mapped[str | None] = mapped_column(Text)
    started: Mapped[datetime] = mapped_column(UTCDateTime())
    finished: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ClaimRow(Base):
    """A step of a shared study that one worker takes on (since 0004): who took it,
    when it last said it was alive, and when it was done (docs/fleet.md, --join)."""

    __tablename__ = CLAIMS
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey(f"{STUDIES}.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(255))
    claimed: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat: Mapped[datetime] = mapped_column(UTCDateTime())
    done: Mapped[datetime | None] = mapped_column(UTCDateTime())
