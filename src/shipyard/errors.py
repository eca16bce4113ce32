"""One error hierarchy. Each subclass builds a message that names the thing, the value and the remedy."""

from __future__ import annotations

from typing import Any


class ShipyardError(Exception):
    """Base of every error Shipyard raises on purpose; `status_code` is its HTTP status."""

    status_code: int = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


class ConfigError(ShipyardError):
    """A user file (shipyard.yaml, policies.yaml) is malformed; `problems` holds one line per problem."""

    status_code = 400

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class HandlerLoadError(ShipyardError):
    """The handler named in the spec cannot be imported or constructed."""

    status_code = 500


class FeatureMismatch(HandlerLoadError):
    """The model and shipyard.yaml disagree on the features: a spec problem (exit code 2), found while loading."""


class PathOutsideProject(ShipyardError):
    status_code = 400

    def __init__(
        self,
        what: str,
        path: str,
        project: str,
        remedy: str = "move it inside the project or use a registry reference (models:/NAME@ALIAS)",
    ) -> None:
        super().__init__(f"{what} {path!r} is outside the project directory {project!r}; {remedy}")


class BadRequest(ShipyardError):
    status_code = 400


class PayloadTooLarge(ShipyardError):
    status_code = 413

    def __init__(self, size: int, limit: int, decompressed: bool = False) -> None:
        what = "decompresses to more than" if decompressed else f"of {size} bytes is over"
        super().__init__(
            f"request body {what} this API's max_body_size of {limit} bytes; "
            "send a smaller body or raise max_body_size in shipyard.yaml"
        )


class UnsupportedEncoding(ShipyardError):
    status_code = 415

    def __init__(self, encoding: str) -> None:
        super().__init__(
            f"content encoding {encoding!r} is not supported; send the body as it is, or compressed with gzip "
            "or deflate"
        )


class UnsupportedMediaType(ShipyardError):
    status_code = 415

    def __init__(self, content_type: str, accepted: list[str]) -> None:
        super().__init__(
            f"content type {content_type!r} is not accepted by this API; send one of: {', '.join(accepted)}"
            + (" (with curl: -H 'Content-Type: application/json')" if "application/json" in accepted else "")
        )


class NotFound(ShipyardError):
    status_code = 404


class MethodNotAllowed(ShipyardError):
    status_code = 405

    def __init__(self, message: str, allowed: list[str] | None = None) -> None:
        super().__init__(message)
        self.allowed = allowed or []
        """The methods the route does answer, for the Allow header."""


class SchemaViolation(ShipyardError):
    """The payload breaks the API's input schema; `fields` maps each bad field to its reason."""

    status_code = 422

    def __init__(self, fields: dict[str, str], omitted: int = 0) -> None:
        self.fields = fields
        self.omitted = omitted
        """Further problems left out of `fields` to keep the answer short."""
        detail = "; ".join(f"{name}: {reason}" for name, reason in fields.items())
        more = f"; and {omitted} more problem{'s' if omitted != 1 else ''} not listed" if omitted else ""
        super().__init__(f"payload does not match the input schema: {detail}{more}")

    def to_dict(self) -> dict[str, str]:
        body = super().to_dict()
        body["fields"] = self.fields  # type: ignore[assignment]
        if self.omitted:
            body["fields_omitted"] = self.omitted  # type: ignore[assignment]
        return body


class InvalidTensor(ShipyardError):
    """An Open Inference Protocol tensor is malformed (shape, datatype or data disagree)."""

    status_code = 400


class Overloaded(ShipyardError):
    status_code = 503

    def __init__(self, retry_after: int = 1) -> None:
        self.retry_after = retry_after
        super().__init__("the API is at capacity (max_concurrency + max_queue_length); retry after a moment")


class ShuttingDown(ShipyardError):
    """The replica stopped before the request finished: its grace period ran out, or the stop was forced."""

    status_code = 503

    def __init__(self, grace_period: float, retry_after: int = 1, forced: bool = False) -> None:
        self.retry_after = retry_after
        why = (
            "was stopped at once, before the request finished"
            if forced
            else f"is shutting down and the request did not finish within its grace period of {grace_period:g}s"
        )
        super().__init__(f"the replica {why}; retry it (another replica will answer)")


class NotReady(ShipyardError):
    status_code = 503

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not ready yet; poll /readyz and retry")


class PredictionTimeout(ShipyardError):
    status_code = 504

    def __init__(self, seconds: float) -> None:
        super().__init__(f"prediction did not finish within the API's timeout of {seconds:g}s")


class PredictionFailed(ShipyardError):
    """The handler raised; the message stays generic and the traceback goes to the log."""

    status_code = 500

    def __init__(self, message: str = "the handler raised an error; see the API's log for this request id") -> None:
        super().__init__(message)


def from_wire(body: dict[str, Any], status_code: int) -> ShipyardError | None:
    """The error a daemon reported as `{"type": ..., "message": ..., ...}`, as the same class it raised (so
    callers and exit codes see no difference from a call without a daemon); None for an unknown type.
    Only classes loaded in this process are known. Extra keys (`fields`, ...) become attributes."""
    found = _subclass(ShipyardError, str(body.get("type", "")))
    if found is None or found in (ConfigError, BadRequest):  # a malformed request stays a usage error
        return None
    error = found.__new__(found)
    ShipyardError.__init__(error, str(body.get("message", "")), status_code)  # not the subclass's message builder
    for key, value in body.items():
        if key not in ("type", "message"):
            setattr(error, key, value)
    return error


def _subclass(base: type[ShipyardError], name: str) -> type[ShipyardError] | None:
    for cls in base.__subclasses__():
        if cls.__name__ == name:
            return cls
        deeper = _subclass(cls, name)
        if deeper is not None:
            return deeper
    return None
