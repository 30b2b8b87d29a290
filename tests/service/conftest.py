"""Databases for the dashboard's tests, each made once per session:

- ``real_db``: a real small study, tuned by `tuner auto` on the MiniLM the package
  ships (ONNX Runtime only, 3 trials at seq 16 and 32, one finalist re-measured);
- ``synthetic_db``: a fleet written straight into the tables (tuner/service/synthetic.py):
  3 machines (one of them stale) x 2 models, 10,000 trials per study.

No mocks: the app is served over the real databases, opened read-only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_tuner
from serve_helpers import MODEL, SEQ_LENS, Served, make_client


@pytest.fixture(scope="session")
def real_db(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("serve-real")
    db = folder / "tuner.db"
    env = {**os.environ, "TUNER_LOCK_FILE": str(folder / "machine.lock")}
    run_tuner(
        "auto", "--model", MODEL, "--seq-len", ",".join(map(str, SEQ_LENS)), "--trials", "3",
        "--backends", "onnxruntime", "--finalists", "1", "--finalist-rounds", "3", "--min-time", "0.1",
        "--noise-wait", "0", "--noise-retries", "0", "--quiet", "--seed", "0", "--db", f"sqlite:///{db}",
        env=env, timeout=600,
    )
    return db


@pytest.fixture(scope="session")
def synthetic_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuner.service.synthetic import Shape, build

    db = tmp_path_factory.mktemp("serve-synthetic") / "fleet.db"
    build(db, Shape(machines=3, models=2, trials=10_000, seq_lens=(16,), stale_every=2))
    return db


@pytest.fixture(scope="session")
def real(real_db: Path) -> Any:
    return make_client(real_db)


@pytest.fixture(scope="session")
def synthetic(synthetic_db: Path) -> Any:
    return make_client(synthetic_db)


@pytest.fixture(scope="session")
def served_real(real_db: Path) -> Iterator[Served]:
    served = Served(real_db)
    yield served
    served.stop()


@pytest.fixture(scope="session")
def served_synthetic(synthetic_db: Path) -> Iterator[Served]:
    served = Served(synthetic_db)
    yield served
    served.stop()
