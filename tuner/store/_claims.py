"""Claims: a step of a shared study that exactly one worker takes on (`tuner auto
--join`, docs/fleet.md): queueing the study's first configurations, re-measuring its
finalists.

A worker inserts the claim if it is absent (``INSERT ... ON CONFLICT DO NOTHING``:
one insert wins, on SQLite and PostgreSQL alike), beats its heartbeat while it works
and marks it done; the others wait. A claim whose heartbeat is older than the
``stale_after_s`` its asker passes is taken over, in the same transaction that reads
it (the row is locked), so two waiters never both take it. Times are the database
server's clock, so machines whose clocks disagree still agree on what is stale.

A mixin of ``Store`` (same contract: each method one transaction, frozen records).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tuner.store._schema import ClaimRow


@dataclass(frozen=True)
class ClaimRecord:
    id: int
    study_id: int
    name: str
    owner: str  # who holds it: "host:pid"
    claimed: datetime
    heartbeat: datetime
    done: datetime | None

    def held_by(self, owner: str) -> bool:
        return self.owner == owner and self.done is None


class Claims:
    """``Store`` methods for claims."""

    if TYPE_CHECKING:

        def _transaction(self, write: bool = False) -> AbstractContextManager[Session]: ...

    def claim(self, study_id: int, name: str, owner: str, stale_after_s: float) -> ClaimRecord:
        """Take claim ``name`` of the study for ``owner`` unless another holds it and is
        alive (its heartbeat younger than ``stale_after_s``); the claim as it stands
        after (``held_by(owner)``: ours; ``done``: finished by whoever held it)."""
        from sqlalchemy import select

        from tuner.store._schema import ClaimRow, StudyRow
        from tuner.store._store import _insert_for

        with self._transaction(write=True) as session:
            if session.get(StudyRow, study_id) is None:
                raise KeyError(f"no study with id {study_id} in the store")
            now = _server_now(session)
            insert = _insert_for(session)
            session.execute(
                insert(ClaimRow.__table__)
                .values(
                    study_id=study_id,
                    name=name,
                    owner=owner,
                    claimed=now,
                    heartbeat=now,
                    done=None,
                )
                .on_conflict_do_nothing(index_elements=["study_id", "name"])
            )
            row = session.execute(
                select(ClaimRow).where(ClaimRow.study_id == study_id, ClaimRow.name == name).with_for_update()
            ).scalar_one()
            if row.done is None and row.owner != owner and now - row.heartbeat > timedelta(seconds=stale_after_s):
                row.owner, row.claimed, row.heartbeat = owner, now, now  # its holder stopped beating: ours now
            session.flush()
            return _claim(row)

    def beat_claim(self, claim_id: int, owner: str) -> bool:
        """Keep ``owner``'s claim alive; False when it is no longer ``owner``'s (taken over, or done)."""
        from sqlalchemy import update

        from tuner.store._schema import ClaimRow

        with self._transaction(write=True) as session:
            result = session.execute(
                update(ClaimRow)
                .where(ClaimRow.id == claim_id, ClaimRow.owner == owner, ClaimRow.done.is_(None))
                .values(heartbeat=_server_now(session))
            )
            return bool(getattr(result, "rowcount", 0))

    def finish_claim(self, claim_id: int, owner: str) -> bool:
        """Mark ``owner``'s claim done; False when it was not ``owner``'s any more."""
        from sqlalchemy import update

        from tuner.store._schema import ClaimRow

        with self._transaction(write=True) as session:
            result = session.execute(
                update(ClaimRow)
                .where(ClaimRow.id == claim_id, ClaimRow.owner == owner, ClaimRow.done.is_(None))
                .values(done=_server_now(session))
            )
            return bool(getattr(result, "rowcount", 0))

    def claims(self, study_id: int) -> list[ClaimRecord]:
        """The study's claims, oldest first."""
        from sqlalchemy import select

        from tuner.store._schema import ClaimRow

        with self._transaction() as session:
            rows = session.execute(select(ClaimRow).where(ClaimRow.study_id == study_id).order_by(ClaimRow.id))
            return [_claim(row) for row in rows.scalars()]


def _server_now(session: Session) -> datetime:
    """The database server's time, as an aware UTC datetime (SQLite: this machine's)."""
    if session.get_bind().dialect.name != "postgresql":
        return datetime.now(UTC)
    from sqlalchemy import func, select

    value = session.execute(select(func.now())).scalar_one()
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _claim(row: ClaimRow) -> ClaimRecord:
    return ClaimRecord(
        id=row.id,
        study_id=row.study_id,
        name=row.name,
        owner=row.owner,
        claimed=row.claimed,
        heartbeat=row.heartbeat,
        done=row.done,
    )
