"""APIs that follow a registry alias (`model: models:/NAME@ALIAS`) roll out when the alias moves.

The daemon's loop compares, every tick, the model version each such API's release is pinned to with the
version its alias holds now in the store; a difference becomes a new release (the same frozen project,
the model pinned to the new version) that `plan` then rolls out like any other. Reading the store,
rather than being told by whoever promoted, means no promotion is missed: not one made while the daemon
was down, nor one made by a training script or another machine that shares the store. The registry
never learns that the runtime exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, select, update

from shipyard.errors import ShipyardError
from shipyard.runtime.local import release as releases
from shipyard.runtime.local.release import PinnedModel
from shipyard.runtime.local.state import Deployment, Event, get_release, insert_release
from shipyard.store import read_transaction, write_transaction
from shipyard.store.tables import deployments
from shipyard.store.tables import releases as releases_table

log = logging.getLogger("shipyard.daemon")


@dataclass(frozen=True)
class Pin:
    """What a deployment that follows an alias runs now."""

    api: str
    version: str
    model: str
    alias: str
    pinned: int | None


@dataclass(frozen=True)
class Move:
    """The alias an API follows holds another version than the API runs: roll out `to`."""

    api: str
    from_version: str
    model: str
    alias: str
    to: int

    @property
    def reason(self) -> str:
        return f"alias {self.alias} moved to {self.model}:{self.to}"


def moves(pins: Iterable[Pin], holders: Mapping[tuple[str, str], int | None]) -> list[Move]:
    """Pure: the rollouts that bring every following API to the version its alias holds (an alias that
    holds nothing, or a model that is gone, moves nothing: the API keeps what it runs)."""
    found = []
    for pin in pins:
        target = holders.get((pin.model, pin.alias))
        if target is not None and target != pin.pinned:
            found.append(Move(pin.api, pin.version, pin.model, pin.alias, target))
    return found


def following(deployment: Deployment) -> tuple[str, str] | None:
    """(model, alias) when the deployment's spec says `model: models:/NAME@ALIAS`."""
    ref = deployment.model_ref
    if not deployment.is_realtime or ref is None or not ref.startswith("models:/") or "@" not in ref:
        return None
    model, _, alias = ref[len("models:/") :].partition("@")
    return (model, alias) if alias != "latest" else None


class AliasFollower:
    """The side effects around `moves`: read pins and holders, then record each rollout as a new release."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._failed: set[Move] = set()
        """Moves that could not become a release (say, the new version's blob is corrupt): reported once."""

    def follow(self, found: Iterable[Deployment], now: float) -> list[Event]:
        pins, holders = self._observe(found)
        events = []
        for move in moves(pins, holders):
            if move not in self._failed:
                events += self._roll_out(move, now)
        return events

    def _observe(self, found: Iterable[Deployment]) -> tuple[list[Pin], dict[tuple[str, str], int | None]]:
        from shipyard.registry.aliases import holder

        pins: list[Pin] = []
        holders: dict[tuple[str, str], int | None] = {}
        with read_transaction(self._engine) as connection:
            for deployment in found:
                key = following(deployment)
                if key is None:
                    continue
                current = get_release(connection, deployment.name, deployment.version)
                pins.append(Pin(deployment.name, deployment.version, *key, current.model_version))
                if key not in holders:
                    try:
                        held = holder(connection, *key)
                    except ShipyardError:  # the model was deleted: keep serving what is pinned
                        held = None
                    holders[key] = held.version if held is not None else None
        return pins, holders

    def _roll_out(self, move: Move, now: float) -> list[Event]:
        try:
            version = self._record(move)
        except ShipyardError as exc:
            self._failed.add(move)
            log.warning("%s: %s, but it cannot roll out: %s", move.api, move.reason, exc.message)
            return [Event(now, move.api, "rollout-failed", f"{move.reason}, but it cannot roll out: {exc.message}")]
        if version is None:  # a deploy or delete came first; the next tick looks again
            return []
        log.info("%s: %s; rolling out version %s", move.api, move.reason, version)
        return [Event(now, move.api, "alias-moved", f"{move.reason}; rolling out version {version}")]

    def _record(self, move: Move) -> str | None:
        from shipyard.registry import resolve_model_ref

        resolved = resolve_model_ref(f"models:/{move.model}:{move.to}")  # verified before any replica loads it
        model = PinnedModel(resolved.name, resolved.version, resolved.digest)
        with read_transaction(self._engine) as connection:
            current = get_release(connection, move.api, move.from_version)
            spec = connection.execute(select(deployments.c.spec).where(deployments.c.name == move.api)).scalar_one()
            written = _spec_files(connection, Path(current.project).parent)
        new = releases.repinned(move.api, spec, Path(current.project), model, written)
        spec_file = Path(current.project).with_name(releases.spec_file_name(new.name, new.version))
        with write_transaction(self._engine) as connection:
            insert_release(connection, new, str(spec_file))  # a rollback finds the earlier one recorded
            changed = connection.execute(
                update(deployments)
                .where(deployments.c.name == move.api, deployments.c.version == move.from_version)
                .values(version=new.version, updated_at=time.time())
            )
        return new.version if changed.rowcount == 1 else None


def _spec_files(connection: Connection, folder: Path) -> set[str]:
    projects = connection.execute(select(releases_table.c.project)).scalars()
    return {Path(p).name for p in projects if Path(p).parent == folder}
