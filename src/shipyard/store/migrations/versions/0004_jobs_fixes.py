"""Batch jobs, second revision: job ids as long as API names allow, and the columns that let a job

- run again on `jobs retry` with its own clock (`run_started_at`, `prior_seconds`),
- isolate the row that kills its worker (`row_cursor`, `crashed_rows`) and time out a batch (`leased_at`),
- give its parts one schema (`part_schema`), and report its errors (`dead_errors`).

Job ids are `<api>-YYYYMMDD-HHMMSS-xxxx` with API names of up to 63 characters: 84 characters, which
String(40) refused on PostgreSQL (SQLite does not enforce a VARCHAR's length, so only PostgreSQL alters).

Revision ID: 0004_jobs_fixes
Revises: 0003_jobs
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_jobs_fixes"
down_revision = "0003_jobs"
branch_labels = None
depends_on = None

JOB_ID_LENGTH = 128
_JOB_ID_COLUMNS = (("jobs", "id"), ("job_batches", "job_id"), ("job_events", "job_id"))


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in _JOB_ID_COLUMNS:
            op.alter_column(
                table, column, type_=sa.String(JOB_ID_LENGTH), existing_type=sa.String(40), existing_nullable=False
            )
    op.add_column("jobs", sa.Column("run_started_at", sa.Float, nullable=True))
    op.add_column("jobs", sa.Column("prior_seconds", sa.Float, nullable=False, server_default=sa.text("0")))
    op.add_column("job_batches", sa.Column("leased_at", sa.Float, nullable=True))
    op.add_column("job_batches", sa.Column("row_cursor", sa.Integer, nullable=True))
    op.add_column("job_batches", sa.Column("crashed_rows", sa.JSON, nullable=True))
    op.add_column("job_batches", sa.Column("part_schema", sa.LargeBinary, nullable=True))
    op.add_column("job_batches", sa.Column("dead_errors", sa.JSON, nullable=True))


def downgrade() -> None:
    for column in ("dead_errors", "part_schema", "crashed_rows", "row_cursor", "leased_at"):
        op.drop_column("job_batches", column)
    for column in ("prior_seconds", "run_started_at"):
        op.drop_column("jobs", column)
    if op.get_bind().dialect.name == "postgresql":
        for table, column in _JOB_ID_COLUMNS:
            op.alter_column(table, column, type_=sa.String(40), existing_type=sa.String(JOB_ID_LENGTH))
