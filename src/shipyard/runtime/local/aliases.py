"""APIs that follow a registry alias (`model: models:/NAME@ALIAS`) roll out when the alias moves.

The daemon's loop compares, every tick, the model version each such API's release is pinned to with the
version its alias holds now in the store; a difference becomes a new release (the same frozen project,
the model pinned to the new version) that `plan` then rolls out like any other. Reading the store,
rather than being told by whoever promoted, means no promotion is missed: not one made while the daemon
was down, nor one made by a training script or another machine that shares the store. The registry
never learns that the runtime exists.

Making that release checks the new version's files out and verifies them, which takes as long as the
model is big: it runs on a thread of its own, and the loop keeps ticking (a 2 GB promotion must not
delay another API's crash restart). A move that fails (a damaged blob, say) is tried again with backoff,
and at once when the alias is written again (the user repaired the blob and promoted once more).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from shipyard.errors import ShipyardError
from shipyard.runtime.local import release as releases
from shipyard.runtime.local.release import PinnedModel
from shipyard.runtime.local.state import Deployment, Event, get_release, insert_release
from shipyard.store import read_transaction, write_transaction
from shipyard.store.tables import deployments, model_aliases
from shipyard.store.tables import releases as releases_table

log = logging.getLogger("shipyard.daemon")

RETRY_BASE = 5.0
"""Seconds before a failed move is tried again; doubled after each failure in a row."""
RETRY_MAX = 300.0


@dataclass(frozen=True)
class Pin:
    """What a deployment that follows an alias runs now."""

    api: str
    version: str
    model: str
    alias: str
    pinned: int | None


@dataclass(frozen=True)
class Holder:
    """What an alias holds now, and when it was last written (None: it holds nothing, or the model is gone)."""

    version: int | None
    written_at: Any = None


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


@dataclass(frozen=True)
class Failure:
    """A move that could not become a release, and when to try it again."""

    attempts: int
    retry_at: float
    written_at: Any
    """The alias's write this failure belongs to: a newer write is tried at once."""
    error: str


@dataclass(frozen=True)
class Following:
    """What `get` says of an API that follows an alias: what the alias holds, and why it is not served yet."""

    alias: str
    holds: int | None
    error: str | None = None


def moves(pins: Iterable[Pin], holders: Mapping[tuple[str, str], Holder]) -> list[Move]:
    """Pure: the rollouts that bring every following API to the version its alias holds (an alias that
    holds nothing, or a model that is gone, moves nothing: the API keeps what it runs)."""
    found = []
    for pin in pins:
        target = holders.get((pin.model, pin.alias), Holder(None)).version
        if target is not None and target != pin.pinned:
            found.append(Move(pin.api, pin.version, pin.model, pin.alias, target))
    return found


def is_due(failure: Failure | None, holder: Holder, now: float) -> bool:
    """Pure: whether a move may be tried (again): never failed, its backoff is over, or the alias was
    written since it failed."""
    return failure is None or failure.written_at != holder.written_at or now >= failure.retry_at


def failed(previous: Failure | None, holder: Holder, now: float, error: str) -> Failure:
    """Pure: the failure after one more failed attempt; the backoff starts over for a new alias write."""
    attempts = previous.attempts + 1 if previous is not None and previous.written_at == holder.written_at else 1
    delay = min(RETRY_BASE * 2 ** (attempts - 1), RETRY_MAX)
    return Failure(attempts, now + delay, holder.written_at, error)


def following(deployment: Deployment) -> tuple[str, str] | None:
    """(model, alias) when the deployment's spec says `model: models:/NAME@ALIAS`."""
    ref = deployment.model_ref
    if not deployment.is_realtime or ref is None or not ref.startswith("models:/") or "@" not in ref:
        return None
    model, _, alias = ref[len("models:/") :].partition("@")
    return (model, alias) if alias != "latest" else None


