"""Connector records as Logto-shaped JSON: export and import.

An exported item has the members of Logto's ``ConnectorResponse``: the row (``id``,
``connectorId``, ``syncProfile``, ``config``, ``metadata`` overrides, ``createdAt`` in
epoch milliseconds) merged with the connector's metadata (``target``, ``platform``,
``type``, ``name``, ``description``, ``logo``, ``logoDark``, ``readme``,
``configTemplate``, ``isStandard``), all camelCase; authrelay adds ``enabled``. Config
members are camelCase too, with Logto's names where they differ (``scope`` as one
space-separated string, ``userInfoEndpoint``, ``profileMap``, ``customConfig``).

An imported item changes the configured connector with the same record ``id``, else
the one with the same ``target`` and ``platform`` (unique by the rules); its
``connectorId`` must match. Records never add connectors: settings stay the base.

Defends against: secrets in exports (left out unless ``include_secrets=True``), and a
partly applied import (every item is checked before any is saved).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._io import Flow
from .metadata import ConnectorRecord
from .records import SECRET_FIELDS, RecordRefused

if TYPE_CHECKING:
    from .registry import ConnectorRegistry

__all__ = ["export_logto", "import_logto"]

_TO_LOGTO = {"userinfo_endpoint": "userInfoEndpoint", "authorize_params": "customConfig"}
_FROM_LOGTO = {value: key for key, value in _TO_LOGTO.items()}
_PROFILE_TO_LOGTO = {"sub": "id", "picture": "avatar"}
_PROFILE_FROM_LOGTO = {value: key for key, value in _PROFILE_TO_LOGTO.items()}
_LOGTO_ONLY_PROFILE = ("phone",)
_CAMEL = re.compile(r"(?<!^)([A-Z])")


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _snake(key: str) -> str:
    return _CAMEL.sub(r"_\1", key).lower()


def config_to_logto(config: Mapping[str, Any]) -> dict[str, Any]:
    """authrelay config fields → Logto's camelCase config."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key == "scopes":
            out["scope"] = " ".join(value)
        elif key == "userinfo_mapping":
            out["profileMap"] = {_PROFILE_TO_LOGTO.get(k, k): v for k, v in value.items()}
        else:
            out[_TO_LOGTO.get(key, _camel(key))] = value
    return out


