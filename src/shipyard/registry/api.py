"""The registry's functions for training scripts and servers; `shipyard.registry` re-exports them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

from shipyard.registry.promotion import PromotionOutcome
from shipyard.registry.service import ResolvedModel, open_registry
from shipyard.registry.versions import ModelVersion


def register_model(
    name: str,
    path: str | os.PathLike[str],
    *,
    metrics: Mapping[str, SupportsFloat] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = (),
    code: str | os.PathLike[str] | None = None,
    description: str = "",
    flavor: str | None = None,
    parent_run_id: str | None = None,
) -> ModelVersion:
    """Register the model file or folder at `path` as the next version of `name`; `data` is the training
    data, one path or a list of files and folders."""
    with open_registry() as registry:
        return registry.register(
            name,
            path,
            metrics=metrics,
            params=params,
            tags=tags,
            data=data,
            code=code,
            description=description,
            flavor=flavor,
            parent_run_id=parent_run_id,
        )


def resolve_model_ref(ref: str) -> ResolvedModel:
    """`models:/NAME@ALIAS`, `models:/NAME:VERSION` or `models:/NAME` (newest) as a verified local folder.

    Raises ModelNotFound, VersionNotFound, AliasNotFound, InvalidModelRef, ArtifactMissing or
    ArtifactIntegrityError (all ShipyardError); the folder is never returned unverified.
    """
    with open_registry() as registry:
        return registry.resolve(ref)


def promote_model(
    ref: str,
    alias: str,
    *,
    reason: str = "",
    force: bool = False,
    policies: str | os.PathLike[str] | None = None,
) -> PromotionOutcome:
    """Move `alias` to the version `ref` names if the policies allow it; raises PromotionRefused if not."""
    with open_registry() as registry:
        return registry.promote(ref, alias, reason=reason, force=force, policies=policies).raise_for_refusal()
