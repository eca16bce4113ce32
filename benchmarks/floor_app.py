"""The practical floor for a Python model server: a minimal Starlette + uvicorn app calling the handler.

No admission control, no metrics, no request ids, no threads: the handler runs on the event loop.
Usage: python benchmarks/floor_app.py PROJECT_DIR API PORT
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shipyard.serving.handler import HandlerRef, import_handler_class
from shipyard.spec import RealtimeAPI, load


def build(project_dir: str, api_name: str) -> Starlette:
    project = load(project_dir)
    api = project.get(api_name)
    assert isinstance(api, RealtimeAPI)
    handler_class = import_handler_class(HandlerRef(api.handler, Path(project.directory)))
    options: dict[str, Any] = {}
    if api.is_builtin_handler and api.input_schema is not None:
        options["feature_names"] = list(api.input_schema.fields)
    model_path = str(Path(project.directory) / api.model) if api.model else None
    handler = handler_class(api.config, model_path, **options)

    async def predict(request: Request) -> JSONResponse:
        return JSONResponse(handler.predict(await request.json()))

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


if __name__ == "__main__":
    project_dir, api_name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uvicorn.run(
        build(project_dir, api_name),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
