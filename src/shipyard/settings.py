"""The one place that reads SHIPYARD_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"SHIPYARD_{name}")
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    """Settings resolved from the environment; construct with `Settings.from_env()`."""

    home: Path
    database_url: str
    artifacts: str
    log_level: str = "info"
    url: str | None = None
    token: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("HOME", str(Path.home() / ".shipyard")) or "").expanduser()
        return cls(
            home=home,
            database_url=_env("DATABASE_URL", f"sqlite:///{home / 'shipyard.db'}") or "",
            artifacts=_env("ARTIFACTS", str(home / "artifacts")) or "",
            log_level=(_env("LOG_LEVEL", "info") or "info").lower(),
            url=_env("URL"),
            token=_env("TOKEN"),
        )


def get_settings() -> Settings:
    return Settings.from_env()
