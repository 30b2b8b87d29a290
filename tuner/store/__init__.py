"""The tuner's database: machines, models, studies, every trial, and the best config.

SQLite (WAL) in the user's data folder by default, any SQLAlchemy PostgreSQL URL for
a fleet. Optuna's RDBStorage shares the same database (``Store.url``); our tables are
``tuner_*`` with their own Alembic version table. See docs/store.md.

Importing this package is cheap: SQLAlchemy and Alembic load in ``Store.open``.
"""

from tuner.store._claims import ClaimRecord
from tuner.store._nightly import NIGHTLY_STATUSES, NightlyRunRecord, WinnerRecord
from tuner.store._outage import connection_lost
from tuner.store._records import (
    REPLAY_KINDS,
    REPLAY_ROLES,
    STUDY_STATUSES,
    BestRecord,
    MachineRecord,
    ModelRecord,
    NewTrial,
    ReplayRecord,
    StudyRecord,
    TrialRecord,
)
from tuner.store._similar import PeerRecord, rank_peers
from tuner.store._store import DuplicateTrialError, Store
from tuner.vocabulary import OBJECTIVES, TRIAL_STATUSES

__all__ = [
    "OBJECTIVES",
    "REPLAY_KINDS",
    "REPLAY_ROLES",
    "STUDY_STATUSES",
    "TRIAL_STATUSES",
    "BestRecord",
    "ClaimRecord",
    "DuplicateTrialError",
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
    "rank_peers",
]
