"""Fixtures for the nightly tests: a real SQLite store, and the environment of the
`tuner` processes they start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuner.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "tuner.db")) as opened:
        yield opened


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """For `tuner` subprocesses: a database and a lock of the test's own; the session's
    artifact cache (tests/conftest.py), which is keyed by content."""
    return {
        **os.environ,
        "TUNER_DATA_DIR": str(tmp_path / "data"),
        "TUNER_LOCK_FILE": str(tmp_path / "machine.lock"),
        "HF_HUB_OFFLINE": "1",
    }
