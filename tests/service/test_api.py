"""The JSON API over a database filled by a real `tuner auto` run: every endpoint,
its errors, and that nothing it does writes."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_tuner
from serve_helpers import MODEL, SEQ_LENS

ENDPOINTS = [
    "/api/v1/info", "/api/v1/overview", "/api/v1/machines", "/api/v1/machines/{machine}", "/api/v1/models",
    "/api/v1/models/{model}", "/api/v1/best", "/api/v1/studies", "/api/v1/studies/{study}",
    "/api/v1/studies/{study}/trials", "/api/v1/studies/{study}/trials/{number}", "/api/v1/studies/{study}/series",
    "/api/v1/studies/{study}/pareto", "/api/v1/studies/{study}/importance", "/api/v1/studies/{study}/replays",
    "/api/v1/studies/{study}/backends", "/api/v1/compare/studies?a={study}&b={other}",
    "/api/v1/compare/machines?a={machine}&b={machine}",
]
PAGES = ["/", "/studies/{study}", "/studies/{study}/trials/{number}", "/compare/studies?a={study}&b={other}",
         "/compare/machines?a={machine}&b={machine}", "/api"]


def rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute(query).fetchall()


@pytest.fixture(scope="module")
def ids(real_db: Path) -> dict[str, int]:
    (study, other), = [tuple(r[0] for r in rows(real_db, "SELECT id FROM tuner_studies ORDER BY id"))]
    return {"machine": rows(real_db, "SELECT id FROM tuner_machines")[0][0],
            "model": rows(real_db, "SELECT id FROM tuner_models")[0][0], "study": study, "other": other,
            "number": 1}


def test_openapi_lists_every_endpoint(real: Any) -> None:
    schema = real.get("/openapi.json").json()
    paths = set(schema["paths"])
    for endpoint in ENDPOINTS:
        template = endpoint.split("?")[0].replace("{machine}", "{machine_id}").replace("{model}", "{model_pk}")
        template = template.replace("{study}", "{study_id}")
        assert template in paths
    assert all(set(methods) == {"get"} for methods in schema["paths"].values()), "every endpoint only reads"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_answers(real: Any, ids: dict[str, int], endpoint: str) -> None:
    response = real.get(endpoint.format(**ids))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() is not None


def test_the_studies_and_all_their_trials(real: Any, real_db: Path) -> None:
    studies = real.get("/api/v1/studies").json()
    assert studies["total"] == len(SEQ_LENS)
    assert sorted(s["seq_len"] for s in studies["items"]) == sorted(SEQ_LENS)
    for study in studies["items"]:
        assert study["model_id"] == MODEL and study["status"] == "done"
        stored = rows(real_db, f"SELECT number, status, median_ms FROM tuner_trials WHERE study_id = {study['id']} "
                               "ORDER BY number")
        assert study["n_trials"] == len(stored) == sum(study["counts"].values())
        listed = real.get(f"/api/v1/studies/{study['id']}/trials?limit=500").json()
        assert listed["total"] == len(stored)
        assert [(t["number"], t["status"], t["median_ms"]) for t in listed["items"]] == stored
        for number, _, _ in stored:
            trial = real.get(f"/api/v1/studies/{study['id']}/trials/{number}").json()
            assert trial["number"] == number and trial["backend"] == "onnxruntime"
            if trial["status"] == "ok":
                assert len(trial["samples_ms"]) == trial["n_samples"] > 0
                assert trial["effective"]["cpus"] and trial["accuracy"]["cosine_mean"] > 0.9
                threads = next(s for s in trial["settings"] if s["setting"] == "threads")
                assert threads["match"] is True and threads["requested"] == threads["effective"]


def test_best_carries_the_launch_block_of_tuner_best(real: Any, real_db: Path) -> None:
    best = real.get("/api/v1/best", params={"model": MODEL}).json()
    assert sorted(b["seq_len"] for b in best) == sorted(SEQ_LENS)
    for entry in best:
        assert entry["speedup"] > 0 and entry["finalists"] and not entry["stale"]
        proc = run_tuner("best", "--model", MODEL, "--seq-len", str(entry["seq_len"]), "--format", "json",
                         "--db", f"sqlite:///{real_db}", env=dict(os.environ))
        (printed,) = json.loads(proc.stdout)
        assert entry["launch"] == printed["launch"]
        assert entry["config"] == printed["config"] and entry["speedup_ci95"] == printed["speedup_ci95"]


def test_the_overview_names_the_model_and_both_lengths(real: Any) -> None:
    overview = real.get("/api/v1/overview").json()
    assert [m["model_id"] for m in overview["models"]] == [MODEL]
    assert sorted(r["seq_len"] for r in overview["results"]) == sorted(SEQ_LENS)
    page = real.get("/").text
    assert MODEL in page
    for result in overview["results"]:
        assert f"seq {result['seq_len']}: <b>{result['speedup']:.2f}x" in page


def test_trial_filters_sorting_and_paging(real: Any, ids: dict[str, int]) -> None:
    base = f"/api/v1/studies/{ids['study']}/trials"
    everything = real.get(base).json()["items"]
    ok = real.get(base, params={"status": "ok"}).json()
    assert ok["total"] == sum(t["status"] == "ok" for t in everything)
    by_median = real.get(base, params={"sort": "-median_ms"}).json()["items"]
    medians = [t["median_ms"] for t in by_median if t["median_ms"] is not None]
    assert medians == sorted(medians, reverse=True)
    int8 = real.get(base, params={"precision": "int8", "backend": "onnxruntime"}).json()
    assert int8["total"] == sum(t["precision"] == "int8" for t in everything)
    page = real.get(base, params={"limit": 1, "offset": 1}).json()
    assert page["total"] == len(everything) and [t["number"] for t in page["items"]] == [everything[1]["number"]]
    after = real.get(base, params={"after": everything[0]["number"]}).json()
    assert [t["number"] for t in after["items"]] == [t["number"] for t in everything[1:]]


@pytest.mark.parametrize("path, status", [
    ("/api/v1/machines/999", 404), ("/api/v1/models/999", 404), ("/api/v1/studies/999", 404),
    ("/api/v1/studies/999/trials", 404), ("/api/v1/studies/{study}/trials/999", 404),
    ("/api/v1/studies/999/series", 404), ("/api/v1/studies/999/importance", 404),
    ("/api/v1/compare/studies?a={study}&b=999", 404), ("/api/v1/nothing", 404),
    ("/api/v1/studies/abc", 422), ("/api/v1/studies/0", 422), ("/api/v1/studies/99999999999999999999", 422),
    ("/api/v1/studies/{study}/trials?limit=0", 422), ("/api/v1/studies/{study}/trials?status=bogus", 422),
    ("/api/v1/studies/{study}/trials?sort=samples_ms", 422), ("/api/v1/studies/{study}/trials?flag=Bad!", 422),
    ("/api/v1/studies/{study}/trials?offset=-1", 422), ("/api/v1/best?objective=fastest", 422),
    ("/api/v1/compare/studies?a={study}", 422),
])
def test_errors_are_json_never_a_traceback(real: Any, ids: dict[str, int], path: str, status: int) -> None:
    response = real.get(path.format(**ids))
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status and body["error"] and "Traceback" not in response.text
    if status == 422:
        assert body["detail"]


@pytest.mark.parametrize("path", ["/studies/999", "/studies/{study}/trials/999", "/nowhere", "/studies/x"])
def test_a_missing_page_is_a_page(real: Any, ids: dict[str, int], path: str) -> None:
    response = real.get(path.format(**ids))
    assert response.status_code in (404, 422)
    assert response.headers["content-type"].startswith("text/html") and "<h1>" in response.text


def test_nothing_writes(real: Any, real_db: Path, ids: dict[str, int]) -> None:
    def digest() -> str:
        return hashlib.sha256(real_db.read_bytes()).hexdigest()

    before = digest()
    for endpoint in ENDPOINTS + PAGES:
        path = endpoint.format(**ids)
        assert real.get(path).status_code == 200, path
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert real.request(method, path).status_code == 405, (method, path)
    assert digest() == before


def test_the_database_is_opened_read_only(real_db: Path) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from tuner.service.db import open_readonly

    store = open_readonly(str(real_db))
    try:
        with pytest.raises(OperationalError, match="readonly"):
            with store.engine.begin() as connection:
                connection.execute(text("DELETE FROM tuner_trials"))
    finally:
        store.close()


@pytest.mark.parametrize("path", ["/", "/studies/{study}", "/api/v1/overview", "/static/dashboard.js", "/nowhere",
                                  "/api/v1/studies/999"])
def test_security_headers_on_every_response(real: Any, ids: dict[str, int], path: str) -> None:
    response = real.get(path.format(**ids), headers={"Origin": "http://evil.example"})
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert not any(h.lower().startswith("access-control-") for h in response.headers), "CORS stays off"


def test_cors_preflight_is_refused(real: Any) -> None:
    response = real.options("/api/v1/overview", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers


def test_a_foreign_host_header_is_refused_on_loopback(real: Any) -> None:
    """DNS rebinding: a page elsewhere that resolves its own name to 127.0.0.1."""
    response = real.get("/api/v1/overview", headers={"Host": "evil.example:8765"})
    assert response.status_code == 403 and "loopback" in response.json()["error"]
    assert real.get("/api/v1/info", headers={"Host": "localhost:8765"}).status_code == 200


def test_assets_come_from_the_package(real: Any) -> None:
    plotly = real.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and b"plotly.js" in plotly.content[:200]
    for page in PAGES[:1]:
        html = real.get(page).text
        assert "http://" not in html.split("<main>")[0] and "https://" not in html.split("<main>")[0]
    assert real.get("/static/..%2Fapp.py").status_code == 404
    assert real.get("/static/nothing.js").status_code == 404
