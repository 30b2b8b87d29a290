"""What the API and the pages ask of the store, answered once for both.

``Service`` holds the read-only store and turns each question into one read
transaction over tuner.store._queries, then into the API's shapes (views.py).
An unknown id raises ``NotFound``; the web layer turns it into a 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tuner.service import views

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tuner.service.db import ReadOnlyStore


class NotFound(LookupError):
    """No such machine, model, study or trial; the message names which."""


class Service:
    def __init__(self, store: "ReadOnlyStore") -> None:
        from tuner.service.importance import ImportanceCache

        self.store = store
        self._importance = ImportanceCache(store)

    # -- machines, models, best ----------------------------------------------------------

    def _stale(self, session: "Session") -> tuple[list[dict[str, Any]], dict[int, str]]:
        from tuner.service.stale import stale_reasons
        from tuner.store import _queries as Q

        rows = Q.machines(session)
        return rows, stale_reasons(rows)

    def overview(self) -> dict[str, Any]:
        from sqlalchemy import select

        from tuner.store import _queries as Q
        from tuner.store._schema import StudyRow

        with self.store.session() as session:
            machines, stale = self._stale(session)
            models = Q.models(session)
            results = [views.result_view(b, stale) for b in Q.best_summaries(session)]
            running = list(
                session.execute(select(StudyRow.id).where(StudyRow.status == "running").order_by(StudyRow.id)).scalars()
            )
        return {
            "machines": [views.machine_view(m, stale) for m in machines],
            "models": models,
            "results": results,
            "running": running,
        }

    def machines(self) -> list[dict[str, Any]]:
        with self.store.session() as session:
            machines, stale = self._stale(session)
        return [views.machine_view(m, stale) for m in machines]

    def machine(self, machine_id: int) -> dict[str, Any]:
        with self.store.session() as session:
            machines, stale = self._stale(session)
        for row in machines:
            if row["id"] == machine_id:
                return views.machine_view(row, stale, detail=True)
        raise NotFound(f"no machine with id {machine_id}")

    def models(self) -> list[dict[str, Any]]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            return Q.models(session)

    def model(self, model_pk: int) -> dict[str, Any]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            found = Q.model(session, model_pk)
        if found is None:
            raise NotFound(f"no model with id {model_pk}")
        return found

    def best(
        self,
        machine_id: int | None = None,
        model: str | None = None,
        seq_len: int | None = None,
        batch: int | None = None,
        objective: str | None = None,
        launch: bool = False,
        model_pk: int | None = None,
    ) -> list[dict[str, Any]]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            _, stale = self._stale(session)
            rows = Q.best(session, machine_id, model, seq_len, batch, objective, model_pk)
            paths = {m["id"]: m["path"] for m in Q.models(session)} if launch and rows else {}
        found = [views.best_view(row, stale) for row in rows]
        if launch:
            from tuner.service.launch import launch_block

            for entry in found:
                entry["launch"], entry["launch_note"] = launch_block(entry, paths.get(entry["model_pk"]))
        return found

    # -- studies ----------------------------------------------------------------------------

    def studies(
        self,
        machine_id: int | None = None,
        model_pk: int | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        with_counts: bool = True,
    ) -> dict[str, Any]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            total, items = Q.studies(session, machine_id, model_pk, status, limit, offset, with_counts)
        return {"total": total, "limit": limit, "offset": offset, "items": items}

    def study(self, study_id: int) -> dict[str, Any]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            found = Q.study(session, study_id)
        if found is None:
            raise NotFound(f"no study with id {study_id}")
        return found

    def study_winner(self, study: dict[str, Any]) -> dict[str, Any] | None:
        """The stored winner of the study's workload when it is one of this study's trials."""
        for entry in self.best(
            study["machine_id"], None, study["seq_len"], study["batch"], study["objective"], model_pk=study["model_pk"]
        ):
            if entry["study_id"] == study["id"]:
                return entry
        return None

    def trials(
        self,
        study_id: int,
        statuses: Sequence[str] = (),
        backend: str | None = None,
        precision: str | None = None,
        flag: str | None = None,
        after: int | None = None,
        sort: str = "number",
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        from tuner.store import _queries as Q

        where = Q.TrialFilter(statuses=tuple(statuses), backend=backend, precision=precision, flag=flag, after=after)
        with self.store.session() as session:
            if Q.study(session, study_id) is None:
                raise NotFound(f"no study with id {study_id}")
            total, rows = Q.trials(session, study_id, where, sort, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": [views.trial_summary(r) for r in rows]}

    def trial(self, study_id: int, number: int) -> dict[str, Any]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            row = Q.trial(session, study_id, number)
        if row is None:
            raise NotFound(f"no trial {number} in study {study_id}")
        return views.trial_detail(row)

    def series(self, study_id: int, max_points: int = 5000) -> dict[str, Any]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            study = Q.study(session, study_id)
            if study is None:
                raise NotFound(f"no study with id {study_id}")
            model = Q.model(session, study["model_pk"])
            rows = Q.trial_series(session, study_id)
        return views.series_view(study, rows, model["task"] if model else None, max_points)

    def pareto(self, study_id: int) -> dict[str, Any]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            study = Q.study(session, study_id)
            if study is None:
                raise NotFound(f"no study with id {study_id}")
            numbers = study["pareto"]
            rows = Q.trials_by_number(session, study_id, numbers or [])
        return {"computed": numbers is not None, "trials": [views.trial_summary(r) for r in rows]}

    def importance(self, study_id: int) -> dict[str, Any]:
        study = self.study(study_id)
        return self._importance.importance(study["optuna_study_name"], study["objective"])

    def replays(self, study_id: int, kind: str | None = None) -> list[dict[str, Any]]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            if Q.study(session, study_id) is None:
                raise NotFound(f"no study with id {study_id}")
            rows = Q.replays(session, study_id, kind)
        for row in rows:
            row["flags"] = list(row["flags"] or [])
        return rows

    def backends(self, study_id: int) -> list[dict[str, Any]]:
        from tuner.store import _queries as Q

        with self.store.session() as session:
            study = Q.study(session, study_id)
            if study is None:
                raise NotFound(f"no study with id {study_id}")
            rows = Q.trial_configs(session, study_id)
        return views.backend_bests(study["objective"], study["batch"], rows)

    # -- comparisons ---------------------------------------------------------------------------

    def compare_studies(self, a: int, b: int) -> dict[str, Any]:
        sides = []
        for label, study_id in (("A", a), ("B", b)):
            study = self.study(study_id)
            winner = self.study_winner(study)
            sides.append(
                {
                    "label": label,
                    "machine": self.machine(study["machine_id"]),
                    "study": study,
                    "winners": [winner] if winner else [],
                    "backends": self.backends(study_id),
                }
            )
        return self._comparison("studies", sides, pair_all=True)

    def compare_machines(self, a: int, b: int, model_pk: int | None = None) -> dict[str, Any]:
        if model_pk is not None:
            self.model(model_pk)  # NotFound for an unknown model
        sides = []
        for label, machine_id in (("A", a), ("B", b)):
            machine = self.machine(machine_id)
            sides.append(
                {
                    "label": label,
                    "machine": machine,
                    "study": None,
                    "winners": self.best(machine_id, model_pk=model_pk),
                    "backends": [],
                }
            )
        return self._comparison("machines", sides, pair_all=False)

    @staticmethod
    def _comparison(kind: str, sides: list[dict[str, Any]], pair_all: bool) -> dict[str, Any]:
        left, right = sides
        for side in sides:  # the comparison's machine block is the summary, not the whole report
            side["machine"].pop("info", None)
        return {
            "kind": kind,
            "a": left,
            "b": right,
            "machine": views.differences(views.machine_facts(left["machine"]), views.machine_facts(right["machine"])),
            "rows": views.compare_rows(left["winners"], right["winners"], pair_all=pair_all),
        }
