"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) after the local logout.

The end-session request carries ``client_id``, ``id_token_hint`` (the ID token of the
sign-in, kept in the sealed session record), ``post_logout_redirect_uri`` =
``{public_base_url}{prefix}/logout/callback`` and a ``state`` bound to the browser:

1. ``POST {prefix}/logout`` (after the session is gone) stores the request's fields under
   a random ``state`` (sealed, single use, 10 minutes) and sets a cookie holding that
   state; it sends the browser to ``{prefix}/logout/provider``;
2. ``GET {prefix}/logout/provider`` takes the fields (once) and answers a page whose
   form sends them to the provider's ``end_session_endpoint``, by GET (the default: the
   certified oidc-provider accepts only GET unless configured) or, with
   ``end_session_method = "post"``, by POST (§2);
3. ``GET {prefix}/logout/callback?state=…`` compares ``state`` with the cookie in constant
   time, clears the cookie, and only then redirects to ``routes.after_logout``.

Defends against: the ID token in a ``Location`` header, a ``Referer``, a cookie, or a
JSON body for scripts (INV-1): it is only in the form of a ``no-store``, ``no-referrer``
page whose CSP runs only its own one-line script (with ``post``, it is in no URL at all);
a forged or replayed logout return (a ``state`` that is not the browser's own is refused
with ``invalid_state`` and no redirect).
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from .._crypto import constant_time_equals, random_token
from .._io import Flow
from ..errors import CallbackError
from ..identity.cookies import find_cookie
from ..responses import Response, error_response, redirect
from ..routing import AuthRequest
from .connector import Connector

if TYPE_CHECKING:
    from .registry import ConnectorRegistry

__all__ = ["LOGOUT_TTL", "ProviderLogout"]

logger = logging.getLogger("authrelay.connectors.logout")

LOGOUT_TTL = 600
_ENDPOINT = "_end_session_endpoint"
_METHOD = "_method"
_SCRIPT = "document.forms[0].submit();"
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()


class ProviderLogout:
    """The three steps of an RP-initiated logout (see the module docstring)."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        self.registry = registry
        self.settings = registry.relay.settings
        self.cookie_name = f"{registry.relay.sessions.cookie_name}-logout"
        secure = "" if self.settings.session.dev_insecure_cookies else "; Secure"
        self._attributes = f"Path=/; HttpOnly; SameSite=Lax{secure}"
        self.provider_path = f"{self.settings.routes.prefix}/logout/provider"

    def return_uri(self) -> str | None:
        """``post_logout_redirect_uri`` (register it at the provider); None without a base."""
        base = self.settings.public_base_url
        if base is None:
            return None
        return f"{base.rstrip('/')}{self.settings.routes.prefix}/logout/callback"

    def start(self, connector: Connector, id_token: str | None) -> Flow[str | None]:
        """Store the end-session request; the ``Set-Cookie`` binding it, or None when the
        provider has no end-session endpoint (or it cannot be reached: logout goes on)."""
        if connector.kind != "oidc" or not connector.settings.rp_initiated_logout:
            return None
        try:
            endpoints = yield from connector.endpoints()
            if endpoints.end_session is None:
                return None
            state = random_token(32)
            fields = {
                _ENDPOINT: endpoints.end_session,
                _METHOD: connector.settings.end_session_method,
                "client_id": connector.client_id,
            }
            if id_token is not None:
                fields["id_token_hint"] = id_token
            uri = self.return_uri()
            if uri is not None:
                fields.update(post_logout_redirect_uri=uri, state=state)
            store = self.registry.store
            stored = yield from store.put_logout_request(state, fields, ttl=LOGOUT_TTL)
        except Exception as exc:  # the local logout has happened; the provider's is extra
            logger.warning(
                "end_session_skipped connector=%s reason=%s", connector.name, type(exc).__name__
            )
            return None
        if not stored:
            return None
        return f"{self.cookie_name}={state}; Max-Age={LOGOUT_TTL}; {self._attributes}"

    def _bound_state(self, request: AuthRequest) -> str | None:
        value = find_cookie(request.headers.get("cookie", ""), self.cookie_name)
        return value if value and len(value) <= 256 else None

    def to_provider(self, request: AuthRequest) -> Flow[Response]:
        """``GET {prefix}/logout/provider``: the self-submitting end-session form, once."""
        state = self._bound_state(request)
        fields = None
        if state is not None:
            fields = yield from self.registry.store.take_logout_request(state)
        endpoint = fields.pop(_ENDPOINT, None) if fields is not None else None
        if fields is None or endpoint is None:
            return redirect(self.settings.routes.after_logout, 303)
        method = "post" if fields.pop(_METHOD, "get") == "post" else "get"
        if method == "get" and "?" in endpoint:  # a GET form replaces the action's query
            endpoint, _, query = endpoint.partition("?")
            fields = {**dict(parse_qsl(query, keep_blank_values=True)), **fields}
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>Signing out</title></head><body>"
            f'<form method="{method}" action="{html.escape(endpoint)}">{inputs}'
            "<p>Signing you out at your identity provider…</p>"
            '<noscript><button type="submit">Continue</button></noscript></form>'
            f"<script>{_SCRIPT}</script></body></html>"
        ).encode()
        csp = (
            # no form-action: browsers apply it to the provider's redirects after the POST
            f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; "
            "frame-ancestors 'none'"
        )
        return Response(
            200,
            [
                ("content-type", "text/html; charset=utf-8"),
                ("cache-control", "no-store"),
                ("referrer-policy", "no-referrer"),
                ("x-content-type-options", "nosniff"),
                ("content-security-policy", csp),
            ],
            page,
        )

    def returned(self, request: AuthRequest) -> Response:
        """``GET {prefix}/logout/callback``: trusted only with the browser's own state."""
        expected = self._bound_state(request)
        state = request.param("state")
        if expected is not None and state is not None and constant_time_equals(state, expected):
            response = redirect(self.settings.routes.after_logout, 303)
        else:
            logger.warning("logout_return_refused reason=state")
            error = CallbackError("invalid_state", "this sign-out was not started in this browser")
            response = error_response(error, accept=request.headers.get("accept"))
        response.set_cookie(f"{self.cookie_name}=; Max-Age=0; {self._attributes}")
        return response