def config_from_logto(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Logto's camelCase config → authrelay config fields (unknown ones left for the guard)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key == "scope":
            out["scopes"] = value.split() if isinstance(value, str) else value
        elif key == "profileMap" and isinstance(value, Mapping):
            out["userinfo_mapping"] = {
                _PROFILE_FROM_LOGTO.get(k, k): v
                for k, v in value.items()
                if k not in _LOGTO_ONLY_PROFILE
            }
        elif key == "idTokenVerificationConfig" and isinstance(value, Mapping):
            unknown = sorted(set(value) - {"jwksUri"})
            if unknown:
                raise RecordRefused(
                    f"{where}.config.idTokenVerificationConfig: only jwksUri is understood "
                    f"(not {', '.join(unknown)}); ID token checks follow the standards"
                )
            if "jwksUri" in value:
                out["jwks_uri"] = value["jwksUri"]
        elif key == "authRequestOptionalConfig" and isinstance(value, Mapping):
            if value:
                raise RecordRefused(
                    f"{where}.config.authRequestOptionalConfig: not supported; put extra "
                    "authorization parameters in customConfig"
                )
        else:
            out[_FROM_LOGTO.get(key, _snake(key))] = value
    return out


def export_logto(
    registry: ConnectorRegistry, *, include_secrets: bool = False
) -> list[dict[str, Any]]:
    """Every configured connector as a Logto ``ConnectorResponse``-shaped object.

    ``config`` is the effective config (settings with the record's overrides);
    ``client_secret`` and ``private_key`` are left out unless ``include_secrets``.
    """
    items: list[dict[str, Any]] = []
    for name, connector in registry.connectors.items():
        record = registry.records[name]
        meta = connector.metadata
        config = connector.settings.model_dump(mode="json", exclude_none=True)
        for key in ("preset", "standard", "type", "platform", "sync_profile"):
            config.pop(key, None)
        for key in ("target", "name", "description", "logo", "logo_dark"):
            config.pop(key, None)
        for key in SECRET_FIELDS:
            config.pop(key, None)
            secret = getattr(connector.settings, key)
            if include_secrets and secret is not None:
                config[key] = secret.get_secret_value()
        overrides = {
            ("logoDark" if key == "logo_dark" else key): value
            for key, value in record.metadata.items()
        }
        items.append(
            {
                "id": record.id,
                "connectorId": meta.id,
                "syncProfile": connector.settings.sync_profile,
                "config": config_to_logto(config),
                "metadata": overrides,
                "createdAt": int(record.created_at * 1000),
                "target": meta.target,
                "platform": meta.platform,
                "type": meta.type,
                "name": dict(meta.name),
                "description": dict(meta.description),
                "logo": meta.logo,
                "logoDark": meta.logo_dark,
                "readme": meta.readme,
                "configTemplate": meta.config_template,
                "isStandard": meta.is_standard,
                "enabled": name not in registry.disabled,
            }
        )
    return items


def _find(registry: ConnectorRegistry, item: Mapping[str, Any], where: str) -> str:
    for name, record in registry.records.items():
        if item.get("id") is not None and record.id == item.get("id"):
            return name
    target, platform = item.get("target"), item.get("platform")
    metadata = item.get("metadata")
    if target is None and isinstance(metadata, Mapping):
        target = metadata.get("target")
    for name, connector in registry.connectors.items():
        if connector.target == target and connector.metadata.platform == platform:
            return name
    raise RecordRefused(
        f"{where}: no configured connector has target {target!r} on platform {platform!r}; "
        "records only change connectors the settings configure"
    )


def _change(registry: ConnectorRegistry, item: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, Mapping):
        raise RecordRefused(f"{where}: each item must be a JSON object")
    name = _find(registry, item, where)
    connector_id = item.get("connectorId")
    expected = registry.connectors[name].metadata.id
    if connector_id != expected:
        raise RecordRefused(
            f"{where}.connectorId: {connector_id!r} does not match connectors.{name} ({expected!r})"
        )
    config, metadata = item.get("config", {}), item.get("metadata", {})
    if not isinstance(config, Mapping) or not isinstance(metadata, Mapping):
        raise RecordRefused(f"{where}: config and metadata must be JSON objects")
    sync, enabled = item.get("syncProfile"), item.get("enabled")
    for member, value in (("syncProfile", sync), ("enabled", enabled)):
        if value is not None and not isinstance(value, bool):
            raise RecordRefused(f"{where}.{member}: must be true or false")
    return name, {
        "config": config_from_logto(config, where),
        "metadata": {("logo_dark" if k == "logoDark" else k): v for k, v in metadata.items()},
        "sync_profile": sync,
        "enabled": enabled,
    }


def import_logto(registry: ConnectorRegistry, items: Iterable[Any]) -> Flow[list[ConnectorRecord]]:
    """Apply Logto-shaped items (a list, e.g. from :func:`export_logto` or Logto's API).

    Every item is validated first; if any is refused, nothing is saved and
    :class:`~.records.RecordRefused` names each problem (``items[i]...``).
    """
    changes: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        where = f"items[{index}]"
        try:
            name, change = _change(registry, item, where)
            yield from registry.update(name, **change, check_only=True)
        except RecordRefused as exc:
            problems.extend(exc.problems)
            continue
        changes.append((name, change))
    if problems:
        raise RecordRefused(problems)
    saved = []
    for name, change in changes:
        saved.append((yield from registry.update(name, **change)))
    return saved
