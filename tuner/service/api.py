"""The JSON API, ``/api/v1``: every route reads, none writes (GET only).

docs/api.md describes each route and field; the OpenAPI schema at ``/openapi.json``
is generated from these signatures and tuner/service/schemas.py.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from tuner.service import schemas as S
from tuner.service.service import Service
from tuner.store import OBJECTIVES, REPLAY_KINDS, STUDY_STATUSES, TRIAL_STATUSES
from tuner.store._queries import TRIAL_SORT_KEYS

# Ids and counts fit the store's 32-bit integer columns; larger numbers cannot exist.
MAX_INT = 2**31 - 1

TrialStatus = Enum("TrialStatus", {s: s for s in TRIAL_STATUSES}, type=str)  # type: ignore[misc]
StudyStatus = Enum("StudyStatus", {s: s for s in STUDY_STATUSES}, type=str)  # type: ignore[misc]
Objective = Enum("Objective", {o: o for o in OBJECTIVES}, type=str)  # type: ignore[misc]
ReplayKind = Enum("ReplayKind", {k: k for k in REPLAY_KINDS}, type=str)  # type: ignore[misc]
TrialSort = Enum(  # type: ignore[misc]
    "TrialSort", {name: name for key in TRIAL_SORT_KEYS for name in (key, f"-{key}")}, type=str
)

Id = Annotated[int, Path(ge=1, le=MAX_INT)]
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_INT)]
Number = Annotated[int, Path(ge=0, le=MAX_INT, description="the trial's number in its study (Optuna's)")]

router = APIRouter(
    prefix="/api/v1",
    responses={
        404: {"model": S.ErrorOut, "description": "no such machine, model, study or trial"},
        422: {"model": S.ErrorOut, "description": "a parameter is invalid"},
    },
)


def service(request: Request) -> Service:
    found: Service = request.app.state.service
    return found


def _value(member: Enum | None) -> str | None:
    return None if member is None else str(member.value)


@router.get("/info", response_model=S.InfoOut, summary="what is served")
def info(request: Request) -> dict[str, object]:
    from tuner._version import __version__
    from tuner.service.launch import this_fingerprint

    store = service(request).store
    return {
        "api_version": S.API_VERSION,
        "tuner_version": __version__,
        "database": store.where,
        "dialect": store.dialect,
        "read_only": True,
        "this_machine": this_fingerprint(),
    }


@router.get("/overview", response_model=S.OverviewOut, summary="machines x models: every stored winner")
def overview(request: Request) -> dict[str, object]:
    return service(request).overview()


@router.get("/machines", response_model=list[S.MachineOut], summary="every machine row")
def machines(request: Request) -> list[dict[str, object]]:
    return service(request).machines()


@router.get("/machines/{machine_id}", response_model=S.MachineDetailOut, summary="one machine, with its full report")
def machine(request: Request, machine_id: Id) -> dict[str, object]:
    return service(request).machine(machine_id)


@router.get("/models", response_model=list[S.ModelOut], summary="every model")
def models(request: Request) -> list[dict[str, object]]:
    return service(request).models()


@router.get("/models/{model_pk}", response_model=S.ModelOut, summary="one model")
def model(request: Request, model_pk: Id) -> dict[str, object]:
    return service(request).model(model_pk)


@router.get("/best", response_model=list[S.BestOut], summary="stored winners, with their launch block")
def best(
    request: Request,
    machine_id: OptionalId = None,
    model: Annotated[str | None, Query(max_length=512, description="model_id or content hash")] = None,
    seq_len: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    batch: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    objective: Objective | None = None,
) -> list[dict[str, object]]:
    return service(request).best(machine_id, model, seq_len, batch, _value(objective), launch=True)


@router.get("/studies", response_model=S.StudyPageOut, summary="studies, oldest first, paged")
def studies(
    request: Request,
    machine_id: OptionalId = None,
    model_pk: OptionalId = None,
    status: StudyStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> dict[str, object]:
    return service(request).studies(machine_id, model_pk, _value(status), limit, offset)


@router.get("/studies/{study_id}", response_model=S.StudyOut, summary="one study with its trials counted by status")
def study(request: Request, study_id: Id) -> dict[str, object]:
    return service(request).study(study_id)


@router.get(
    "/studies/{study_id}/trials",
    response_model=S.TrialPageOut,
    summary="a study's trials, filtered, sorted and paged (no samples)",
)
def trials(
    request: Request,
    study_id: Id,
    status: Annotated[list[TrialStatus], Query(description="any of these statuses (repeat the parameter)")] = [],  # noqa: B006
    backend: Annotated[str | None, Query(max_length=64)] = None,
    precision: Annotated[str | None, Query(max_length=64)] = None,
    flag: Annotated[
        str | None, Query(pattern=r"^[a-z][a-z-]{0,31}$", description="a stability flag; `none`: trials without flags")
    ] = None,
    after: Annotated[int | None, Query(ge=-1, le=MAX_INT, description="only trials numbered above this")] = None,
    sort: Annotated[TrialSort, Query(description="a column, `-` first for descending")] = TrialSort["number"],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> dict[str, object]:
    return service(request).trials(
        study_id, [str(s.value) for s in status], backend, precision, flag, after, str(sort.value), limit, offset
    )


@router.get(
    "/studies/{study_id}/trials/{number}", response_model=S.TrialOut, summary="everything stored about one trial"
)
def trial(request: Request, study_id: Id, number: Number) -> dict[str, object]:
    return service(request).trial(study_id, number)


@router.get("/studies/{study_id}/series", response_model=S.SeriesOut, summary="a study's trials as plot columns")
def series(
    request: Request, study_id: Id, max_points: Annotated[int, Query(ge=10, le=50_000)] = 5000
) -> dict[str, object]:
    return service(request).series(study_id, max_points)


@router.get(
    "/studies/{study_id}/pareto",
    response_model=S.ParetoOut,
    summary="the trials on the study's latency-throughput front",
)
def pareto(request: Request, study_id: Id) -> dict[str, object]:
    return service(request).pareto(study_id)


@router.get(
    "/studies/{study_id}/importance",
    response_model=S.ImportanceOut,
    summary="parameter importance (Optuna's PED-ANOVA evaluator)",
)
def importance(request: Request, study_id: Id) -> dict[str, object]:
    return service(request).importance(study_id)


@router.get(
    "/studies/{study_id}/replays",
    response_model=list[S.ReplayOut],
    summary="fresh-process re-measurements: finalists, `tuner verify`",
)
def replays(request: Request, study_id: Id, kind: ReplayKind | None = None) -> list[dict[str, object]]:
    return service(request).replays(study_id, _value(kind))


@router.get(
    "/studies/{study_id}/backends",
    response_model=list[S.BackendBestOut],
    summary="the best ok trial per backend and precision",
)
def backends(request: Request, study_id: Id) -> list[dict[str, object]]:
    return service(request).backends(study_id)


@router.get("/compare/studies", response_model=S.CompareOut, summary="two studies side by side")
def compare_studies(
    request: Request, a: Annotated[int, Query(ge=1, le=MAX_INT)], b: Annotated[int, Query(ge=1, le=MAX_INT)]
) -> dict[str, object]:
    return service(request).compare_studies(a, b)


@router.get("/compare/machines", response_model=S.CompareOut, summary="two machines' winners side by side")
def compare_machines(
    request: Request,
    a: Annotated[int, Query(ge=1, le=MAX_INT)],
    b: Annotated[int, Query(ge=1, le=MAX_INT)],
    model_pk: OptionalId = None,
) -> dict[str, object]:
    return service(request).compare_machines(a, b, model_pk)
