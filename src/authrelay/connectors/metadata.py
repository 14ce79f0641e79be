"""The connector model, after Logto's connector data structure.

:class:`ConnectorMetadata` is the fixed part, shipped with a preset or a standard
connector; :class:`ConnectorRecord` is the changeable part kept in the store (random
id, metadata overrides, ``sync_profile``, validated config). :class:`Profile` is the
common shape every provider's user info is mapped to.

Defends against: a record that carries an unvalidated config (records are only built
through a connector's config guard, see :mod:`.guards`), and secrets in ``repr``
(a record's config is never printed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._crypto import random_token

__all__ = [
    "ConnectorMetadata",
    "ConnectorRecord",
    "ConnectorType",
    "Platform",
    "Profile",
    "best_locale_text",
]

ConnectorType = Literal["social", "email", "sms"]
Platform = Literal["web", "native", "universal"]


@dataclass(frozen=True, slots=True)
class ConnectorMetadata:
    """The fixed description of a connector kind."""

    id: str
    target: str
    type: ConnectorType = "social"
    platform: Platform | None = "web"
    name: Mapping[str, str] = field(default_factory=dict)
    description: Mapping[str, str] = field(default_factory=dict)
    logo: str = ""
    logo_dark: str | None = None
    is_standard: bool = False
    readme: str = ""
    config_template: str = ""


@dataclass(frozen=True, slots=True)
class ConnectorRecord:
    """The changeable part of a connector, as kept in the store."""

    id: str
    connector_id: str
    config: Mapping[str, Any] = field(repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Overrides of ``logo``, ``logo_dark``, ``target`` and ``name``."""
    sync_profile: bool = False
    created_at: float = 0.0
    enabled: bool = True
    """False: the connector is hidden and its login routes answer 404 (authrelay's own)."""

    @classmethod
    def new(
        cls,
        connector_id: str,
        config: Mapping[str, Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        sync_profile: bool = False,
        created_at: float = 0.0,
    ) -> ConnectorRecord:
        """A record with a fresh random id."""
        return cls(
            id=random_token(12),
            connector_id=connector_id,
            config=dict(config),
            metadata=dict(metadata or {}),
            sync_profile=sync_profile,
            created_at=created_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (for the sealed store)."""
        return {
            "id": self.id,
            "connector_id": self.connector_id,
            "config": dict(self.config),
            "metadata": dict(self.metadata),
            "sync_profile": self.sync_profile,
            "created_at": self.created_at,
            "enabled": self.enabled,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectorRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=str(data["id"]),
            connector_id=str(data["connector_id"]),
            config=dict(data.get("config") or {}),
            metadata=dict(data.get("metadata") or {}),
            sync_profile=bool(data.get("sync_profile", False)),
            created_at=float(data.get("created_at") or 0.0),
            enabled=bool(data.get("enabled", True)),
        )


@dataclass(frozen=True, slots=True)
class Profile:
    """A user's profile at a provider, mapped to one common shape."""

    sub: str
    name: str | None = None
    email: str | None = None
    email_verified: bool = False
    picture: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The profile as claims."""
        return {
            "sub": self.sub,
            "name": self.name,
            "email": self.email,
            "email_verified": self.email_verified,
            "picture": self.picture,
        }


def _languages(accept_language: str | None) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip().lower()
        if not tag or tag == "*":
            continue
        q = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        if q > 0:
            ranked.append((-q, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def best_locale_text(texts: Mapping[str, str], accept_language: str | None) -> str:
    """The text for the best ``Accept-Language`` match, else English, else any."""
    if not texts:
        return ""
    lowered = {key.lower(): value for key, value in texts.items()}
    for tag in _languages(accept_language):
        if tag in lowered:
            return lowered[tag]
        primary = tag.split("-")[0]
        if primary in lowered:
            return lowered[primary]
        for key, value in lowered.items():
            if key.split("-")[0] == primary:
                return value
    for fallback in ("en", "en-us"):
        if fallback in lowered:
            return lowered[fallback]
    return next(iter(texts.values()))


def merge_names(base: Mapping[str, str], override: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Locale map ``base`` with ``override`` entries on top."""
    merged = dict(base)
    merged.update(override)
    return merged
