"""The routes under ``routes.prefix``: connectors list, login, connect, callback, logout, me,
and (OIDC) back-channel logout (:mod:`.backchannel`).

Defends against:

- cross-site logout (SE-07): ``POST`` only (``GET`` → 405); an ``Origin`` or
  ``Sec-Fetch-Site`` that is not this site → 403; a client that sends neither must
  present the session's CSRF token (``csrf_token`` form field or ``X-CSRF-Token``);
- sessions surviving logout (SE-06, RV-01, RV-02): local state first (session record
  and stored tokens deleted), then best-effort RFC 7009 revocation of the refresh and
  access tokens, then RP-initiated logout for OIDC providers (:mod:`.rplogout`); the
  cookie is cleared with its own attributes and ``Max-Age=0``;
- a provider that holds up logouts (RV-02, RV-03): one revocation attempt per token
  during the request, bounded by a short timeout; a 503 (after its ``Retry-After``) or
  no answer is retried after the response by a background follow-up, at most
  :data:`REVOKE_RETRIES` times; ``unsupported_token_type`` is logged at INFO and not
  retried; the logout succeeds whatever the provider does;
- token leaks through ``/me`` (INV-1): it lists linked connectors and scopes, never a
  token; nothing here puts an ID token in a URL or a JSON body.

Route matching uses the path the shell got from the server (TR-04), never a URL
rebuilt from ``Host``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from .. import _io
from .._crypto import constant_time_equals
from .._io import Flow
from .._json import parse_object
from ..errors import CallbackError
from ..responses import Response, error_response, json_response, redirect, wants_html
from ..routing import AuthRequest
from ..stores.tokens import StoredTokens
from ..tokens.endpoint import delay_seconds
from .admin import AdminRoutes
from .assets import ASSET_ROUTES, asset_url, serve_asset
from .backchannel import LogoutTokenRejected, validate_logout_token
from .connector import Connector
from .login import LoginFlows
from .metadata import best_locale_text
from .rplogout import ProviderLogout

if TYPE_CHECKING:
    from .registry import ConnectorRegistry

__all__ = ["ConnectorRoutes"]

logger = logging.getLogger("authrelay.connectors.routes")

REVOKE_RETRIES = 3
"""Background retries of a revocation answered 503 or not answered (RV-02)."""
_DEFAULT_RETRY_AFTER = 2.0
_MAX_RETRY_AFTER = 60.0
_INLINE_TIMEOUT = 3.0
"""The first revocation attempt, during the logout request, waits at most this long."""


@dataclass(frozen=True, slots=True)
class _Revocation:
    connector: Connector
    url: str
    token: str = field(repr=False)
    hint: str


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class ConnectorRoutes:
    """Dispatches requests under the prefix to the connector flows."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        self.registry = registry
        self.relay = registry.relay
        self.settings = registry.relay.settings
        self.flows = LoginFlows(registry)
        self.provider_logout = ProviderLogout(registry)
        self.admin = AdminRoutes(registry)

    def __repr__(self) -> str:
        return f"ConnectorRoutes(prefix={self.settings.routes.prefix!r})"

    def handle(self, request: AuthRequest) -> Flow[Response]:
        """The response for a request under the prefix (a flow)."""
        try:
            request.query()
            request.form()
        except CallbackError as too_many:  # more than 64 parameters
            response = error_response(too_many, accept=request.headers.get("accept"))
            response.headers.append(("referrer-policy", "no-referrer"))
            return response
        path = request.path
        yield from self.registry.refresh()
        if path.startswith("/admin/") and self.settings.admin.enabled:
            return (yield from self.admin.handle(request))
        if path == "/connectors":
            return self._only_get(request) or self.list_connectors(request)
        if path == "/me":
            return self._only_get(request) or (yield from self.me(request))
        if path == "/logout":
            return (yield from self.logout(request))
        if path == "/logout/provider":
            return self._only_get(request) or (yield from self.provider_logout.to_provider(request))
        if path == "/logout/callback":
            return self._only_get(request) or self.provider_logout.returned(request)
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "connectors" and parts[2] in ASSET_ROUTES:
            known = self.registry.get(parts[1])
            if known is not None:
                return self._only_get(request) or serve_asset(known.metadata, parts[2], request)
        if len(parts) == 2:
            connector = self.registry.is_enabled(parts[0])
            action = parts[1]
            if (
                connector is not None
                and action == "backchannel-logout"
                and connector.kind == "oidc"
                and connector.settings.backchannel_logout
            ):
                return (yield from self.backchannel_logout(connector, request))
            if connector is not None and action in ("login", "connect", "callback"):
                rejected = self._only_get(request)
                if rejected is not None:
                    return rejected
                if action == "callback":
                    return (yield from self.flows.callback(connector, request))
                return (
                    yield from self.flows.login(connector, request, connect=action == "connect")
                )
        return json_response({"error": "not_found"}, 404)

    @staticmethod
    def _only_get(request: AuthRequest) -> Response | None:
        if request.method in ("GET", "HEAD"):
            return None
        return json_response({"error": "method_not_allowed"}, 405, [("allow", "GET")])

    # -- back-channel logout (OIDC Back-Channel Logout 1.0) -------------------------------

    def backchannel_logout(self, connector: Connector, request: AuthRequest) -> Flow[Response]:
        """End the sessions a valid logout token names; 400 for any invalid token (ID-11)."""
        if request.method != "POST":
            return json_response({"error": "method_not_allowed"}, 405, [("allow", "POST")])
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        tokens = request.form().get("logout_token") or []
        if content_type != "application/x-www-form-urlencoded" or len(tokens) != 1:
            return _logout_refused("request")
        endpoints = yield from connector.endpoints()
        now = self.relay.clock()
        try:
            token = yield from validate_logout_token(connector, endpoints, tokens[0], now=now)
        except LogoutTokenRejected as exc:
            return _logout_refused(exc.reason, connector.name)
        leeway = connector.settings.leeway
        remember = max(connector.settings.iat_max_age, (token.expires_at or now) - now) + leeway
        store = self.registry.store
        fresh = yield from store.use_logout_token_id(token.issuer, token.jti, ttl=remember)
        if not fresh:
            return _logout_refused("replayed_jti", connector.name)
        by, value = ("sid", token.sid) if token.sid is not None else ("sub", token.sub or "")
        keys = yield from store.take_sessions(connector.name, token.issuer, by, value)
        ended = 0
        for key in keys:
            ended += bool((yield from self.relay.sessions.destroy_key(key)))
        self.relay.metrics.incr("backchannel_logouts", target=connector.name, flow="connector")
        logger.info("backchannel_logout connector=%s by=%s sessions=%d", connector.name, by, ended)
        return json_response({})

    # -- connectors list and me ---------------------------------------------------------

    def list_connectors(self, request: AuthRequest) -> Response:
        """JSON for login pages, in the caller's best ``Accept-Language``."""
        items = self.connector_items(request.headers.get("accept-language"))
        response = json_response({"connectors": items})
        response.headers.append(("vary", "Accept-Language"))
        return response

    def connector_items(self, language: str | None) -> list[dict[str, Any]]:
        """What ``GET {prefix}/connectors`` lists, for ``language`` (an Accept-Language)."""
        prefix = self.settings.routes.prefix
        items = []
        for name, connector in self.registry.connectors.items():
            if name in self.registry.disabled:
                continue
            meta = connector.metadata
            items.append(
                {
                    "id": name,
                    "connector_id": meta.id,
                    "target": meta.target,
                    "type": meta.type,
                    "platform": meta.platform,
                    "name": best_locale_text(meta.name, language) or name,
                    "description": best_locale_text(meta.description, language),
                    "logo": asset_url(prefix, name, meta, "logo"),
                    "logo_dark": asset_url(prefix, name, meta, "logo-dark"),
                    "readme": asset_url(prefix, name, meta, "readme"),
                    "login_url": f"{prefix}/{name}/login",
                }
            )
        return items

    def me(self, request: AuthRequest) -> Flow[Response]:
        """The principal and linked connectors (no tokens)."""
        principal = request.identity.principal
        if not principal.is_authenticated:
            return json_response({"authenticated": False})
        body: dict[str, Any] = {
            "authenticated": True,
            "kind": principal.kind,
            "subject": principal.subject,
            "issuer": principal.issuer,
            "connector": principal.connector,
            "profile": dict(principal.claims) if principal.kind == "session" else {},
            "connectors": [],
        }
        if principal.kind == "session" and principal.subject is not None:
            records = yield from self.registry.store.list_tokens(
                principal.subject, self.registry.issuers()
            )
            body["connectors"] = [record.public() for record in records]
            if principal.session_id is not None:
                body["csrf_token"] = self.registry.csrf_token(principal.session_id)
        return json_response(body)

    # -- logout -------------------------------------------------------------------------

    def _expected_origin(self, request: AuthRequest) -> str:
        base = self.settings.public_base_url
        if base is not None:
            return _origin_of(base)
        return f"{request.scheme}://{request.headers.get('host', '')}".lower()

    def _same_site(self, request: AuthRequest) -> bool:
        origin = request.headers.get("origin")
        if origin is not None:
            return origin.lower() == self._expected_origin(request)
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            return site == "same-origin"
        session_id = request.identity.principal.session_id
        if session_id is None:
            return True  # nothing to log out of: no state can be changed
        token = request.headers.get("x-csrf-token")
        if token is None:
            values = request.form().get("csrf_token") or []
            token = values[0] if len(values) == 1 else None
        return token is not None and constant_time_equals(
            token, self.registry.csrf_token(session_id)
        )

    def logout(self, request: AuthRequest) -> Flow[Response]:
        """End the session, revoke refresh tokens, and maybe log out at the provider."""
        if request.method != "POST":  # SE-07
            return json_response({"error": "method_not_allowed"}, 405, [("allow", "POST")])
        if not self._same_site(request):
            logger.warning("logout_cross_site_refused")
            return json_response({"error": "forbidden"}, 403)
        principal = request.identity.principal
        end_session: str | None = None
        bound: str | None = None
        revoked: list[tuple[Connector, StoredTokens]] = []
        if principal.kind == "session" and principal.session_id is not None:
            user = principal.subject or ""
            session = yield from self.relay.sessions.load(principal.session_id)
            records = yield from self.registry.store.list_tokens(user, self.registry.issuers())
            for record in records:  # RV-02: local state first
                yield from self.registry.store.delete_tokens(user, record.connector)
                connector = self.registry.get(record.connector)
                if connector is not None:
                    revoked.append((connector, record))
                    yield from self.registry.events.emit("revoked", connector.name, user, "logout")
            yield from self.relay.sessions.destroy(principal.session_id)  # SE-06
            later: list[tuple[_Revocation, float]] = []
            for connector, record in revoked:
                later.extend((yield from self._revoke_all(connector, record)))
            if later:  # RV-02: retried after the response, never before it
                yield _io.Spawn("revocation", lambda: self.revoke_later(later))
            session_connector = self.registry.get(principal.connector or "")
            if session_connector is not None:  # RP-initiated logout, see .rplogout
                hint = session.id_token if session is not None else None
                bound = yield from self.provider_logout.start(session_connector, hint)
                end_session = self.provider_logout.provider_path if bound else None
        after = self.settings.routes.after_logout
        if wants_html(request.headers.get("accept")):
            response = redirect(end_session or after, 303)
        else:
            response = json_response({"logged_out": True, "redirect": end_session or after})
        response.set_cookie(self.relay.sessions.clear_cookie())
        if bound is not None:
            response.set_cookie(bound)
        return response

    def _revoke_all(
        self, connector: Connector, record: StoredTokens
    ) -> Flow[list[tuple[_Revocation, float]]]:
        """Revoke a record's tokens once each; return those to retry, with their delays."""
        try:
            endpoints = yield from connector.endpoints()
        except Exception:
            logger.warning("revocation_skipped connector=%s reason=metadata", connector.name)
            return []
        if endpoints.revocation is None:
            return []
        retries: list[tuple[_Revocation, float]] = []
        # RV-01: the refresh token first, then the access token
        for token, hint in (
            (record.refresh_token, "refresh_token"),
            (record.access_token, "access_token"),
        ):
            if token is not None:
                revocation = _Revocation(connector, endpoints.revocation, token, hint)
                timeout = min(connector.http.token_timeout, _INLINE_TIMEOUT)
                delay = yield from self._revoke(revocation, timeout)
                if delay is not None:
                    retries.append((revocation, delay))
        return retries

    def _revoke(self, revocation: _Revocation, timeout: float) -> Flow[float | None]:
        """One revocation request: the delay before trying again, or None when done."""
        connector, hint = revocation.connector, revocation.hint
        data = {"token": revocation.token, "token_type_hint": hint}  # RFC 7009 §2.1
        try:
            response: httpx.Response = yield from _io.send(
                connector.token_request(revocation.url, data),
                max_bytes=connector.http.max_token_bytes,
                total_timeout=timeout,
            )
        except _io.TransportFailure as exc:
            reason = "timeout" if exc.timeout else "transport"
            logger.warning(
                "revocation_failed connector=%s hint=%s reason=%s", connector.name, hint, reason
            )
            return _DEFAULT_RETRY_AFTER  # revoking twice is harmless (RFC 7009 §2.2)
        except _io.ResponseTooLarge:
            logger.warning(
                "revocation_failed connector=%s hint=%s reason=size", connector.name, hint
            )
            return None
        if response.status_code == 200:  # RFC 7009 §2.2: success whatever the body
            return None
        if _oauth_error(response) == "unsupported_token_type":  # RV-03, RFC 7009 §2.2.1
            logger.info("revocation_unsupported connector=%s hint=%s", connector.name, hint)
            return None
        if response.status_code == 503:  # RFC 7009 §2.2.1: try again later
            return _retry_after(response)
        logger.warning(
            "revocation_failed connector=%s hint=%s status=%d",
            connector.name,
            hint,
            response.status_code,
        )
        return None

    def revoke_later(self, pending: list[tuple[_Revocation, float]]) -> Flow[None]:
        """The background follow-up of a logout: each revocation retried at most
        :data:`REVOKE_RETRIES` times, after the delay its last answer asked for (RV-02)."""
        for revocation, first_delay in pending:
            delay: float | None = first_delay
            for _ in range(REVOKE_RETRIES):
                if delay is None:
                    break
                yield _io.Sleep(delay)
                delay = yield from self._revoke(revocation, revocation.connector.http.token_timeout)
            if delay is not None:
                logger.warning(
                    "revocation_gave_up connector=%s hint=%s attempts=%d",
                    revocation.connector.name,
                    revocation.hint,
                    REVOKE_RETRIES + 1,
                )


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        body = parse_object(response.content, max_bytes=len(response.content))
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


def _retry_after(response: httpx.Response) -> float:
    seconds = delay_seconds(response)
    if seconds is None:
        return _DEFAULT_RETRY_AFTER
    return min(float(seconds), _MAX_RETRY_AFTER)


def _logout_refused(reason: str, connector: str | None = None) -> Response:
    logger.warning("backchannel_logout_refused connector=%s reason=%s", connector, reason)
    return json_response(
        {"error": "invalid_request", "error_description": "the logout token is not valid"}, 400
    )
