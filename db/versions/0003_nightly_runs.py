"""nightly runs: a row per `tuner nightly`, and the tuner version that chose a winner

tuner_nightly_runs keeps what each `tuner nightly` run planned and why, what each
re-tune or verify found and how the run ended (docs/nightly.md); tuner_best gets the
tuner version that chose the winner, one of the things a winner depends on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Migrations are frozen history: use plain sqlalchemy types here, never the tuner's
own classes, so that this file means the same thing after _schema.py changes.
The new column is nullable: a winner chosen before 0003 has no recorded version.
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tuner_nightly_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("started", sa.DateTime(), nullable=False),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["machine_id"], ["tuner_machines.id"],
            name=op.f("fk_tuner_nightly_runs_machine_id_tuner_machines"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuner_nightly_runs")),
    )
    op.create_index(op.f("ix_tuner_nightly_runs_machine_id"), "tuner_nightly_runs", ["machine_id"])

    # Plain ADD COLUMN (no table copy on SQLite): nullable, without a server default.
    with op.batch_alter_table("tuner_best") as batch_op:
        batch_op.add_column(sa.Column("tuner_version", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_index(op.f("ix_tuner_nightly_runs_machine_id"), table_name="tuner_nightly_runs")
    op.drop_table("tuner_nightly_runs")
    # Native DROP COLUMN, not batch mode (see 0002's downgrade: a batch copy of a table
    # others point at would cascade-delete their rows).
    op.drop_column("tuner_best", "tuner_version")
