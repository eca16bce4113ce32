"""Shipyard: serve, batch, register and govern machine-learning models from one YAML file."""

from shipyard.errors import BadRequest, ShipyardError

__version__ = "0.1.0"

__all__ = ["BadRequest", "ShipyardError", "__version__"]
