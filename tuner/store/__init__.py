"""The tuner's database: machines, models, studies, every trial, and the best config.

SQLite (WAL) in the user's data folder by default, any SQLAlchemy PostgreSQL URL for
a fleet. Optuna's RDBStorage shares the same database (``Store.url``); our tables are
``tuner_*`` with their own Alembic version table. See docs/store.md.

Importing this package is cheap: its names load on first use, SQLAlchemy and Alembic
in ``Store.open``.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.store._claims import ClaimRecord
    from tuner.store._nightly import NIGHTLY_STATUSES, NightlyRunRecord, WinnerRecord
    from tuner.store._outage import connection_lost
    from tuner.store._reader import LeanReader, open_reader
    from tuner.store._records import (
        REPLAY_KINDS,
        REPLAY_ROLES,
        STUDY_STATUSES,
        BestRecord,
        MachineRecord,
        ModelRecord,
        ReplayRecord,
    )
    from tuner.store._similar import PeerRecord, rank_peers
    from tuner.store._store import DuplicateTrialError, Store
    from tuner.store._trials import NewTrial, StudyRecord, TrialRecord
    from tuner.vocabulary import OBJECTIVES, TRIAL_STATUSES

# Public name -> the module that defines it, imported on first use: `tuner best` reads
# through _reader and needs neither the Store class nor the records of trials.
_LAZY = {
    "ClaimRecord": "tuner.store._claims",
    "NIGHTLY_STATUSES": "tuner.store._nightly",
    "NightlyRunRecord": "tuner.store._nightly",
    "WinnerRecord": "tuner.store._nightly",
    "connection_lost": "tuner.store._outage",
    "LeanReader": "tuner.store._reader",
    "open_reader": "tuner.store._reader",
    "REPLAY_KINDS": "tuner.store._records",
    "REPLAY_ROLES": "tuner.store._records",
    "STUDY_STATUSES": "tuner.store._records",
    "BestRecord": "tuner.store._records",
    "MachineRecord": "tuner.store._records",
    "ModelRecord": "tuner.store._records",
    "NewTrial": "tuner.store._trials",
    "ReplayRecord": "tuner.store._records",
    "StudyRecord": "tuner.store._trials",
    "TrialRecord": "tuner.store._trials",
    "PeerRecord": "tuner.store._similar",
    "rank_peers": "tuner.store._similar",
    "DuplicateTrialError": "tuner.store._store",
    "Store": "tuner.store._store",
    "OBJECTIVES": "tuner.vocabulary",
    "TRIAL_STATUSES": "tuner.vocabulary",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tuner.store' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups are plain
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "OBJECTIVES",
    "REPLAY_KINDS",
    "REPLAY_ROLES",
    "STUDY_STATUSES",
    "TRIAL_STATUSES",
    "BestRecord",
    "ClaimRecord",
    "DuplicateTrialError",
    "LeanReader",
    "NIGHTLY_STATUSES",
    "MachineRecord",
    "ModelRecord",
    "NightlyRunRecord",
    "NewTrial",
    "PeerRecord",
    "ReplayRecord",
    "Store",
    "StudyRecord",
    "TrialRecord",
    "WinnerRecord",
    "connection_lost",
    "open_reader",
    "rank_peers",
]
