"""Connectors: social / OIDC sign-in, account linking and user-delegated tokens.

The model follows Logto's connector data structure (:mod:`.metadata`); presets for
well-known providers are in :mod:`.presets`, config guards and rules in :mod:`.guards`,
the routes in :mod:`.routes` and :mod:`.login`, refresh in :mod:`.usertokens`.
"""

from __future__ import annotations

from .connector import Connector, Endpoints
from .guards import check_rules, guard_config
from .metadata import ConnectorMetadata, ConnectorRecord, Profile, best_locale_text
from .presets import PRESETS, Preset
from .registry import ConnectorRegistry, SignInHook
from .usertokens import ConnectorTokenSource

__all__ = [
    "PRESETS",
    "Connector",
    "ConnectorMetadata",
    "ConnectorRecord",
    "ConnectorRegistry",
    "ConnectorTokenSource",
    "Endpoints",
    "Preset",
    "Profile",
    "SignInHook",
    "best_locale_text",
    "check_rules",
    "guard_config",
]
