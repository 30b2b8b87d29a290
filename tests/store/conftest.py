"""Fixtures for the store tests: real SQLite files in tmp_path, no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tuner.store import Store, StudyRecord


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tuner.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{db_path}") as opened:
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