class AliasFollower:
    """The side effects around `moves`: read pins and holders, and record each rollout as a new release on
    a thread of its own (one move per API at a time); `follow` takes the ones that finished."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._running: dict[str, tuple[Move, Holder, Future[str | None]]] = {}
        self._failures: dict[Move, Failure] = {}
        self.following: dict[str, Following] = {}
        """Per API that follows an alias, as of the last `follow`."""

    def follow(self, found: Iterable[Deployment], now: float) -> list[Event]:
        """Events of the moves that finished since the last call; starts the moves that are due."""
        events = self._finished(now)
        pins, holders = self._observe(found)
        wanted = moves(pins, holders)
        self._failures = {move: failure for move, failure in self._failures.items() if move in wanted}
        for move in wanted:
            holder = holders[(move.model, move.alias)]
            if move.api not in self._running and is_due(self._failures.get(move), holder, now):
                self._start(move, holder)
        self.following = self._states(pins, holders)
        return events

    def is_busy(self) -> bool:
        """Whether a move is being checked out now (one that finished is taken by the next `follow`)."""
        return any(not outcome.done() for _, _, outcome in self._running.values())

    def _states(self, pins: Iterable[Pin], holders: Mapping[tuple[str, str], Holder]) -> dict[str, Following]:
        errors = {move.api: failure.error for move, failure in self._failures.items()}
        return {
            pin.api: Following(pin.alias, holders[(pin.model, pin.alias)].version, errors.get(pin.api)) for pin in pins
        }

    def _observe(self, found: Iterable[Deployment]) -> tuple[list[Pin], dict[tuple[str, str], Holder]]:
        pins: list[Pin] = []
        holders: dict[tuple[str, str], Holder] = {}
        with read_transaction(self._engine) as connection:
            for deployment in found:
                key = following(deployment)
                if key is None:
                    continue
                current = get_release(connection, deployment.name, deployment.version)
                pins.append(Pin(deployment.name, deployment.version, *key, current.model_version))
                if key not in holders:
                    holders[key] = _holder(connection, *key)
        return pins, holders

    def _start(self, move: Move, holder: Holder) -> None:
        outcome: Future[str | None] = Future()

        def work() -> None:
            try:
                outcome.set_result(self._record(move))
            except Exception as exc:  # handed to the loop, which reports it and tries again later
                outcome.set_exception(exc)

        self._running[move.api] = (move, holder, outcome)
        threading.Thread(target=work, name=f"rollout-{move.api}", daemon=True).start()

    def _finished(self, now: float) -> list[Event]:
        events = []
        for api, (move, holder, outcome) in list(self._running.items()):
            if not outcome.done():
                continue
            del self._running[api]
            events += self._settle(move, holder, outcome, now)
        return events

    def _settle(self, move: Move, holder: Holder, outcome: Future[str | None], now: float) -> list[Event]:
        error = outcome.exception()
        if error is None:
            self._failures.pop(move, None)
            version = outcome.result()
            if version is None:  # a deploy or delete came first; the next tick looks again
                return []
            log.info("%s: %s; rolling out version %s", move.api, move.reason, version)
            return [Event(now, move.api, "alias-moved", f"{move.reason}; rolling out version {version}")]
        text = error.message if isinstance(error, ShipyardError) else f"{type(error).__name__}: {error}"
        previous = self._failures.get(move)
        failure = failed(previous, holder, now, text)
        self._failures[move] = failure
        retry = f"tried {failure.attempts} time(s); next try in {failure.retry_at - now:g}s or when the alias is set"
        log.warning("%s: %s, but it cannot roll out (%s): %s", move.api, move.reason, retry, text)
        if previous is not None and previous.error == text and failure.attempts > 1:
            return []  # the same failure again: said once
        return [Event(now, move.api, "rollout-failed", f"{move.reason}, but it cannot roll out: {text}")]

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


def _holder(connection: Connection, model: str, alias: str) -> Holder:
    from shipyard.registry.aliases import holder
    from shipyard.registry.versions import model_id

    try:
        held = holder(connection, model, alias)
        owner = model_id(connection, model)
    except ShipyardError:  # the model was deleted: keep serving what is pinned
        return Holder(None)
    if held is None:
        return Holder(None)
    key = (model_aliases.c.model_id == owner) & (model_aliases.c.alias == alias)
    written_at = connection.execute(select(model_aliases.c.updated_at).where(key)).scalar()
    return Holder(held.version, written_at)


def _spec_files(connection: Connection, folder: Path) -> set[str]:
    projects = connection.execute(select(releases_table.c.project)).scalars()
    return {Path(p).name for p in projects if Path(p).parent == folder}
