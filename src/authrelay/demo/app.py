"""The demo's example app: a Starlette app wrapped in :class:`~authrelay.AuthRelayMiddleware`.

Pages: ``/signin`` (built in the browser from ``GET /auth/connectors``), ``/`` (profile,
the user's notes through ``services["notes"]``, CodeHost repositories through
``services["repos"]`` once linked, a live status panel, sign-out) and ``/demo/status``
(JSON for the panel). Pages and static files come from ``examples/demo/``.

Defends against: pages of one user served to another (personal pages are
``Cache-Control: no-store`` and everything shown is bound to the session's principal),
markup injection from provider data (every value is HTML-escaped; the sign-in page
builds its list with ``textContent``), and secrets on screen (the panel shows counters,
expiry times and nothing that is a token).
"""

from __future__ import annotations

import html
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..asgi import AuthRelayMiddleware
from ..errors import AuthRelayError, ReauthorizationRequired
from ..principal import Principal
from ..relay import Relay
from ..services import AsyncServiceClient, CallOptions, Services
from ..starlette import get_credentials, get_principal, get_services
from ..testing import IdentityProvider

__all__ = ["DemoPage", "build_app"]

_NO_STORE = {"Cache-Control": "no-store", "Vary": "Cookie"}
_GRANTS = {
    "authorization_code": "authorization_code",
    "refresh_token": "refresh_token",
    "token_exchange": "urn:ietf:params:oauth:grant-type:token-exchange",
}


@dataclass(frozen=True)
class DemoPage:
    """What the pages need besides the relay."""

    example_dir: Path
    accounts: tuple[tuple[str, str], ...]
    """(username, password) pairs shown on the sign-in page."""
    providers: Mapping[str, IdentityProvider]
    """Display name → provider, for the token-endpoint calls the providers saw."""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


