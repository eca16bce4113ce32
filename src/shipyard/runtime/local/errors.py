"""The local runtime's errors: what the control API and the gateway answer with, by name on the wire.

In a module of their own, with nothing heavy imported, so that the SDK can load them and turn a
daemon's `{"error": {"type": "APINotFound", ...}}` back into the class it raised (`except NotFound` works).
"""

from __future__ import annotations

from collections.abc import Sequence

from shipyard.errors import NotFound, ShipyardError


class APINotFound(NotFound):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) or "none deployed"
        super().__init__(f"API {name!r} is not deployed (deployed: {listed}); check the name with `shipyard get`")


class APIInUse(ShipyardError):
    status_code = 409

    def __init__(self, name: str, splitters: Sequence[str]) -> None:
        super().__init__(
            f"API {name!r} receives traffic from splitter(s) {', '.join(splitters)}; "
            "delete or change the splitter first"
        )


class APIOwnedElsewhere(ShipyardError):
    """A deploy would replace an API of the same name that another project deployed."""

    status_code = 409

    def __init__(self, name: str, owner: str, source: str) -> None:
        super().__init__(
            f"API {name!r} is already deployed from another project, {owner}; deploying {source} would replace "
            "it: rename the API, `shipyard delete` it first, or deploy with --force to take it over"
        )


class Overloaded(ShipyardError):
    """The gateway cannot take the request now (503 with Retry-After)."""

    status_code = 503

    def __init__(self, api: str, reason: str) -> None:
        super().__init__(f"API {api!r} {reason}; retry after a moment")


class BadGateway(ShipyardError):
    status_code = 502

    def __init__(self, api: str, reason: str) -> None:
        super().__init__(f"API {api!r}: its replica failed to answer ({reason}); retry, and see `shipyard logs {api}`")


class GatewayTimeout(ShipyardError):
    """The request's deadline (the API's `timeout`, counted from its arrival at the gateway) passed."""

    status_code = 504

    def __init__(self, api: str, seconds: float, *, queued: bool = False) -> None:
        where = "waiting in the gateway's queue for a free replica" if queued else "at its replica"
        super().__init__(
            f"API {api!r} did not answer within its timeout of {seconds:g}s (the deadline passed {where}); "
            "raise `timeout`, add replicas, or retry"
        )
