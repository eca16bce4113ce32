"""The Python SDK for the local runtime; the CLI is built on it.

from shipyard import Client
client = Client()                      # the daemon in SHIPYARD_HOME, or SHIPYARD_URL + SHIPYARD_TOKEN
client.deploy("iris/")                 # validate, record, start the daemon if needed
client.wait(["iris"])                  # until every replica is ready and up to date
client.predict("iris", {"sepal_length": 5.1, ...})
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from shipyard.errors import ConfigError, ShipyardError, from_wire
from shipyard.settings import Settings, get_settings

if TYPE_CHECKING:
    from shipyard.jobs.request import JobRequest
    from shipyard.jobs.view import JobInfo

_SETTLED = ("live",)
_FAILED = ("update stalled", "crash-looping")


class DaemonNotRunning(ShipyardError):
    status_code = 503

    def __init__(self, url: str) -> None:
        super().__init__(f"no Shipyard daemon answers at {url}; start one with `shipyard up` (or check SHIPYARD_URL)")


class NoToken(ShipyardError):
    status_code = 401

    def __init__(self, url: str) -> None:
        super().__init__(
            f"no token for the Shipyard daemon at {url}: set SHIPYARD_TOKEN to the contents of its "
            "SHIPYARD_HOME/token file (or unset SHIPYARD_URL to use the daemon of this SHIPYARD_HOME)"
        )


class TokenRefused(ShipyardError):
    status_code = 401

    def __init__(self, url: str, source: str) -> None:
        super().__init__(
            f"the Shipyard daemon at {url} refused the token from {source}; "
            "set SHIPYARD_TOKEN to the contents of the daemon's SHIPYARD_HOME/token file"
        )


class RemoteError(ShipyardError):
    """An error the daemon reported; `type` is the daemon's name for it."""

    def __init__(self, kind: str, message: str, status_code: int) -> None:
        super().__init__(message, status_code)
        self.kind = kind

    @property
    def type(self) -> str:
        return self.kind


class RolloutFailed(ShipyardError):
    status_code = 500