class _Pages:
    def __init__(self, relay: Relay, page: DemoPage) -> None:
        self.relay = relay
        self.page = page
        self.prefix = relay.prefix
        templates = page.example_dir / "templates"
        self.signin_template = string.Template((templates / "signin.html").read_text("utf-8"))
        self.home_template = string.Template((templates / "home.html").read_text("utf-8"))

    async def signin(self, request: Request) -> Response:
        if get_principal(request).is_authenticated:
            return RedirectResponse("/", 303, headers=_NO_STORE)
        accounts = ", ".join(
            f'<span class="pair"><kbd>{_e(user)}</kbd> / <kbd>{_e(password)}</kbd></span>'
            for user, password in self.page.accounts
        )
        body = self.signin_template.substitute(
            accounts=accounts,
            prefix=_e(self.prefix),
            connectors=self._connector_list(request.headers.get("accept-language")),
        )
        return HTMLResponse(body, headers=_NO_STORE)

    async def home(self, request: Request) -> Response:
        principal = get_principal(request)
        if not principal.is_authenticated:
            return RedirectResponse("/signin", 303, headers=_NO_STORE)
        services = get_services(request)
        notes = await self._notes(services)
        repos = await self._repos(services)
        body = self.home_template.substitute(
            name=_e(principal.display_name),
            profile=self._profile(principal),
            notes=notes,
            repos=repos,
            prefix=_e(self.prefix),
            csrf_token=_e(self._csrf(principal)),
        )
        return HTMLResponse(body, headers=_NO_STORE)

    def _connector_list(self, language: str | None) -> str:
        """The sign-in list, also without script (``signin.js`` rebuilds it the same way)."""
        registry = getattr(self.relay, "connectors", None)
        if registry is None:
            return '<li class="muted">No connectors.</li>'
        items = []
        for c in registry.routes.connector_items(language):
            dark = c["logo_dark"]
            source = (
                f'<source media="(prefers-color-scheme: dark)" srcset="{_e(dark)}">' if dark else ""
            )
            items.append(
                f'<li><a class="connector" id="connector-{_e(c["id"])}" '
                f'href="{_e(c["login_url"])}?next=%2F"><picture>{source}'
                f'<img src="{_e(c["logo"] or "")}" alt="" width="32" height="32"></picture>'
                f"<span><strong>{_e(c['name'])}</strong>"
                f"<small>{_e(c['description'] or '')}</small></span></a></li>"
            )
        return "".join(items)

    def _csrf(self, principal: Principal) -> str:
        registry = getattr(self.relay, "connectors", None)
        if registry is None or principal.session_id is None:
            return ""
        token: str = registry.csrf_token(principal.session_id)
        return token

    def _profile(self, principal: Principal) -> str:
        claims = principal.claims
        rows = [
            ("Name", principal.display_name),
            ("E-mail", claims.get("email") or "—"),
            ("Subject", principal.subject or "—"),
            ("Signed in with", principal.connector or principal.kind),
        ]
        cells = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
        return f'<dl id="profile">{cells}</dl>'

    def _connect_link(self, error: ReauthorizationRequired, label: str) -> str:
        connector = error.connector or ""
        href = f"{self.prefix}/{connector}/connect?next=/"
        return (
            f'<p class="muted">{_e(label)}</p>'
            f'<a class="button" id="connect-{_e(connector)}" href="{_e(href)}">'
            f"Connect {_e(self._connector_name(connector))}</a>"
        )

    def _connector_name(self, connector: str) -> str:
        settings = self.relay.settings.connectors.get(connector)
        names = settings.name if settings is not None else None
        return (names or {}).get("en", connector)

    async def _notes(self, services: Services[AsyncServiceClient]) -> str:
        try:
            data = await services["notes"].call("/notes")
        except ReauthorizationRequired as exc:
            return self._connect_link(exc, "Notes need your Demo ID.")
        except AuthRelayError as exc:
            return f'<p class="error" id="notes-error">Notes unavailable ({_e(exc.error)}).</p>'
        items = "".join(f"<li>{_e(note)}</li>" for note in data.get("notes", []))
        return f'<ul id="notes">{items or "<li class=muted>No notes yet.</li>"}</ul>'

    async def _repos(self, services: Services[AsyncServiceClient]) -> str:
        try:
            data = await services["repos"].call("/repos")
        except ReauthorizationRequired as exc:
            return self._connect_link(exc, "Link your CodeHost account to list its repositories.")
        except AuthRelayError as exc:
            return f'<p class="error" id="repos-error">CodeHost unavailable ({_e(exc.error)}).</p>'
        items = "".join(
            f"<li><code>{_e(repo.get('full_name', '?'))}</code></li>"
            for repo in data.get("repositories", [])
        )
        return f'<ul id="repos">{items or "<li class=muted>No repositories.</li>"}</ul>'

    async def status(self, request: Request) -> Response:
        """Per-service token state of this caller and what the providers saw (no tokens)."""
        principal = get_principal(request)
        credentials = get_credentials(request)
        now = self.relay.clock()
        services: list[dict[str, Any]] = []
        if principal.is_authenticated:
            for name, runtime in self.relay.services.runtimes.items():
                key = runtime.key(principal, credentials, CallOptions())
                entry = runtime.cache.get(key) if key is not None else None
                services.append(
                    {
                        "service": name,
                        "flow": runtime.flow,
                        "cached": entry is not None,
                        "expires_in": None if entry is None else int(entry.expires_at - now),
                        "next_refresh_in": None if entry is None else int(entry.use_until - now),
                    }
                )
        providers = [
            {
                "provider": label,
                "token_calls": {
                    label: idp.counters.count("token", grant_type=grant)
                    for label, grant in _GRANTS.items()
                },
            }
            for label, idp in self.page.providers.items()
        ]
        return JSONResponse(
            {"signed_in": principal.is_authenticated, "services": services, "providers": providers},
            headers=_NO_STORE,
        )


def build_app(relay: Relay, page: DemoPage) -> AuthRelayMiddleware:
    """The example app behind ``AuthRelayMiddleware`` sharing ``relay``."""
    pages = _Pages(relay, page)
    app = Starlette(
        routes=[
            Route("/", pages.home),
            Route("/signin", pages.signin),
            Route("/demo/status", pages.status),
            Mount("/static", StaticFiles(directory=page.example_dir / "static"), name="static"),
        ]
    )
    return AuthRelayMiddleware(app, relay=relay)
