"""The control API's batch-job routes: submit, list, get, stop, retry, logs, delete.

They change jobs in the store only; the daemon's job runner (a thread, see `jobs_host.py`) notices on
its next tick. The daemon never imports a handler: the caller checked it in its own process.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shipyard.errors import BadRequest
from shipyard.jobs import records, service
from shipyard.jobs.request import JobRequest, relative_paths
from shipyard.settings import Settings

_FIELDS = frozenset(f.name for f in fields(JobRequest))


def job_routes(engine: Engine, settings: Settings) -> list[Route]:
    api = _JobHandlers(engine, settings)
    return [
        Route("/v1/jobs", api.submit, methods=["POST"]),
        Route("/v1/jobs", api.list_jobs, methods=["GET"]),
        Route("/v1/jobs/{id}", api.get_job, methods=["GET"]),
        Route("/v1/jobs/{id}", api.delete, methods=["DELETE"]),
        Route("/v1/jobs/{id}/stop", api.stop, methods=["POST"]),
        Route("/v1/jobs/{id}/retry", api.retry, methods=["POST"]),
        Route("/v1/jobs/{id}/logs", api.logs, methods=["GET"]),
    ]


def job_request(body: Any) -> JobRequest:
    """A JobRequest from a JSON body, each field of its type (a BadJobOption, 400, says which is not) and
    every local path absolute: the daemon's working directory is not the caller's."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object with the job's fields")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise BadRequest(f"unknown job field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    if not isinstance(body.get("api"), str) or not body["api"]:
        raise BadRequest("a job needs 'api': the name of a BatchAPI in the project")
    if not isinstance(body.get("project"), str):
        raise BadRequest(f"a job needs an absolute project path in 'project', got {body.get('project')!r}")
    request = JobRequest(**body)
    relative = relative_paths(request)
    if relative:
        name, path = relative[0]
        raise BadRequest(
            f"{name!r} holds the relative path {path!r}; send absolute paths (or URLs): the daemon does not "
            "share the caller's working directory (shipyard.jobs and shipyard.Client resolve them for you)"
        )
    return request


class _JobHandlers:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    async def submit(self, request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the request body must be a JSON object with the job's fields") from None
        job = await run_in_threadpool(service.enqueue, job_request(body), False)
        return JSONResponse(job.to_dict(), status_code=201)

    async def list_jobs(self, request: Request) -> JSONResponse:
        api = request.query_params.get("api") or None
        limit = _int_param(request, "limit", 100)
        found = await run_in_threadpool(self._list, api, limit)
        return JSONResponse({"jobs": found})

    def _list(self, api: str | None, limit: int) -> list[dict[str, Any]]:
        rows = records.find(self.engine, api, limit)
        return [service.info(self.engine, row["id"]).to_dict() for row in rows]

    async def get_job(self, request: Request) -> JSONResponse:
        job = await run_in_threadpool(service.info, self.engine, request.path_params["id"], True)
        return JSONResponse(job.to_dict())

    async def stop(self, request: Request) -> JSONResponse:
        job = await run_in_threadpool(service.stop, request.path_params["id"], self.settings, False)
        return JSONResponse(job.to_dict())

    async def retry(self, request: Request) -> JSONResponse:
        timeout = _retry_timeout(await request.body())
        job = await run_in_threadpool(service.retry, request.path_params["id"], False, self.settings, timeout)
        return JSONResponse(job.to_dict())

    async def delete(self, request: Request) -> JSONResponse:
        job_id = request.path_params["id"]
        await run_in_threadpool(service.delete, job_id, self.settings)
        return JSONResponse({"deleted": job_id})

    async def logs(self, request: Request) -> JSONResponse:
        job_id = request.path_params["id"]
        offset = _int_param(request, "offset", 0)
        lines, position = await run_in_threadpool(service.read_log, job_id, offset, self.settings)
        finished = (await run_in_threadpool(service.info, self.engine, job_id)).is_finished
        return JSONResponse({"lines": lines, "offset": position, "finished": finished})


def _retry_timeout(raw: bytes) -> float | None:
    """The retry's new timeout from an optional body `{"timeout": seconds}`; service.retry checks its range."""
    if not raw.strip():
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or set(body) - {"timeout"}:
        raise BadRequest('a retry takes no body, or {"timeout": SECONDS}')
    timeout = body.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise BadRequest(f"'timeout' must be a number of seconds, got {timeout!r}")
    return None if timeout is None else float(timeout)


def _int_param(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise BadRequest(f"query parameter {name!r} must be a whole number >= 0, got {text!r}")
    return int(text)
