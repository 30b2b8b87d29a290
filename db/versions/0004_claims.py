"""claims: a step of a shared study that one worker takes on

tuner_claims lets machines that cooperate on one study (`tuner auto --join`,
docs/fleet.md) agree on who does what only one of them should: queue the study's
first configurations, re-measure its finalists. A worker inserts the claim if it is
absent, keeps its heartbeat fresh while it works, and marks it done; the others
wait, and take it over when the heartbeat goes stale.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Migrations are frozen history: use plain sqlalchemy types here, never the tuner's
own classes, so that this file means the same thing after _schema.py changes.
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tuner_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("claimed", sa.DateTime(), nullable=False),
        sa.Column("heartbeat", sa.DateTime(), nullable=False),
        sa.Column("done", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"], ["tuner_studies.id"], name=op.f("fk_tuner_claims_study_id_tuner_studies"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuner_claims")),
        sa.UniqueConstraint("study_id", "name", name=op.f("uq_tuner_claims_study_id_name")),
    )


def downgrade() -> None:
    op.drop_table("tuner_claims")
