"""The model registry: versions, aliases, integrity-checked artifacts, lineage and the audit log.

For training scripts and servers:

    from shipyard.registry import register_model, resolve_model_ref
    version = register_model("iris", "model/", metrics={"accuracy": 0.95}, data=["train.csv"])
    resolved = resolve_model_ref("models:/iris@production")   # verified local folder + digest
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.registry.api import promote_model, register_model, resolve_model_ref
    from shipyard.registry.errors import (
        AliasNotFound,
        ArtifactIntegrityError,
        ModelNotFound,
        PromotionRefused,
        VersionInUse,
        VersionNotFound,
    )
    from shipyard.registry.integrity import verify_model_folder
    from shipyard.registry.promotion import PromotionOutcome
    from shipyard.registry.refs import ModelRef, parse_ref
    from shipyard.registry.service import Registry, ResolvedModel, open_registry
    from shipyard.registry.versions import ModelVersion

# Imported on first use: a replica that only needs `manifest` should not pay for SQLAlchemy and CEL.
_EXPORTS = {
    "promote_model": "api", "register_model": "api", "resolve_model_ref": "api",
    "AliasNotFound": "errors", "ArtifactIntegrityError": "errors", "ModelNotFound": "errors",
    "PromotionRefused": "errors", "VersionInUse": "errors", "VersionNotFound": "errors",
    "PromotionOutcome": "promotion", "ModelRef": "refs", "parse_ref": "refs",
    "Registry": "service", "ResolvedModel": "service", "open_registry": "service", "ModelVersion": "versions",
    "verify_model_folder": "integrity",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.registry' has no attribute {name!r}")
    return getattr(importlib.import_module(f"shipyard.registry.{module}"), name)


__all__ = [
    "AliasNotFound",
    "ArtifactIntegrityError",
    "ModelNotFound",
    "ModelRef",
    "ModelVersion",
    "PromotionOutcome",
    "PromotionRefused",
    "Registry",
    "ResolvedModel",
    "VersionInUse",
    "VersionNotFound",
    "open_registry",
    "parse_ref",
    "promote_model",
    "register_model",
    "resolve_model_ref",
    "verify_model_folder",
]
