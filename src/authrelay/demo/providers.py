"""The demo's stand-ins for the outside world: two identity providers and two APIs.

- the sign-in provider (``idp``): :class:`~authrelay.testing.IdentityProvider` with its
  HTML login form, two users, and the ``api://notes`` resource;
- "CodeHost": a second provider instance with its own users and the ``api://repos``
  resource, plus a tiny API at ``/api/repos`` on the same origin;
- the notes API: answers only bearer tokens for ``api://notes`` with ``notes.read``.

Both APIs are guarded by authrelay's own bearer middleware (JWT signature from the
issuer's JWKS, exact issuer and audience, RFC 9068 profile, required scope), so they
defend against what a real resource server must: tokens from another issuer, for
another audience, or without the scope are refused (401/403), and each caller sees only
the records of the ``sub`` its token names (no cross-user reads).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._types import ASGIApp, Receive, Scope, Send
from ..asgi import AuthRelayMiddleware
from ..settings import BearerSettings, HttpSettings, Settings
from ..starlette import get_principal, requires
from ..testing import IdentityProvider, OAuthClient, Resource, TestUser
from ..testing.models import GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_TOKEN_EXCHANGE

__all__ = [
    "ACCESS_TOKEN_TTL",
    "CODEHOST_USERS",
    "DEMO_USERS",
    "NOTES",
    "REPOSITORIES",
    "DemoUser",
    "api_settings",
    "codehost_app",
    "make_provider",
    "notes_api",
    "notes_resource",
    "repos_resource",
]

NOTES_AUDIENCE = "api://notes"
REPOS_AUDIENCE = "api://repos"
ACCESS_TOKEN_TTL = 180
"""Short on purpose: the status panel shows a refresh within a few minutes."""


@dataclass(frozen=True)
class DemoUser:
    """A user of a demo provider; the password is shown on the sign-in page."""

    sub: str
    username: str
    password: str
    name: str
    email: str

    def test_user(self) -> TestUser:
        """The provider-side registration."""
        return TestUser(
            sub=self.sub,
            username=self.username,
            password=self.password,
            name=self.name,
            email=self.email,
        )


DEMO_USERS = (
    DemoUser("u-alice", "alice", "wonderland", "Alice Liddell", "alice@example.test"),
    DemoUser("u-bob", "bob", "builder", "Bob Builder", "bob@example.test"),
)
CODEHOST_USERS = (
    DemoUser("ch-1001", "alice", "wonderland", "alice (CodeHost)", "alice@code.example.test"),
    DemoUser("ch-1002", "bob", "builder", "bob (CodeHost)", "bob@code.example.test"),
)
NOTES: Mapping[str, tuple[str, ...]] = {
    "u-alice": ("Follow the white rabbit", "Tea party at six", "Ask the cat for directions"),
    "u-bob": ("Fix the roof on Tuesday", "Order more bricks"),
}
REPOSITORIES: Mapping[str, tuple[str, ...]] = {
    "ch-1001": ("alice/looking-glass", "alice/croquet-scores"),
    "ch-1002": ("bob/can-we-fix-it", "bob/scoop-telemetry"),
}


def make_provider(
    *,
    issuer: str,
    users: tuple[DemoUser, ...],
    client_id: str,
    client_secret: str,
    app_url: str,
    connector: str,
    resource: Resource,
    exchange: bool = False,
) -> IdentityProvider:
    """A provider with a login form and one registered client: the demo app (which may
    also exchange tokens when ``exchange``)."""
    grants = (GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN)
    client = OAuthClient(
        client_id=client_id,
        client_secret=client_secret,
        grant_types=(*grants, GRANT_TOKEN_EXCHANGE) if exchange else grants,
        redirect_uris=[f"{app_url}/auth/{connector}/callback"],
        post_logout_redirect_uris=[f"{app_url}/", f"{app_url}/auth/logout/callback"],
    )
    return IdentityProvider(
        issuer=issuer,
        clients=[client],
        users=[user.test_user() for user in users],
        resources=[resource],
        login_form=True,
        access_token_ttl=ACCESS_TOKEN_TTL,
    )


def api_settings(issuer: str, audience: str, scope: str) -> Settings:
    """Settings of a resource server that accepts only ``issuer``'s tokens for ``audience``."""
    return Settings(
        secret_keys=[secrets.token_urlsafe(32)],  # per run: these APIs keep no sessions
        http=HttpSettings(allow_insecure_loopback=True),
        bearer=BearerSettings(issuer=issuer, audience=[audience], required_scopes=[scope]),
    )


def _owned_by_caller(request: Request, data: Mapping[str, tuple[str, ...]]) -> list[str]:
    sub = get_principal(request).claims.get("sub")
    return list(data.get(sub, ())) if isinstance(sub, str) else []


def notes_api(issuer: str) -> ASGIApp:
    """``GET /notes``: the caller's own notes; only ``api://notes`` tokens with ``notes.read``."""

    @requires("notes.read", redirect_to_login=False)
    async def notes(request: Request) -> Response:
        sub = get_principal(request).claims.get("sub")
        return JSONResponse({"owner": sub, "notes": _owned_by_caller(request, NOTES)})

    app = Starlette(routes=[Route("/notes", notes)])
    settings = api_settings(issuer, NOTES_AUDIENCE, "notes.read")
    return AuthRelayMiddleware(app, settings=settings)


def _repos_api(issuer: str) -> ASGIApp:
    @requires("repo.read", redirect_to_login=False)
    async def repos(request: Request) -> Response:
        sub = get_principal(request).claims.get("sub")
        names = _owned_by_caller(request, REPOSITORIES)
        return JSONResponse({"owner": sub, "repositories": [{"full_name": n} for n in names]})

    app = Starlette(routes=[Route("/api/repos", repos)])
    settings = api_settings(issuer, REPOS_AUDIENCE, "repo.read")
    return AuthRelayMiddleware(app, settings=settings)


def codehost_app(provider: IdentityProvider) -> ASGIApp:
    """CodeHost's origin: its API under ``/api/``, its authorization server elsewhere."""
    api = _repos_api(provider.issuer)
    oauth = provider.app

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path: Any = scope.get("path", "")
        if scope["type"] == "lifespan" or str(path).startswith("/api/"):
            await api(scope, receive, send)
        else:
            await oauth(scope, receive, send)

    return app


def notes_resource() -> Resource:
    """The notes API as the sign-in provider knows it."""
    return Resource(NOTES_AUDIENCE, scopes=("notes.read",))


def repos_resource() -> Resource:
    """CodeHost's API as CodeHost's provider knows it."""
    return Resource(REPOS_AUDIENCE, scopes=("repo.read",))
