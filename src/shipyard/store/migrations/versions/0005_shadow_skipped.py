"""Shadow statistics keep the copies skipped for lack of a free shadow replica.

Until now they were counted in the daemon's memory only, so `get SPLITTER` lost them on every restart
while the other shadow counts (compared, agreed, failed) survived it.

Revision ID: 0005_shadow_skipped
Revises: 0004_jobs_fixes
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_shadow_skipped"
down_revision = "0004_jobs_fixes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("shadow_stats", sa.Column("skipped", sa.BigInteger, nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    op.drop_column("shadow_stats", "skipped")
