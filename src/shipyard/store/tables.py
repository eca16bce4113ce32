"""Every table Shipyard stores, in one metadata. New tables are added here and in a new migration."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("last_version", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("registered_models.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(80), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("manifest", Text, nullable=False),
    Column("flavor", String(128), nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("metrics", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("lineage", JSON, nullable=False),
    Column("profile", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(128), nullable=False),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("approved_by", String(128), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("version_id", "alias", "approved_by", name="uq_approvals_version_alias_approver"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("model", String(128), nullable=False, index=True),
    Column("version", Integer, nullable=True),
    Column("alias", String(64), nullable=True),
    Column("from_version", Integer, nullable=True),
    Column("allowed", Boolean, nullable=True),
    Column("forced", Boolean, nullable=False, default=False),
    Column("reason", Text, nullable=False, default=""),
    Column("details", JSON, nullable=False),
)

# -- the local runtime: what should run (deployments, releases), what runs (replicas), and what happened ----
# Times here are float seconds since the epoch: the daemon's clock, which the pure controller reads as data.

deployments = Table(
    "deployments",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("version", String(80), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("replicas", Integer, nullable=False, default=0),
    Column("source", Text, nullable=False),
    Column("model_ref", String(256), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
"""One row per API or splitter: the version that should run and the replica count the autoscaler set."""

releases = Table(
    "releases",
    metadata,
    Column("api", String(64), primary_key=True),
    Column("version", String(80), primary_key=True),
    Column("project", Text, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("model_name", String(128), nullable=True),
    Column("model_version", Integer, nullable=True),
    Column("model_digest", String(80), nullable=True),
    Column("created_at", Float, nullable=False),
)
"""Every version of an API ever deployed, with the snapshot of the project its replicas load."""

replicas = Table(
    "replicas",
    metadata,
    Column("id", String(96), primary_key=True),
    Column("api", String(64), nullable=False, index=True),
    Column("version", String(80), nullable=False),
    Column("state", String(32), nullable=False),
    Column("pid", Integer, nullable=True),
    Column("port", Integer, nullable=False),
    Column("log", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("healthy_at", Float, nullable=True),
    Column("grace_period", Float, nullable=False),
    Column("restarts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("exited_at", Float, nullable=True),
    Column("restart_at", Float, nullable=True),
    Column("draining_since", Float, nullable=True),
)
"""The replicas the daemon runs, written every tick: a restarted daemon adopts them from here."""

recommendations = Table(
    "recommendations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("api", String(64), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("replicas", Integer, nullable=False),
)
"""The autoscaler's recent recommendations per API, which stabilization reads back."""

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("api", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("replica", String(96), nullable=True),
    Column("message", Text, nullable=False),
)
"""What happened to an API (deployed, scaled, rolled out, crashed, ...), newest last."""

shadow_stats = Table(
    "shadow_stats",
    metadata,
    Column("splitter", String(64), primary_key=True),
    Column("shadow", String(64), primary_key=True),
    Column("compared", BigInteger, nullable=False, default=0),
    Column("agreed", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
    Column("skipped", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("primary_ms", Float, nullable=False, default=0.0),
    Column("shadow_ms", Float, nullable=False, default=0.0),
    Column("updated_at", Float, nullable=False),
)
"""Per splitter and shadow API: how often the shadow's answer agreed with the primary's, and total latencies."""

# -- batch jobs: the job, its batches (the durable queue, with leases) and what happened to it -----------------
# Times here are float seconds since the epoch, like the runtime's.

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("api", String(64), nullable=False, index=True),
    Column("project", Text, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("output", Text, nullable=False),
    Column("format", String(16), nullable=False),
    Column("id_column", String(256), nullable=True),
    Column("batch_size", Integer, nullable=False),
    Column("workers", Integer, nullable=False),
    Column("max_retries", Integer, nullable=False),
    Column("timeout", Float, nullable=True),
    Column("model_path", Text, nullable=True),
    Column("model_digest", String(80), nullable=True),
    Column("state", String(32), nullable=False, index=True),
    Column("reason", Text, nullable=False, default=""),
    Column("stop_request", String(32), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("total_batches", Integer, nullable=True),
    Column("total_rows", BigInteger, nullable=True),
    Column("runner", String(128), nullable=True),
    Column("runner_host", String(256), nullable=True),
    Column("runner_pid", Integer, nullable=True),
    Column("runner_expires_at", Float, nullable=True),
    Column("hook_state", String(16), nullable=True),
    Column("error", Text, nullable=True),
    Column("run_started_at", Float, nullable=True),
    Column("prior_seconds", Float, nullable=False, default=0.0, server_default="0"),
)
"""One row per batch job: what to run over which inputs, its state, and which runner drives it."""

job_batches = Table(
    "job_batches",
    metadata,
    Column("job_id", String(128), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("state", String(16), nullable=False),
    Column("source_index", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("row_numbers", JSON, nullable=True),
    Column("rows", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("parent_seq", Integer, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("leases", Integer, nullable=False, default=0),
    Column("lease_token", String(40), nullable=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("not_before", Float, nullable=False, default=0.0),
    Column("last_error", Text, nullable=True),
    Column("ok_rows", Integer, nullable=False, default=0),
    Column("failed_rows", Integer, nullable=False, default=0),
    Column("part", Text, nullable=True),
    Column("part_digest", String(80), nullable=True),
    Column("part_bytes", BigInteger, nullable=True),
    Column("failed_part", Text, nullable=True),
    Column("failed_digest", String(80), nullable=True),
    Column("failed_bytes", BigInteger, nullable=True),
    Column("dead_payload", LargeBinary, nullable=True),
    Column("done_at", Float, nullable=True),
    Column("leased_at", Float, nullable=True),
    Column("row_cursor", Integer, nullable=True),
    Column("crashed_rows", JSON, nullable=True),
    Column("part_schema", LargeBinary, nullable=True),
    Column("dead_errors", JSON, nullable=True),
    Column("lease_runner", String(128), nullable=True),
    Index("ix_job_batches_job_id_state_seq", "job_id", "state", "seq"),
)
"""The durable queue: each batch's rows (Arrow IPC), its lease, its attempts and the parts it produced."""

job_events = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(128), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("state", String(32), nullable=True),
    Column("message", Text, nullable=False),
)
"""Every state change of a job with its reason, and other things worth telling (worker crashes, retries)."""
