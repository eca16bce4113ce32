"""The local runtime: deployments, releases, replicas, autoscaler recommendations, events, shadow statistics.

Revision ID: 0002_runtime
Revises: 0001_registry
Create Date: 2026-05-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_runtime"
down_revision = "0001_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version", sa.String(80), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("model_ref", sa.String(256), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_deployments"),
    )
    op.create_table(
        "releases",
        sa.Column("api", sa.String(64), nullable=False),
        sa.Column("version", sa.String(80), nullable=False),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.Integer, nullable=True),
        sa.Column("model_digest", sa.String(80), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("api", "version", name="pk_releases"),
    )
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(96), nullable=False),
        sa.Column("api", sa.String(64), nullable=False),
        sa.Column("version", sa.String(80), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("log", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("healthy_at", sa.Float, nullable=True),
        sa.Column("grace_period", sa.Float, nullable=False),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("exited_at", sa.Float, nullable=True),
        sa.Column("restart_at", sa.Float, nullable=True),
        sa.Column("draining_since", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_replicas"),
    )
    op.create_index("ix_replicas_api", "replicas", ["api"])
    op.create_table(
        "recommendations",
        sa.Column("id", sa.Integer, autoincrement=True),
        sa.Column("api", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recommendations"),
    )
    op.create_index("ix_recommendations_api", "recommendations", ["api"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("api", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("replica", sa.String(96), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_api", "events", ["api"])
    op.create_table(
        "shadow_stats",
        sa.Column("splitter", sa.String(64), nullable=False),
        sa.Column("shadow", sa.String(64), nullable=False),
        sa.Column("compared", sa.BigInteger, nullable=False),
        sa.Column("agreed", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("primary_ms", sa.Float, nullable=False),
        sa.Column("shadow_ms", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("splitter", "shadow", name="pk_shadow_stats"),
    )


def downgrade() -> None:
    for table in ("shadow_stats", "events", "recommendations", "replicas", "releases", "deployments"):
        op.drop_table(table)
