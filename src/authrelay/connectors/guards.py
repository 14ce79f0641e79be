"""Config guards and the rules every set of connectors must satisfy.

Each connector kind has a pydantic model of its config (its "guard"); a config that
does not pass is refused with the field path and nothing is saved. The rules are
checked when the relay is built and again on every change (:func:`check_rules`):

1. no two connectors share (``target``, ``platform``);
2. at most one e-mail and one SMS connector;
3. e-mail and SMS connectors have no platform; only social connectors have one.

Defends against: a typo or a missing secret surfacing at the first login instead of at
start, ambiguous sign-in buttons (two "GitHub" web connectors), and identities of one
target being split across users.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigurationError
from ..settings import ConnectorSettings
from ..settings._base import describe
from .metadata import ConnectorType, Platform
from .presets import PRESETS

__all__ = ["RuleEntry", "check_rules", "guard_config"]


def guard_config(name: str, config: Mapping[str, Any] | ConnectorSettings) -> ConnectorSettings:
    """Validate one connector's config with its kind's guard; raise ``ConfigurationError``."""
    where = f"connectors.{name}"
    if isinstance(config, ConnectorSettings):
        settings = config
    else:
        try:
            settings = ConnectorSettings.model_validate(dict(config))
        except ValidationError as exc:
            raise ConfigurationError(describe(exc, ConnectorSettings, where)) from None
    problems: list[str] = []
    if settings.preset is not None:
        preset = PRESETS.get(settings.preset)
        if preset is None:
            close = difflib.get_close_matches(settings.preset, list(PRESETS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(sorted(PRESETS))
            problems.append(
                f"{where}.preset: unknown preset {settings.preset!r}; {hint}(known: {known})"
            )
        elif settings.preset != "microsoft" and settings.tenant is not None:
            problems.append(f"{where}.tenant: only the microsoft preset has a tenant")
    if settings.standard == "oauth2" and not settings.userinfo_endpoint:
        problems.append(
            f"{where}.userinfo_endpoint: a standard oauth2 connector needs a user-info endpoint "
            "to learn who signed in"
        )
    if settings.standard == "oidc" and not settings.discovery:
        for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not getattr(settings, needed):
                problems.append(f"{where}.{needed}: required when discovery = false")
    if problems:
        raise ConfigurationError(problems)
    return settings


@dataclass(frozen=True, slots=True)
class RuleEntry:
    """What the rules look at for one connector."""

    name: str
    target: str
    type: ConnectorType
    platform: Platform | None


def check_rules(entries: Iterable[RuleEntry]) -> list[str]:
    """Problems with a set of connectors (empty when the rules hold)."""
    problems: list[str] = []
    seen: dict[tuple[str, str | None], str] = {}
    by_type: dict[str, list[str]] = {"email": [], "sms": []}
    for entry in entries:
        where = f"connectors.{entry.name}"
        if entry.type in ("email", "sms"):
            by_type[entry.type].append(entry.name)
            if entry.platform is not None:
                problems.append(f"{where}.platform: {entry.type} connectors have no platform")
        elif entry.platform is None:
            problems.append(f"{where}.platform: social connectors need a platform")
        key = (entry.target, entry.platform)
        other = seen.get(key)
        if other is not None:
            problems.append(
                f"{where}.target: {entry.target!r} on platform {entry.platform!r} is already "
                f"used by connectors.{other}"
            )
        else:
            seen[key] = entry.name
    for kind, names in by_type.items():
        if len(names) > 1:
            problems.append(f"connectors: at most one {kind} connector ({', '.join(names)})")
    return problems
