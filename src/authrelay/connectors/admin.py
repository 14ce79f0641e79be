"""The connector admin API under ``{routes.prefix}/admin/connectors`` (``[admin] enabled``).

``GET`` lists connectors or shows one, ``PATCH`` changes one's record (validated by its
config guard), ``POST .../disable`` and ``.../enable`` switch it. Changes are saved in
the store and every worker reads them back (:meth:`ConnectorRegistry.refresh`).

Defends against:

- cross-site requests (CSRF): only a bearer token carrying ``admin.scope`` is accepted;
  a session cookie, however privileged, never is (401), so a browser cannot be made to
  send an authorized request;
- secrets leaking: views show ``client_secret`` / ``private_key`` as ``**********``
  only, and that mask written back means "unchanged"; messages name fields, never values;
- bad input answered with a 500: malformed JSON, unknown members and invalid configs
  get a 400 with an error code and the field paths; a ``target`` change a 409.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._io import Flow
from .._json import JsonError, parse_value
from ..responses import Response, json_response
from ..routing import AuthRequest
from .records import RecordRefused, safe_config

if TYPE_CHECKING:
    from .registry import ConnectorRegistry

__all__ = ["AdminRoutes"]

logger = logging.getLogger("authrelay.connectors.admin")

_PATCH_MEMBERS = frozenset({"config", "metadata", "sync_profile", "enabled"})


def _error(status: int, error: str, description: str, **extra: Any) -> Response:
    return json_response({"error": error, "error_description": description, **extra}, status)


class AdminRoutes:
    """Serves ``/admin/connectors[/{name}[/disable|/enable]]`` for authorized callers."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        self.registry = registry
        self.scope = registry.relay.settings.admin.scope

    def __repr__(self) -> str:
        return f"AdminRoutes(scope={self.scope!r})"

    def _refused(self, request: AuthRequest) -> Response | None:
        identity = request.identity
        if identity.error is not None or identity.principal.kind != "bearer":
            challenge = f'Bearer scope="{self.scope}"'
            if identity.error is not None:
                challenge = f'Bearer error="invalid_token", scope="{self.scope}"'
            response = _error(
                401,
                "unauthorized",
                "the admin API needs a bearer token (a session cookie is not accepted)",
            )
            response.headers.append(("www-authenticate", challenge))
            return response
        if self.scope not in identity.credentials.scopes:
            response = _error(
                403, "insufficient_scope", f"the token must carry the scope {self.scope!r}"
            )
            response.headers.append(
                ("www-authenticate", f'Bearer error="insufficient_scope", scope="{self.scope}"')
            )
            return response
        return None

    def handle(self, request: AuthRequest) -> Flow[Response]:
        """The response for a path under ``/admin/``."""
        parts = request.path.strip("/").split("/")
        if parts[:2] != ["admin", "connectors"] or len(parts) > 4:
            return json_response({"error": "not_found"}, 404)
        refused = self._refused(request)
        if refused is not None:
            return refused
        if len(parts) == 2:
            if request.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            views = [self.view(name) for name in self.registry.connectors]
            return json_response({"connectors": views})
        name = parts[2]
        if name not in self.registry.connectors:
            return _error(404, "unknown_connector", f"no connector is called {name!r}")
        if len(parts) == 4:
            action = parts[3]
            if action not in ("disable", "enable"):
                return json_response({"error": "not_found"}, 404)
            if request.method != "POST":
                return _not_allowed("POST")
            return (yield from self._save(name, {"enabled": action == "enable"}))
        if request.method in ("GET", "HEAD"):
            return json_response(self.view(name))
        if request.method != "PATCH":
            return _not_allowed("GET, PATCH")
        body = self._json_body(request)
        if isinstance(body, Response):
            return body
        return (yield from self._save(name, body))

    @staticmethod
    def _json_body(request: AuthRequest) -> dict[str, Any] | Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _error(415, "unsupported_media_type", "send the change as application/json")
        try:
            body = parse_value(request.body, max_bytes=len(request.body))
        except JsonError as exc:
            why = exc.reason.replace("_", " ")
            return _error(400, "invalid_json", f"the body is not valid JSON ({why})")
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "the body must be a JSON object")
        unknown = sorted(set(body) - _PATCH_MEMBERS)
        if unknown:
            return _error(
                400,
                "invalid_request",
                f"unknown member(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(_PATCH_MEMBERS))}",
            )
        for member in ("config", "metadata"):
            if not isinstance(body.get(member, {}), dict):
                return _error(400, "invalid_request", f"{member} must be a JSON object")
        for member in ("sync_profile", "enabled"):
            if not isinstance(body.get(member, False), bool):
                return _error(400, "invalid_request", f"{member} must be true or false")
        return body

    def _save(self, name: str, body: dict[str, Any]) -> Flow[Response]:
        try:
            yield from self.registry.update(
                name,
                body.get("config"),
                metadata=body.get("metadata"),
                sync_profile=body.get("sync_profile"),
                enabled=body.get("enabled"),
            )
        except RecordRefused as exc:
            logger.info("admin_change_refused connector=%s error=%s", name, exc.error)
            return _error(exc.status, exc.error, "; ".join(exc.problems), problems=exc.problems)
        logger.info("admin_change_saved connector=%s members=%s", name, ",".join(sorted(body)))
        return json_response(self.view(name))

    def view(self, name: str) -> dict[str, Any]:
        """What the API shows of a connector: no secret, only whether one is set."""
        registry = self.registry
        connector = registry.connectors[name]
        record = registry.records[name]
        meta = connector.metadata
        return {
            "id": name,
            "record_id": record.id,
            "connector_id": meta.id,
            "enabled": name not in registry.disabled,
            "target": meta.target,
            "type": meta.type,
            "platform": meta.platform,
            "is_standard": meta.is_standard,
            "name": dict(meta.name),
            "logo": meta.logo,
            "logo_dark": meta.logo_dark,
            "sync_profile": connector.settings.sync_profile,
            "config": safe_config(connector.settings),
            "overrides": {
                "config": sorted(record.config),
                "metadata": sorted(record.metadata),
            },
            "created_at": int(record.created_at),
        }


def _not_allowed(allow: str) -> Response:
    return json_response({"error": "method_not_allowed"}, 405, [("allow", allow)])
