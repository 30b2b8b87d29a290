"""Per-backend Python environments: a backend whose packages cannot share the tuner's
interpreter (IPEX needs torch 2.8 exactly; onnxruntime-gpu replaces onnxruntime)
declares an ``[env]`` in its search-space file, ``tuner env create NAME`` builds it
as a virtual environment under ``<cache dir>/envs/NAME``, and that backend's trials
run ``python -m tuner.trial.worker`` with the environment's interpreter: the same
worker protocol, the same tuner code (linked, not copied, from a source checkout).

Until the environment exists the backend is pruned from the space with the command
that builds it.
"""

from __future__ import annotations

from tuner.envs._declared import EnvDecl, declared_envs, env_for_backend
from tuner.envs._venv import create_env, remove_env, worker_python
from tuner.space.environments import (
    MANIFEST_FILE,
    WORKER_PACKAGES,
    EnvState,
    env_dir,
    env_state,
    env_unavailable_reason,
    envs_root,
)

__all__ = [
    "EnvDecl",
    "EnvState",
    "MANIFEST_FILE",
    "WORKER_PACKAGES",
    "create_env",
    "declared_envs",
    "env_dir",
    "env_for_backend",
    "env_state",
    "env_unavailable_reason",
    "envs_root",
    "remove_env",
    "worker_python",
]
