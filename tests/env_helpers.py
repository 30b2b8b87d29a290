"""The per-backend environments the user built once (`tuner env create NAME`), for
tests that run a backend for real in its own interpreter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuner import envs


def user_envs_root() -> Path:
    """conftest points TUNER_CACHE_DIR at a throwaway folder; the environments built
    once by the user live in the default cache folder (or ``$TUNER_TEST_ENVS_DIR``)."""
    if os.environ.get("TUNER_TEST_ENVS_DIR"):
        return Path(os.environ["TUNER_TEST_ENVS_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tuner" / "envs"


def ready_env(backend: str, monkeypatch: pytest.MonkeyPatch) -> envs.EnvState:
    """Point the tuner at the user's environments and return ``backend``'s; skip the
    test with the reason (and the command that builds it) where it is not ready."""
    monkeypatch.setenv("TUNER_ENVS_DIR", str(user_envs_root()))
    decl = envs.env_for_backend(backend)
    assert decl is not None, f"{backend} declares no environment"
    state = envs.env_state(decl)
    if state.status != "ready":
        pytest.skip(f"{backend}: {state.why}")
    return state