class WaitTimedOut(ShipyardError):
    status_code = 504


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.settings = get_settings()
        self.url = (url or self.settings.url or _local_url(self.settings)).rstrip("/")
        self._token = token or self.settings.token
        self._token_source = "SHIPYARD_TOKEN" if self._token else "SHIPYARD_HOME/token"
        self._http = httpx.Client(timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the daemon -----------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/status"))

    def is_running(self) -> bool:
        try:
            self.status()
        except DaemonNotRunning:
            return False
        return True

    def ensure_daemon(self) -> dict[str, Any]:
        """The daemon's status; a local daemon is started first when none runs (a remote one never is)."""
        if self.is_running():
            return self.status()
        if self.settings.url is not None:
            raise DaemonNotRunning(self.url)
        from shipyard.runtime.local.home import Home
        from shipyard.runtime.local.launcher import start_detached

        address = start_detached(Home(self.settings.home), [])
        self.url = address.url
        self._token = self.settings.token  # the daemon may have just created the token file
        return self.status()

    def shutdown(self) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/shutdown"))

    # -- APIs -----------------------------------------------------------------------------------------------

    def deploy(self, path: str | Path = ".", *, force: bool = False) -> list[dict[str, Any]]:
        """Record the project's APIs as desired state; returns what changes for each (`outcome`).

        The daemon reads the project at this absolute path on its own machine: a daemon behind SHIPYARD_URL
        must share the filesystem (it says so when the path does not exist there). An API of the same name
        that another project deployed is refused (APIOwnedElsewhere) unless `force`.
        """
        from shipyard.spec.loader import find_spec_file

        find_spec_file(path)  # a missing project is this machine's error, said here
        self.ensure_daemon()
        body = {"path": str(Path(path).resolve()), "force": force}
        found = self._call("POST", "/v1/deploy", json=body)
        return list(found["apis"])

    def get(self, name: str | None = None, *, events: int = 20) -> Any:
        """Every API's summary, or one API in detail (replicas, model, its last `events` events, shadows)."""
        if name is None:
            return self._call("GET", "/v1/apis")["apis"]
        return self._call("GET", f"/v1/apis/{name}", params={"events": events})

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/v1/apis/{name}")

    def refresh(self, name: str) -> str:
        """Replace every replica of `name` with a fresh one, rolling; returns the new version."""
        return str(self._call("POST", f"/v1/apis/{name}/refresh")["version"])

    def wait(
        self,
        names: Sequence[str],
        *,
        timeout: float = 300.0,
        on_progress: Callable[[list[dict[str, Any]]], None] | None = None,
        poll: float = 0.25,
    ) -> list[dict[str, Any]]:
        """Until every API in `names` is live; raises RolloutFailed when one stalls or crash-loops."""
        deadline = time.monotonic() + timeout
        while True:
            found = [api for api in self.get() if api["name"] in names]
            if on_progress is not None:
                on_progress(found)
            failed = [api for api in found if api["status"] in _FAILED]
            if failed:
                raise RolloutFailed("; ".join(f"{api['name']}: {api['status']}: {api['message']}" for api in failed))
            if len(found) == len(names) and all(api["status"] in _SETTLED for api in found):
                return found
            if time.monotonic() > deadline:
                waiting = [api for api in found if api["status"] not in _SETTLED]
                missing = sorted(set(names) - {api["name"] for api in found})
                raise WaitTimedOut(
                    f"not live after {timeout:g}s: "
                    + "; ".join([*self._not_ready(waiting), *missing])
                    + "; see `shipyard get NAME`"
                )
            time.sleep(poll)

    def _not_ready(self, apis: Sequence[dict[str, Any]]) -> list[str]:
        """Each API that is not live, with its replicas that are not ready and why."""
        lines = []
        for api in apis:
            line = f"{api['name']} is {api['status']}"
            if api.get("desired") is not None:
                line += f" ({api['ready']}/{api['desired']} ready)"
            if api.get("message"):
                line += f": {api['message']}"
            replicas = self.get(api["name"]).get("replicas", []) if api.get("desired") is not None else []
            pending = [_replica_line(r) for r in replicas if r["state"] != "ready"]
            lines.append(line + (f" [{', '.join(pending)}]" if pending else ""))
        return lines

    def predict(self, name: str, payload: Any = None, *, body: bytes | None = None, timeout: float = 60.0) -> Any:
        """POST to the API through the gateway; returns the decoded JSON answer (or text)."""
        gateway = self.status()["gateway_url"]
        if body is not None:
            response = self._http.post(f"{gateway}/{name}", content=body, timeout=timeout)
        else:
            response = self._http.post(f"{gateway}/{name}", json=payload, timeout=timeout)
        if response.status_code >= 400:
            raise _remote_error(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def logs(
        self,
        name: str,
        *,
        replica: str | None = None,
        follow: bool = False,
        poll: float = 0.5,
        every_replica: bool = False,
    ) -> Iterator[tuple[str, str]]:
        """(replica id, text) chunks of the logs of the API's current replicas (`every_replica`: of every
        replica it ever had); with `follow`, keeps yielding new whole lines."""
        cursors: dict[str, int] = {}
        while True:
            request = {"replica": replica, "cursors": cursors, "follow": follow, "all": every_replica}
            found = self._call("POST", f"/v1/apis/{name}/logs", json=request)
            cursors = found["cursors"]
            for chunk in found["chunks"]:
                yield chunk["replica"], chunk["text"]
            if not follow:
                return
            time.sleep(poll)

    # -- batch jobs (run by the daemon's job runner) ---------------------------------------------------------

    def submit_job(self, request: JobRequest) -> JobInfo:
        """Queue a batch job; its local paths resolve against this process's working directory."""
        from shipyard.jobs.request import absolute

        return _job(self._call("POST", "/v1/jobs", json=asdict(absolute(request))))

    def list_jobs(self, api: str | None = None, limit: int = 100) -> list[JobInfo]:
        params: dict[str, Any] = {"limit": limit} | ({"api": api} if api else {})
        return [_job(found) for found in self._call("GET", "/v1/jobs", params=params)["jobs"]]

    def get_job(self, job_id: str) -> JobInfo:
        return _job(self._call("GET", f"/v1/jobs/{job_id}"))

    def stop_job(self, job_id: str) -> JobInfo:
        return _job(self._call("POST", f"/v1/jobs/{job_id}/stop"))

    def retry_job(self, job_id: str, timeout: float | None = None) -> JobInfo:
        body = {} if timeout is None else {"timeout": timeout}
        return _job(self._call("POST", f"/v1/jobs/{job_id}/retry", json=body))

    def delete_job(self, job_id: str) -> None:
        self._call("DELETE", f"/v1/jobs/{job_id}")

    def job_logs(self, job_id: str, *, follow: bool = False, poll: float = 0.5) -> Iterator[str]:
        """The job's log lines; with `follow`, keeps yielding new ones until the job ends."""
        offset = 0
        while True:
            found = self._call("GET", f"/v1/jobs/{job_id}/logs", params={"offset": offset})
            offset = found["offset"]
            yield from found["lines"]
            if not follow or found["finished"]:
                return
            time.sleep(poll)

    # -- transport ------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"authorization": f"Bearer {self._token_value()}"}
        try:
            response = self._http.request(method, f"{self.url}{path}", headers=headers, **kwargs)
        except httpx.TransportError:
            raise DaemonNotRunning(self.url) from None
        if response.status_code == 401:
            raise TokenRefused(self.url, self._token_source)
        if response.status_code >= 400:
            raise _remote_error(response)
        return response.json()

    def _token_value(self) -> str:
        if self._token is None:
            from shipyard.runtime.local.home import Home

            self._token = Home(self.settings.home).read_token()
        if self._token:
            return self._token
        if self.settings.url is not None:
            raise NoToken(self.url)
        raise DaemonNotRunning(self.url)  # a local daemon writes its token file when it starts


def daemon_serves(home: Path) -> bool:
    """Whether a live daemon holds SHIPYARD_HOME `home` (its lock is held while it runs)."""
    from shipyard.runtime.local.home import Home

    return Home(home).is_locked()


def local_daemon(settings: Settings | None = None) -> Client | None:
    """A client of the daemon that serves this SHIPYARD_HOME (or of SHIPYARD_URL's); None when none runs."""
    from shipyard.runtime.local.home import Home

    settings = settings or get_settings()
    if settings.url is not None:
        return Client()
    home = Home(settings.home)
    address = home.read_address()
    if address is None or not home.is_locked():
        return None
    return Client(address.url)


def _replica_line(replica: dict[str, Any]) -> str:
    line = f"replica {replica['id']} {replica['state']}"
    if replica.get("for_seconds") is not None:
        line += f" for {replica['for_seconds']:g}s"
    if replica.get("last_error"):
        line += f": {replica['last_error']}"
    return line


def _job(data: dict[str, Any]) -> JobInfo:
    from shipyard.jobs.view import JobInfo

    return JobInfo.from_dict(data)


def _local_url(settings: Settings) -> str:
    from shipyard.runtime.local.home import Home

    address = Home(settings.home).read_address()
    return address.url if address is not None else f"http://127.0.0.1:{settings.control_port}"


def _remote_error(response: httpx.Response) -> ShipyardError:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return RemoteError("HTTPError", f"HTTP {response.status_code}: {response.text[:200]}", response.status_code)
    if error.get("problems"):
        return ConfigError(list(error["problems"]))
    import shipyard.jobs.errors
    import shipyard.runtime.local.errors  # noqa: F401  (the control API's and the gateway's, likewise)

    known = from_wire(error, response.status_code) if isinstance(error, dict) else None
    if known is not None:  # the class the daemon raised: the same exception and exit code as without one
        return known
    if response.status_code == 400:  # the request itself was wrong: a usage error, exit code 2 in the CLI
        return ConfigError([str(error.get("message", ""))])
    return RemoteError(str(error.get("type", "Error")), str(error.get("message", "")), response.status_code)
