"""The names of the tuner's tables and its schema revision, with no SQLAlchemy import.

``_schema.py`` (the ORM classes, the one description of the schema) takes its table
names from here, and so does the lean read path of `tuner best` (``_reader.py``),
which talks DB-API directly; tests/store checks that every column the lean path
names is a column of the schema, of the type it decodes it as.
"""

from __future__ import annotations

# The newest migration in db/versions. Store.open compares the database's revision
# with this before importing Alembic, so opening an up-to-date database stays fast;
# tests/store checks it matches the scripts' head.
SCHEMA_HEAD = "0004"
VERSION_TABLE = "tuner_alembic_version"

MACHINES = "tuner_machines"
MODELS = "tuner_models"
STUDIES = "tuner_studies"
TRIALS = "tuner_trials"
BEST = "tuner_best"
REPLAYS = "tuner_replays"
NIGHTLY_RUNS = "tuner_nightly_runs"
CLAIMS = "tuner_claims"
