"""Batch leases remember the runner that watched their worker (`lease_runner`).

A lease whose worker died while its runner watched counts as a failed attempt (row by row, a death on
the row it ran). One that expired because its runner died too (a killed daemon, a machine restart)
was nobody's fault: the next runner sees that the job's runner changed and takes the batch over
without counting it.

Revision ID: 0006_lease_runner
Revises: 0005_shadow_skipped
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_lease_runner"
down_revision = "0005_shadow_skipped"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_batches", sa.Column("lease_runner", sa.String(128), nullable=True))


def downgrade() -> None:
    op.drop_column("job_batches", "lease_runner")
