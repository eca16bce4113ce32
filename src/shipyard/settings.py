"""The one place that reads SHIPYARD_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"SHIPYARD_{name}")
    return value if value not in (None, "") else default


def _port(name: str, default: int) -> int:
    value = _env(name)
    if value is None:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        from shipyard.errors import ShipyardError

        raise ShipyardError(f"SHIPYARD_{name} must be a port number between 1 and 65535, got {value!r}", 400)
    return int(value)


def _artifacts(home: Path, value: str) -> str:
    """SHIPYARD_ARTIFACTS as given when it is a URL (s3://...) or an absolute folder; a relative folder is
    taken inside SHIPYARD_HOME, so every process (CLI, daemon, workers) finds the same store whatever its
    working directory."""
    if "://" in value:
        return value
    return os.path.abspath(home / Path(value).expanduser())


@dataclass(frozen=True)
class Settings:
    """Settings resolved from the environment; construct with `Settings.from_env()`."""

    home: Path
    database_url: str
    artifacts: str
    log_level: str = "info"
    url: str | None = None
    """SHIPYARD_URL: the control plane the CLI and SDK talk to (default: the local daemon)."""
    token: str | None = None
    """SHIPYARD_TOKEN: the control plane's token (default: read from SHIPYARD_HOME)."""
    control_port: int = 7070
    """SHIPYARD_CONTROL_PORT: where a daemon started without --port listens (on 127.0.0.1)."""
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    """SHIPYARD_GATEWAY_HOST / SHIPYARD_GATEWAY_PORT: the gateway of a daemon started without flags."""
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("HOME", str(Path.home() / ".shipyard")) or "").expanduser()
        return cls(
            home=home,
            database_url=_env("DATABASE_URL", f"sqlite:///{home / 'shipyard.db'}") or "",
            artifacts=_artifacts(home, _env("ARTIFACTS", "artifacts") or "artifacts"),
            log_level=(_env("LOG_LEVEL", "info") or "info").lower(),
            url=_env("URL"),
            token=_env("TOKEN"),
            control_port=_port("CONTROL_PORT", 7070),
            gateway_host=_env("GATEWAY_HOST", "127.0.0.1") or "127.0.0.1",
            gateway_port=_port("GATEWAY_PORT", 8080),
        )


def get_settings() -> Settings:
    return Settings.from_env()
