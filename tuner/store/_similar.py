"""The store's side of a fleet (docs/fleet.md): which other machines have results for
a workload, ranked by how alike they are to this one (tuner.hardware.similarity), and
their best configurations. `tuner best` names the closest machine with a winner where
this one has none; a new study starts from the closest machines' results.

A mixin of ``Store`` (same contract: each method one transaction, frozen records).
The queries stay small on a fleet's database: the machines' CPU facts are read out of
their JSON in SQL (not their whole topology), and trials are read per study through
its (study_id, number) index, best first, a few at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tuner.hardware.similarity import Similarity, similarity
from tuner.store._records import BestRecord, best_record

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class PeerRecord:
    """A machine's results for one workload (model, seq_len, batch, objective)."""

    machine_id: int
    fingerprint: str
    hardware_fingerprint: str
    hostname: str
    cpu: dict[str, Any]  # its MachineInfo's "cpu" part
    last_seen: datetime
    best: BestRecord | None  # its winner of the workload, if it has one
    study_ids: tuple[int, ...]  # its studies of the workload, newest first
    similarity: Similarity = Similarity.ANY  # to the machine that asked (rank_peers)

    def describe(self) -> str:
        """``web-3 (73188dc811727c3a, the same CPU model and ISA)``."""
        return f"{self.hostname} ({self.fingerprint}, {self.similarity.describe()})"


class FleetQueries:
    """``Store`` methods for the fleet: peers of a workload and their best configurations."""

    if TYPE_CHECKING:

        def _transaction(self, write: bool = False) -> AbstractContextManager[Session]: ...

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
        """Every machine with a winner (``winners_only``) or a study of ``model`` (a
        model_id or a content hash) at this workload, by machine id; ``seq_len`` None:
        any length (a peer then carries the winner of its shortest). Unranked: see
        ``rank_peers``."""
        from sqlalchemy import or_, select

        from tuner.store._schema import BestRow, MachineRow, ModelRow, StudyRow

        model_matches = or_(ModelRow.model_id == model, ModelRow.content_hash == model)
        best_query = (
            select(BestRow, MachineRow.fingerprint, ModelRow.model_id, ModelRow.content_hash)
            .join(MachineRow, BestRow.machine_id == MachineRow.id)
            .join(ModelRow, BestRow.model_pk == ModelRow.id)
            .where(model_matches, BestRow.batch == batch, BestRow.objective == objective)
        )
        study_query = (
            select(StudyRow.id, StudyRow.machine_id)
            .join(ModelRow, StudyRow.model_pk == ModelRow.id)
            .where(model_matches, StudyRow.batch == batch, StudyRow.objective == objective)
        )
        if seq_len is not None:
            best_query = best_query.where(BestRow.seq_len == seq_len)
            study_query = study_query.where(StudyRow.seq_len == seq_len)
        with self._transaction() as session:
            winners: dict[int, BestRecord] = {}
            for row, fingerprint, model_id, content_hash in session.execute(
                best_query.order_by(BestRow.seq_len, BestRow.id)
            ):
                winners.setdefault(row.machine_id, best_record(row, fingerprint, model_id, content_hash))
            studies: dict[int, list[int]] = {}
            if not winners_only:
                for study_id, machine_id in session.execute(study_query.order_by(StudyRow.id.desc())):
                    studies.setdefault(machine_id, []).append(study_id)
            wanted = sorted(winners.keys() | studies.keys())
            if not wanted:
                return []
            machines = session.execute(
                select(
                    MachineRow.id,
                    MachineRow.fingerprint,
                    MachineRow.hardware_fingerprint,
                    MachineRow.hostname,
                    MachineRow.last_seen,
                    MachineRow.info["cpu"].label("cpu"),
                )
                .where(MachineRow.id.in_(wanted))
                .order_by(MachineRow.id)
            ).all()
        return [
            PeerRecord(
                machine_id=m.id,
                fingerprint=m.fingerprint,
                hardware_fingerprint=m.hardware_fingerprint,
                hostname=m.hostname,
                cpu=dict(m.cpu) if isinstance(m.cpu, Mapping) else {},
                last_seen=m.last_seen,
                best=winners.get(m.id),
                study_ids=tuple(studies.get(m.id, ())),
            )
            for m in machines
            if m.fingerprint != exclude_fingerprint
        ]

    def top_trials(self, study_id: int, limit: int, descending: bool = False) -> list[tuple[dict[str, Any], float]]:
        """The study's ``limit`` best passing trials: (config, value), best first
        (``descending``: a larger value is better, as throughput)."""
        from sqlalchemy import select

        from tuner.store._schema import TrialRow

        order = TrialRow.value.desc() if descending else TrialRow.value.asc()
        query = (
            select(TrialRow.config, TrialRow.value)
            .where(TrialRow.study_id == study_id, TrialRow.status == "ok", TrialRow.value.is_not(None))
            .order_by(order, TrialRow.number)
            .limit(limit)
        )
        with self._transaction() as session:
            return [(dict(config), float(value)) for config, value in session.execute(query)]


def rank_peers(peers: Sequence[PeerRecord], hardware_fingerprint: str, info: Mapping[str, Any]) -> list[PeerRecord]:
    """``peers`` with their similarity to the machine of (``hardware_fingerprint``,
    ``info``: its ``MachineInfo.to_dict()``), closest first, then the most recently seen."""
    ranked = [
        _with(peer, similarity(hardware_fingerprint, info, peer.hardware_fingerprint, {"cpu": peer.cpu}))
        for peer in peers
    ]
    ranked.sort(key=lambda p: (p.similarity, -p.last_seen.timestamp(), p.machine_id))
    return ranked


def _with(peer: PeerRecord, level: Similarity) -> PeerRecord:
    from dataclasses import replace

    return replace(peer, similarity=level)
