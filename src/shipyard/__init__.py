"""Shipyard: serve, batch, register and govern machine-learning models from one YAML file."""

from typing import Any

from shipyard.errors import BadRequest, ShipyardError

__version__ = "0.1.0"

__all__ = ["BadRequest", "Client", "ShipyardError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Client":  # imported on first use: a replica never needs the SDK
        from shipyard.client import Client

        return Client
    raise AttributeError(f"module 'shipyard' has no attribute {name!r}")
