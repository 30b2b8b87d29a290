"""`tuner serve` on a fleet's PostgreSQL database: served, and unable to write
(every transaction READ ONLY). Needs the test server (`make test` starts one)."""

from __future__ import annotations

import pytest
from serve_helpers import MODEL


def test_served_read_only_on_postgresql(postgres_url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import InternalError, OperationalError, ProgrammingError
    from starlette.testclient import TestClient

    from tuner.service.app import create_app
    from tuner.service.db import open_readonly
    from tuner.store import NewTrial, Store

    with Store.open(postgres_url) as store:
        machine = store.upsert_machine({"cpu": {"model_name": "Xeon"}}, "fp-a", "hw-a", "sw-a", "host-a")
        model = store.upsert_model(MODEL, "hash-a", "/models/a", "embedding")
        study = store.get_or_create_study(machine, model, 16, 1, "p50", "space", "study-a", {"trials": 2})
        store.record_trial(NewTrial(study.id, 0, config={"backend": "onnxruntime", "precision": "fp32"}, status="ok",
                           value=2.0, median_ms=2.0, samples_ms=[2.0, 2.1], flags=["noisy"]))
    served = open_readonly(postgres_url)
    try:
        assert served.dialect == "postgresql" and "password" not in served.where
        with pytest.raises((InternalError, OperationalError, ProgrammingError), match="read-only transaction"):
            with served.engine.begin() as connection:
                connection.execute(text("DELETE FROM tuner_trials"))
        client = TestClient(create_app(served), base_url="http://127.0.0.1")
        assert [m["hostname"] for m in client.get("/api/v1/machines").json()] == ["host-a"]
        page = client.get(f"/api/v1/studies/{study.id}/trials", params={"flag": "noisy", "backend": "onnxruntime"})
        assert page.json()["total"] == 1
        assert client.get(f"/api/v1/studies/{study.id}/trials/0").json()["samples_ms"] == [2.0, 2.1]
        assert client.get("/").status_code == 200
    finally:
        served.close()
