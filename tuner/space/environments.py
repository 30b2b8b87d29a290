"""Whether a backend's own Python environment is ready, read from disk only.

The environments themselves are built by ``tuner env create`` (``tuner.envs``);
this module only reads what a build left under ``<cache dir>/envs/``, so that the
space can prune a backend whose environment is absent, incomplete or stale without
importing the code that builds one. Layout::

    <name>/                  a virtual environment (python -m venv)
    <name>/tuner-env.json    the manifest, written last: its presence means "complete"
    .locks/<name>.lock       keeps two `tuner env create` runs off the same folder
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner import paths
from tuner._version import __version__
from tuner.space.schema import EnvDecl

MANIFEST_FILE = "tuner-env.json"
# What the trial worker itself imports besides the backend's packages
# (tuner.trial.noise reads CPU load with psutil; every backend hands numpy arrays).
WORKER_PACKAGES: tuple[str, ...] = ("numpy", "psutil")
READY, ABSENT, INCOMPLETE, STALE, BUILDING = "ready", "absent", "incomplete", "stale", "building"


def envs_root() -> Path:
    """``$TUNER_ENVS_DIR``, else ``<cache dir>/envs`` (the override lets a throwaway
    cache, as in the tests, still use environments built once)."""
    override = os.environ.get("TUNER_ENVS_DIR")
    return Path(override) if override else paths.cache_dir() / "envs"


def env_dir(name: str) -> Path:
    return envs_root() / name


@dataclass
class EnvState:
    name: str
    status: str  # ready | absent | incomplete | stale | building
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    why: str = ""  # for a status other than ready: what is wrong

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def create_hint(name: str) -> str:
    return f"run `tuner env create {name}`"


def env_state(decl: EnvDecl) -> EnvState:
    folder = env_dir(decl.name)
    manifest_path = folder / MANIFEST_FILE
    if not folder.exists():
        return EnvState(
            decl.name, ABSENT, folder, why=f"its environment {decl.name!r} does not exist: {create_hint(decl.name)}"
        )
    if not manifest_path.is_file():
        if is_building(decl.name):
            return EnvState(
                decl.name,
                BUILDING,
                folder,
                why=f"its environment {decl.name!r} is being built (`tuner env create {decl.name}`)",
            )
        return EnvState(
            decl.name,
            INCOMPLETE,
            folder,
            why=f"its environment {decl.name!r} was never finished: {create_hint(decl.name)} again",
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        return EnvState(
            decl.name,
            INCOMPLETE,
            folder,
            why=f"its environment {decl.name!r} has an unreadable "
            f"{MANIFEST_FILE} ({exc}): {create_hint(decl.name)} again",
        )
    wanted = requested_packages(decl)
    if manifest.get("packages") != wanted:
        return EnvState(
            decl.name,
            STALE,
            folder,
            manifest,
            why=f"its environment {decl.name!r} was built for other packages "
            f"({', '.join(manifest.get('packages') or [])}): {create_hint(decl.name)} to rebuild it",
        )
    link = manifest.get("tuner_link")
    if link == "copy" and manifest.get("tuner_version") != __version__:
        return EnvState(
            decl.name,
            STALE,
            folder,
            manifest,
            why=f"its environment {decl.name!r} holds tuner {manifest.get('tuner_version')}, this is "
            f"{__version__}: {create_hint(decl.name)} to rebuild it",
        )
    if not (folder / "bin" / "python").exists():
        return EnvState(
            decl.name,
            INCOMPLETE,
            folder,
            manifest,
            why=f"its environment {decl.name!r} has no bin/python: {create_hint(decl.name)} again",
        )
    return EnvState(decl.name, READY, folder, manifest)


def env_unavailable_reason(decl: EnvDecl) -> str | None:
    """Why a backend that runs in ``decl`` cannot run now (None: it can). Reads files only."""
    state = env_state(decl)
    return None if state.status == READY else state.why


def requested_packages(decl: EnvDecl) -> list[str]:
    """The packages a build installs: the declaration's, then the worker's own."""
    names = {project_name(p) for p in decl.packages}
    return [*decl.packages, *(p for p in WORKER_PACKAGES if project_name(p) not in names)]


def project_name(requirement: str) -> str:
    for i, char in enumerate(requirement):
        if not (char.isalnum() or char in "-_."):
            return requirement[:i].lower().replace("_", "-")
    return requirement.lower().replace("_", "-")


# --- building ----------------------------------------------------------------------


def is_building(name: str) -> bool:
    """Whether a `tuner env create NAME` holds the lock now (then a folder without a
    manifest is a build in progress, not a dead one)."""
    lock = envs_root() / ".locks" / f"{name}.lock"
    if not lock.exists():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False
