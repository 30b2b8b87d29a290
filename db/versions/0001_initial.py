"""initial: machines, models, studies, trials, best

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Migrations are frozen history: use plain sqlalchemy types here, never the tuner's
own classes, so that this file means the same thing after _schema.py changes.
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tuner_machines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("hardware_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("software_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuner_machines")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_tuner_machines_fingerprint")),
    )
    op.create_index(op.f("ix_tuner_machines_hardware_fingerprint"), "tuner_machines", ["hardware_fingerprint"])

    op.create_table(
        "tuner_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=512), nullable=False),
        sa.Column("content_hash", sa.String(length=128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuner_models")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_tuner_models_content_hash")),
    )
    op.create_index(op.f("ix_tuner_models_model_id"), "tuner_models", ["model_id"])

    op.create_table(
        "tuner_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("model_pk", sa.Integer(), nullable=False),
        sa.Column("seq_len", sa.Integer(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("objective", sa.String(length=32), nullable=False),
        sa.Column("space_hash", sa.String(length=128), nullable=False),
        sa.Column("optuna_study_name", sa.String(length=512), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["machine_id"], ["tuner_machines.id"],
            name=op.f("fk_tuner_studies_machine_id_tuner_machines"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_pk"], ["tuner_models.id"],
            name=op.f("fk_tuner_studies_model_pk_tuner_models"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuner_studies")),
        sa.UniqueConstraint("optuna_study_name", name=op.f("uq_tuner_studies_optuna_study_name")),
    )
    op.create_index(
        op.f("ix_tuner_studies_machine_id_model_pk_seq_len_batch_objective"),
        "tuner_studies", ["machine_id", "model_pk", "seq_len", "batch", "objective"],
    )
    op.create_index(op.f("ix_tuner_studies_model_pk"), "tuner_studies", ["model_pk"])

    op.create_table(
        "tuner_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("median_ms", sa.Float(), nullable=True),
        sa.Column("p90_ms", sa.Float(), nullable=True),
        sa.Column("p99_ms", sa.Float(), nullable=True),
        sa.Column("mean_ms", sa.Float(), nullable=True),
        sa.Column("stdev_ms", sa.Float(), nullable=True),
        sa.Column("cv", sa.Float(), nullable=True),
        sa.Column("n_samples", sa.Integer(), nullable=True),
        sa.Column("samples_ms", sa.JSON(), nullable=True),
        sa.Column("accuracy", sa.JSON(), nullable=True),
        sa.Column("accuracy_ok", sa.Boolean(), nullable=True),
        sa.Column("effective", sa.JSON(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("artifact", sa.Text(), nullable=True),
        sa.Column("stderr_tail", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"], ["tuner_studies.id"],
            name=op.f("fk_tuner_trials_study_id_tuner_studies"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuner_trials")),
        sa.UniqueConstraint("study_id", "number", name=op.f("uq_tuner_trials_study_id_number")),
    )

    op.create_table(
        "tuner_best",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=False),
        sa.Column("model_pk", sa.Integer(), nullable=False),
        sa.Column("seq_len", sa.Integer(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("objective", sa.String(length=32), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("default_median_ms", sa.Float(), nullable=True),
        sa.Column("speedup", sa.Float(), nullable=True),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["machine_id"], ["tuner_machines.id"],
            name=op.f("fk_tuner_best_machine_id_tuner_machines"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_pk"], ["tuner_models.id"],
            name=op.f("fk_tuner_best_model_pk_tuner_models"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["tuner_trials.id"],
            name=op.f("fk_tuner_best_trial_id_tuner_trials"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuner_best")),
        sa.UniqueConstraint(
            "machine_id", "model_pk", "seq_len", "batch", "objective",
            name=op.f("uq_tuner_best_machine_id_model_pk_seq_len_batch_objective"),
        ),
    )
    op.create_index(op.f("ix_tuner_best_model_pk"), "tuner_best", ["model_pk"])
    op.create_index(op.f("ix_tuner_best_trial_id"), "tuner_best", ["trial_id"])


def downgrade() -> None:
    # Children first: foreign keys are on.
    for table in ("tuner_best", "tuner_trials", "tuner_studies", "tuner_models", "tuner_machines"):
        op.drop_table(table)
