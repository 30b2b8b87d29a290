"""A stored winner to deploy: written through the store's own API, so the deploy
commands are tested without running a whole study first."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest


@pytest.fixture
def deploy_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TUNER_DATA_DIR": str(tmp_path / "data"),
        "TUNER_LOCK_FILE": str(tmp_path / "machine.lock"),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture
def store_winner(tmp_path: Path) -> Callable[..., str]:
    """store_winner(model_dir, config, seq_len=16, objective="p50") -> the database URL."""
    url = f"sqlite:///{tmp_path / 'winners.db'}"

    def store(model_dir: Path, config: dict[str, Any], seq_len: int = 16, objective: str = "p50") -> str:
        from tuner.hardware import detect
        from tuner.model import resolve_model
        from tuner.store import NewTrial, Store

        machine = detect()
        model = resolve_model(str(model_dir))
        db = Store.open(url)
        try:
            machine_id = db.upsert_machine(machine.to_dict(), machine.fingerprint, machine.hardware_fingerprint,
                                           machine.software_fingerprint, machine.hostname)
            model_pk = db.upsert_model(model.model_id, model.content_hash, model.path, model.task)
            study = db.get_or_create_study(machine_id, model_pk, seq_len, 1, objective, "test-space",
                                           f"test:{seq_len}:{objective}", {})
            trial_id = db.record_trial(NewTrial(study.id, 0, config=config, status="ok", value=1.0, median_ms=1.0))
            db.set_best(machine_id, model_pk, seq_len, 1, objective, trial_id, config, {"median_ms": 1.0}, 2.0, 2.0)
        finally:
            db.close()
        return url

    return store
