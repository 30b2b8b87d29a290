"""measurement protocol: flags, noise, memory, throughput, Pareto, speedup CI, replays

Stability flags, noise checks, peak memory and throughput per trial; the Pareto front
per study; the speedup's 95% confidence interval with the best; and tuner_replays, the
fresh-process re-measurements of finalists and of `tuner verify`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Migrations are frozen history: use plain sqlalchemy types here, never the tuner's
own classes, so that this file means the same thing after _schema.py changes.
Every new column is nullable: rows written by 0001 keep their meaning (not measured).
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIAL_COLUMNS = ("flags", "noise", "peak_rss_mb", "throughput")
_BEST_COLUMNS = ("speedup_low", "speedup_high", "significant", "finalists")


def upgrade() -> None:
    op.create_table(
        "tuner_replays",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("median_ms", sa.Float(), nullable=True),
        sa.Column("p90_ms", sa.Float(), nullable=True),
        sa.Column("p99_ms", sa.Float(), nullable=True),
        sa.Column("n_samples", sa.Integer(), nullable=True),
        sa.Column("samples_ms", sa.JSON(), nullable=True),
        sa.Column("throughput", sa.Float(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=True),
        sa.Column("noise", sa.JSON(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["tuner_studies.id"],
            name=op.f("fk_tuner_replays_study_id_tuner_studies"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["tuner_trials.id"],
            name=op.f("fk_tuner_replays_trial_id_tuner_trials"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuner_replays")),
    )
    op.create_index(op.f("ix_tuner_replays_study_id"), "tuner_replays", ["study_id"])
    op.create_index(op.f("ix_tuner_replays_trial_id"), "tuner_replays", ["trial_id"])

    # Plain ADD COLUMN (no table copy on SQLite): nullable columns without a server default.
    with op.batch_alter_table("tuner_trials") as batch_op:
        batch_op.add_column(sa.Column("flags", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("noise", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("peak_rss_mb", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("throughput", sa.Float(), nullable=True))
    with op.batch_alter_table("tuner_studies") as batch_op:
        batch_op.add_column(sa.Column("pareto", sa.JSON(), nullable=True))
    with op.batch_alter_table("tuner_best") as batch_op:
        batch_op.add_column(sa.Column("speedup_low", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("speedup_high", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("significant", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("finalists", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_index(op.f("ix_tuner_replays_trial_id"), table_name="tuner_replays")
    op.drop_index(op.f("ix_tuner_replays_study_id"), table_name="tuner_replays")
    op.drop_table("tuner_replays")
    # Native DROP COLUMN (SQLite >= 3.35, PostgreSQL), not batch mode: batch mode copies
    # the table and drops the old one, and with foreign keys on, dropping tuner_trials
    # would cascade-delete every tuner_best row that points at it.
    for column in _TRIAL_COLUMNS:
        op.drop_column("tuner_trials", column)
    op.drop_column("tuner_studies", "pareto")
    for column in _BEST_COLUMNS:
        op.drop_column("tuner_best", column)
