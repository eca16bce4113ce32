"""Batch jobs: jobs, their batches (the durable queue with leases) and their events.

Revision ID: 0003_jobs
Revises: 0002_runtime
Create Date: 2026-05-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_jobs"
down_revision = "0002_runtime"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("api", sa.String(64), nullable=False),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("id_column", sa.String(256), nullable=True),
        sa.Column("batch_size", sa.Integer, nullable=False),
        sa.Column("workers", sa.Integer, nullable=False),
        sa.Column("max_retries", sa.Integer, nullable=False),
        sa.Column("timeout", sa.Float, nullable=True),
        sa.Column("model_path", sa.Text, nullable=True),
        sa.Column("model_digest", sa.String(80), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("stop_request", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("total_batches", sa.Integer, nullable=True),
        sa.Column("total_rows", sa.BigInteger, nullable=True),
        sa.Column("runner", sa.String(128), nullable=True),
        sa.Column("runner_host", sa.String(256), nullable=True),
        sa.Column("runner_pid", sa.Integer, nullable=True),
        sa.Column("runner_expires_at", sa.Float, nullable=True),
        sa.Column("hook_state", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_api", "jobs", ["api"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "job_batches",
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source_index", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("row_numbers", sa.JSON, nullable=True),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("parent_seq", sa.Integer, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("leases", sa.Integer, nullable=False),
        sa.Column("lease_token", sa.String(40), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("not_before", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("ok_rows", sa.Integer, nullable=False),
        sa.Column("failed_rows", sa.Integer, nullable=False),
        sa.Column("part", sa.Text, nullable=True),
        sa.Column("part_digest", sa.String(80), nullable=True),
        sa.Column("part_bytes", sa.BigInteger, nullable=True),
        sa.Column("failed_part", sa.Text, nullable=True),
        sa.Column("failed_digest", sa.String(80), nullable=True),
        sa.Column("failed_bytes", sa.BigInteger, nullable=True),
        sa.Column("dead_payload", sa.LargeBinary, nullable=True),
        sa.Column("done_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("job_id", "seq", name="pk_job_batches"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_batches_job_id_jobs", ondelete="CASCADE"),
    )
    op.create_index("ix_job_batches_job_id_state_seq", "job_batches", ["job_id", "state", "seq"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, autoincrement=True),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("state", sa.String(32), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_events_job_id_jobs", ondelete="CASCADE"),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])


def downgrade() -> None:
    for table in ("job_events", "job_batches", "jobs"):
        op.drop_table(table)
