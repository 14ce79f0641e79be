"""Connectors: social / OIDC sign-in, account linking and user-delegated tokens.

The model follows Logto's connector data structure (:mod:`.metadata`); presets for
well-known providers are in :mod:`.presets`, config guards and rules in :mod:`.guards`,
the routes in :mod:`.routes` and :mod:`.login`, refresh in :mod:`.usertokens`; records
that persist runtime changes in :mod:`.records`, Logto JSON in :mod:`.logto`, the admin
API in :mod:`.admin`.
"""

from __future__ import annotations

from .connector import Connector, Endpoints
from .guards import check_rules, guard_config
from .logto import export_logto, import_logto
from .metadata import ConnectorMetadata, ConnectorRecord, Profile, best_locale_text
from .presets import PRESETS, Preset
from .records import RecordRefused, TargetImmutable
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
    "RecordRefused",
    "SignInHook",
    "TargetImmutable",
    "best_locale_text",
    "check_rules",
    "export_logto",
    "guard_config",
    "import_logto",
]
