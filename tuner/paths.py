"""Where the tuner keeps its files: data (the SQLite database), cache (artifacts),
and the data folders shipped with the project (search_spaces/, db/)."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir() -> Path:
    """``$TUNER_DATA_DIR``, else ``$XDG_DATA_HOME/tuner``, else ``~/.local/share/tuner``."""
    if os.environ.get("TUNER_DATA_DIR"):
        return Path(os.environ["TUNER_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tuner"


def cache_dir() -> Path:
    """``$TUNER_CACHE_DIR``, else ``$XDG_CACHE_HOME/tuner``, else ``~/.cache/tuner``."""
    if os.environ.get("TUNER_CACHE_DIR"):
        return Path(os.environ["TUNER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tuner"


def default_db_url() -> str:
    return f"sqlite:///{data_dir() / 'tuner.db'}"


def _project_data(name: str) -> Path:
    # A source checkout or editable install has it beside the package; a wheel
    # carries it inside the package (pyproject's force-include).
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the tuner's {name}/ folder is missing from {_PACKAGE.parent}")


def search_spaces_dir() -> Path:
    """``$TUNER_SPACE_DIR``, else the project's search_spaces/. The override is read by
    every process, trial workers included, so a folder of one's own (the shipped files
    plus a new backend's) is used end to end."""
    if os.environ.get("TUNER_SPACE_DIR"):
        return Path(os.environ["TUNER_SPACE_DIR"])
    return _project_data("search_spaces")


def migrations_dir() -> Path:
    return _project_data("db")
