"""Fixtures for the store tests: one suite, run on SQLite and on PostgreSQL.

``db_url`` is parametrized over both, as Optuna's ``StorageSupplier`` is: a real
SQLite file in tmp_path, or a fresh database of its own on the test server
(tests/postgres_helpers.py; skipped with the command that starts one when there is
no server). ``db_path`` stays for what only SQLite has: a file, WAL, a lock.
No mocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tuner.store import Store, StudyRecord

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tuner.db"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, db_path: Path) -> str:
    """An empty database: a SQLite file (not yet made, in a folder that is) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        db_path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db_path}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        yield opened


@dataclass
class Seeded:
    store: Store
    machine_id: int
    model_pk: int
    study: StudyRecord


@pytest.fixture
def seeded(store: Store) -> Seeded:
    """One machine, one model, one study (seq 16, batch 1, p50)."""
    machine_id = store.upsert_machine({"cpu": "Xeon"}, "fp-a", "hw-a", "sw-a", "host-a")
    model_pk = store.upsert_model("minilm", "hash-minilm", "/models/minilm", "embedding")
    study = store.get_or_create_study(machine_id, model_pk, 16, 1, "p50", "space-1", "study-seq16", {"trials": 5})
    return Seeded(store, machine_id, model_pk, study)
