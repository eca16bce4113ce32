"""Handler classes for job tests; a test project copies this file in as `handlers.py`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


class Doubler:
    """Doubles `x`. Rows whose `x` is in config.bad (or the JSON list in config.bad_file) make predict_batch
    raise; run on their own, only they raise.

    config.sleep: seconds per batch; config.marks: a folder where each batch leaves `<pid>-<first id>`
    when it starts, so a test can see a worker mid-batch (and kill it); config.sleep_file: a file holding
    the seconds per batch, read for every batch. config.exit_on: a batch holding
    this x ends the process at once (os._exit(3)); config.quit_on: a batch holding this x calls sys.exit(0);
    config.loop_on: a batch holding this x never returns.
    """

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        self.bad = set(config.get("bad", []))
        self.bad_file = Path(config["bad_file"]) if config.get("bad_file") else None
        self.sleep = float(config.get("sleep", 0))
        self.sleep_file = Path(config["sleep_file"]) if config.get("sleep_file") else None
        self.marks = Path(config["marks"]) if config.get("marks") else None
        self.exit_on = config.get("exit_on")
        self.quit_on = config.get("quit_on")
        self.loop_on = config.get("loop_on")
        self.batch_sizes: list[int] = []

    def predict_batch(self, payloads: list[dict[str, Any]]) -> list[Any]:
        self.batch_sizes.append(len(payloads))
        if self.marks is not None:
            self.marks.mkdir(parents=True, exist_ok=True)
            (self.marks / f"{os.getpid()}-{payloads[0]['id']}").write_text(str(len(payloads)))
        time.sleep(float(self.sleep_file.read_text()) if self.sleep_file is not None else self.sleep)
        xs = {p.get("x") for p in payloads}
        if self.exit_on is not None and self.exit_on in xs:
            os._exit(3)
        if self.quit_on is not None and self.quit_on in xs:
            sys.exit(0)
        while self.loop_on is not None and self.loop_on in xs:
            pass  # an endless loop that holds the GIL only as long as Python lets it
        if self.bad_file is not None:
            self.bad = set(json.loads(self.bad_file.read_text()))
        bad = [p["x"] for p in payloads if p["x"] in self.bad]
        if bad:
            raise ValueError(f"cannot score x={bad[0]}")
        return [{"double": p["x"] * 2, "batch": len(payloads)} for p in payloads]

    def on_job_complete(self, job: Any) -> None:
        target = Path(self.marks or ".") / "completed.json"
        target.write_text(json.dumps({"id": job.id, "state": job.state, "rows": job.rows_done}))


class PerRow:
    """No predict_batch: one predict per row; x == 13 raises."""

    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        pass

    def predict(self, payload: dict[str, Any]) -> Any:
        if payload["x"] == 13:
            raise RuntimeError("unlucky row")
        return payload["x"] + 1


class Unloadable:
    def __init__(self, config: dict[str, Any], model_path: str | None) -> None:
        raise OSError("weights.bin is missing")

    def predict(self, payload: Any) -> Any:
        return payload
