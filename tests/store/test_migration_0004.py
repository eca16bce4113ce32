"""Migration 0004 on SQLite and PostgreSQL: a store made by 0003 keeps its jobs and takes the longest job ids."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, Executable, column, insert, inspect, select, table

from shipyard.jobs import records
from shipyard.store import create_store_engine, migrate, write_transaction
from shipyard.store.migrate import _config, current_revision, head_revision
from shipyard.store.tables import job_batches, job_events, metadata

LONGEST_API = "a" * 63  # NAME_PATTERN allows 63 characters
LONGEST_ID = f"{LONGEST_API}-20260520-101112-abcd"


def _job(job_id: str, api: str) -> dict[str, object]:
    return {
        "id": job_id,
        "api": api,
        "project": "/p",
        "spec": {},
        "inputs": [],
        "output": f"/out/{job_id}",
        "format": "parquet",
        "batch_size": 10,
        "workers": 1,
        "max_retries": 0,
    }


def _as_of_0003(name: str, values: dict[str, object]) -> Executable:
    """An insert that names only the given columns (the tables module already knows 0004's)."""
    declared = metadata.tables[name].c
    return insert(table(name, *(column(key, declared[key].type) for key in values))).values(**values)


def _batch(job_id: str) -> dict[str, object]:
    return {
        "job_id": job_id,
        "seq": 0,
        "state": "pending",
        "source_index": 0,
        "source_offset": 0,
        "rows": 1,
        "payload": b"x",
        "failures": 0,
        "leases": 0,
        "not_before": 0.0,
        "ok_rows": 0,
        "failed_rows": 0,
    }


def _upgrade_to(engine: Engine, revision: str) -> None:
    with write_transaction(engine) as connection:
        command.upgrade(_config(connection), revision)


def test_0004_keeps_old_jobs_and_stores_ids_of_the_longest_api_names(database_url: str) -> None:
    engine = create_store_engine(database_url)
    try:
        _upgrade_to(engine, "0003_jobs")
        old_job = {**_job("old-1", "old"), "state": "running", "reason": "", "created_at": 1.0, "updated_at": 1.0}
        with write_transaction(engine) as connection:
            connection.execute(_as_of_0003("jobs", old_job))
            connection.execute(_as_of_0003("job_batches", _batch("old-1")))
        migrate(engine)
        assert current_revision(engine) == head_revision()
        old = records.get(engine, "old-1")
        assert (old["state"], old["prior_seconds"], old["run_started_at"]) == ("running", 0.0, None)
        with write_transaction(engine) as connection:
            records.insert_job(connection, _job(LONGEST_ID, LONGEST_API))  # with its "submitted" event
            connection.execute(insert(job_batches).values(**_batch(LONGEST_ID)))
        with engine.connect() as connection:
            assert connection.execute(select(job_events.c.job_id).where(job_events.c.job_id == LONGEST_ID)).scalar()
            assert connection.execute(select(job_batches.c.seq).where(job_batches.c.job_id == LONGEST_ID)).one()
        if engine.dialect.name == "postgresql":  # SQLite does not enforce a VARCHAR's length
            for name, key in (("jobs", "id"), ("job_batches", "job_id"), ("job_events", "job_id")):
                found = {c["name"]: c["type"] for c in inspect(engine).get_columns(name)}
                assert found[key].length == 128, (name, key)
    finally:
        engine.dispose()
