"""Connector records over the settings: which fields a record may change, and how.

Settings are the base. A record (Logto's connector row) overrides only what Logto lets
a row change: the connector's ``config`` (validated by its guard), the metadata
overrides ``target``, ``name``, ``logo`` and ``logo_dark`` (standard connectors only, as
in Logto), and ``sync_profile``; authrelay adds ``enabled``. The kind (``preset`` /
``standard``), ``type``, ``platform`` and ``description`` come from the settings.

Defends against: a record that moves a connector to another ``target`` (identities are
linked per target, so it is immutable once set, as in Logto), a masked secret
(``**********`` from a listing) written back as the secret, and secrets in views.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from ..errors import ConfigurationError
from ..settings import ConnectorSettings
from .metadata import ConnectorRecord

__all__ = [
    "CONFIG_FIELDS",
    "FIXED_FIELDS",
    "MASK",
    "METADATA_FIELDS",
    "SECRET_FIELDS",
    "RecordRefused",
    "TargetImmutable",
    "effective_config",
    "merge_change",
    "safe_config",
]

MASK = "**********"
"""What views show for a secret; written back, it means "unchanged"."""
SECRET_FIELDS = ("client_secret", "private_key")
FIXED_FIELDS = frozenset({"preset", "standard", "type", "platform", "description"})
METADATA_FIELDS = ("target", "name", "logo", "logo_dark")
CONFIG_FIELDS = (
    frozenset(ConnectorSettings.model_fields)
    - FIXED_FIELDS
    - {
        *METADATA_FIELDS,
        "sync_profile",
    }
)


class RecordRefused(ConfigurationError):
    """A connector change that cannot be saved (nothing was saved)."""

    error = "invalid_connector_change"
    status = 400


class TargetImmutable(RecordRefused):
    """A change of a connector's ``target`` (immutable once set, as in Logto)."""

    error = "target_immutable"
    status = 409


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def base_config(settings: ConnectorSettings) -> dict[str, Any]:
    """The fields the settings set, secrets in the clear (for merging, never for output)."""
    data = settings.model_dump(mode="python", exclude_unset=True)
    return {key: _plain(value) for key, value in data.items()}


def effective_config(settings: ConnectorSettings, record: ConnectorRecord) -> dict[str, Any]:
    """The settings with the record's overrides on top, ready for the config guard."""
    merged = base_config(settings)
    merged.update(record.config)
    merged.update({k: v for k, v in record.metadata.items() if k in METADATA_FIELDS})
    merged["sync_profile"] = record.sync_profile
    return merged


def merge_change(
    name: str,
    settings: ConnectorSettings,
    current: ConnectorRecord,
    *,
    config: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    target: str,
    is_standard: bool,
) -> tuple[dict[str, Any], dict[str, Any], bool | None]:
    """New (config overrides, metadata overrides, sync_profile) after a change.

    ``config`` members merge into the record's overrides; ``null`` drops an override (the
    settings value applies again); a value equal to the settings' is not kept. Raises
    :class:`RecordRefused` / :class:`TargetImmutable` naming the field.
    """
    where = f"connectors.{name}"
    base = {k: _plain(v) for k, v in settings.model_dump(mode="python").items()}
    problems: list[str] = []
    change = dict(config or {})
    meta_change = dict(metadata or {})
    sync_profile = change.pop("sync_profile", None)
    for key in METADATA_FIELDS:  # accepted in config too, for convenience
        if key in change:
            meta_change.setdefault(key, change.pop(key))
    overrides = dict(current.config)
    for key, value in change.items():
        if key in FIXED_FIELDS:
            if value != base.get(key):
                problems.append(
                    f"{where}.config.{key}: fixed by the settings file (the connector's kind, "
                    "type, platform and description); change it there"
                )
        elif key not in CONFIG_FIELDS:
            problems.append(f"{where}.config.{key}: not a connector config field")
        elif key in SECRET_FIELDS and value == MASK:
            continue  # a listing's mask sent back: unchanged
        elif value is None or value == base.get(key):
            overrides.pop(key, None)
        else:
            overrides[key] = value
    new_meta = dict(current.metadata)
    for key, value in meta_change.items():
        if key not in METADATA_FIELDS:
            problems.append(
                f"{where}.metadata.{key}: not overridable (only {', '.join(METADATA_FIELDS)})"
            )
        elif key == "target":
            if value is not None and value != target:
                raise TargetImmutable(
                    f"{where}.metadata.target: the target is {target!r} and cannot change "
                    "(identities are linked per target); configure a new connector instead"
                )
        elif not is_standard and value is not None:
            problems.append(
                f"{where}.metadata.{key}: only standard (oauth2 / oidc) connectors take "
                "metadata overrides, as in Logto; a preset's comes from the settings"
            )
        elif value is None:
            new_meta.pop(key, None)
        else:
            new_meta[key] = value
    if sync_profile is not None and not isinstance(sync_profile, bool):
        problems.append(f"{where}.sync_profile: must be true or false")
    if problems:
        raise RecordRefused(problems)
    return overrides, new_meta, sync_profile


def safe_config(settings: ConnectorSettings) -> dict[str, Any]:
    """A connector's effective config for views: secrets shown as :data:`MASK` only."""
    data = settings.model_dump(mode="json", exclude_none=True)
    for key in SECRET_FIELDS:
        if key in data:
            data[key] = MASK
    return {key: value for key, value in data.items() if key in CONFIG_FIELDS}
