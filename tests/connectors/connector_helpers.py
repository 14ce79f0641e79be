"""Helpers: the app under uvicorn (or werkzeug) in front of the test identity provider."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from asgi_lifespan import answer_lifespan
from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay.testing import FakeClock, IdentityProvider, free_port, serve_asgi
from authrelay.testing.servers import serve_wsgi

KEY = "connector-tests-secret-key-000000"


def app_settings(idp_issuer: str, base_url: str, **extra: Any) -> Settings:
    """Settings with one OIDC connector ``idp`` at the test provider."""
    connector: dict[str, Any] = {
        "standard": "oidc",
        "issuer": idp_issuer,
        "client_id": "test-client",
        "client_secret": "test-secret",
    }
    connector.update(extra.pop("connector", {}))
    data: dict[str, Any] = {
        "secret_keys": [KEY],
        "public_base_url": base_url,
        "session": {"dev_insecure_cookies": True},
        "http": {"allow_insecure_loopback": True},
        "connectors": {"idp": connector},
    }
    data.update(extra)
    return Settings.model_validate(data)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app that shows who is calling."""
    if scope["type"] == "lifespan":
        return await answer_lifespan(receive, send)
    if scope["type"] != "http":
        return
    user = scope.get("user")
    body = json.dumps({"path": scope["path"], "subject": getattr(user, "subject", None)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi_echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A plain WSGI app that shows who is calling."""
    principal = environ.get("authrelay.principal")
    body = json.dumps(
        {"path": environ["PATH_INFO"], "subject": getattr(principal, "subject", None)}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@dataclass
class Running:
    """An app served over loopback, its relay, and a browser-like client."""

    base: str
    relay: Relay
    client: httpx.Client

    def login(self, next_path: str = "/", connector: str = "idp") -> httpx.Response:
        """Run login → provider → callback; return the callback's response."""
        start = self.client.get(f"{self.base}/auth/{connector}/login", params={"next": next_path})
        assert start.status_code == 302, start.text
        at_idp = self.client.get(start.headers["location"])
        assert at_idp.status_code in (302, 303), at_idp.text
        return self.client.get(at_idp.headers["location"])

    def authorize(self, path: str = "/auth/idp/login", **params: str) -> str:
        """Start a login and let the provider answer; return the callback URL (not visited)."""
        start = self.client.get(f"{self.base}{path}", params=params)
        assert start.status_code == 302, start.text
        at_idp = self.client.get(start.headers["location"])
        assert at_idp.status_code in (302, 303), at_idp.text
        return str(at_idp.headers["location"])

    def me(self) -> dict[str, Any]:
        """``GET /auth/me``."""
        response = self.client.get(f"{self.base}/auth/me")
        assert response.status_code == 200
        return dict(response.json())


@dataclass
class Timed:
    """Alice signed in to the app; provider and app share the clock ``clock``."""

    idp: IdentityProvider
    clock: FakeClock
    app: Running


def query_of(url: str) -> dict[str, str]:
    """The query parameters of ``url`` (single values)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def jwt_payload(token: str) -> dict[str, Any]:
    """The payload of a JWT without verifying it (test inspection only)."""
    segment = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


@contextmanager
def run_app(
    idp: IdentityProvider,
    *,
    wsgi: bool = False,
    clock: Callable[[], float] | None = None,
    transport: httpx.BaseTransport | None = None,
    port: int | None = None,
    **settings_extra: Any,
) -> Iterator[Running]:
    """Serve the echo app behind authrelay on a loopback port (``port``, else a free one).

    ``transport`` carries the relay's sync traffic to the provider (see :class:`Intercept`).
    """
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    settings = app_settings(idp.issuer, base, **settings_extra)
    relay = Relay(settings, clock=clock or time.time, idp_sync_transport=transport)
    if wsgi:
        from authrelay.wsgi import AuthRelayWSGIMiddleware

        server: AbstractContextManager[str] = serve_wsgi(
            AuthRelayWSGIMiddleware(wsgi_echo_app, relay=relay), port=port
        )
    else:
        server = serve_asgi(AuthRelayMiddleware(echo_app, relay=relay), port=port)
    try:
        with server, httpx.Client(follow_redirects=False, timeout=10) as client:
            yield Running(base, relay, client)
    finally:
        relay.close()


__all__ = ["Running", "Timed", "app_settings", "jwt_payload", "query_of", "run_app"]


def refresh_count(idp: IdentityProvider, expected: int) -> int:
    """The provider's refresh-grant count once it reaches ``expected`` (or after 5 s).

    The provider counts a request after its answer is sent, so a client can be a moment
    ahead of the counter; this waits for the count instead of racing it.
    """
    deadline = time.monotonic() + 5
    while True:
        count = idp.counters.count(endpoint="token", grant_type="refresh_token")
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


# -- sign-in hooks, importable by path ("connector_helpers:app_user_id") ---------------

SIGN_INS: list[tuple[str, str]] = []
"""(external sub, connector) of every call to the hooks below."""


def app_user_id(profile: Any, connector: str) -> str:
    """A sync ``on_sign_in``: the app's own user id for a profile."""
    SIGN_INS.append((profile.sub, connector))
    return f"user-{profile.sub}"


async def async_app_user_id(profile: Any, connector: str) -> str:
    """An async ``on_sign_in`` (ASGI only)."""
    SIGN_INS.append((profile.sub, connector))
    return f"async-user-{profile.sub}"


class Intercept(httpx.BaseTransport):
    """Real HTTP to the provider, with a test's hands on refresh-grant requests.

    ``before(request, n)`` runs before the n-th refresh request goes out (another worker
    acting meanwhile); ``after(request, response, n)`` may replace its answer.
    """

    def __init__(
        self,
        *,
        before: Callable[[httpx.Request, int], None] | None = None,
        after: Callable[[httpx.Request, httpx.Response, int], httpx.Response] | None = None,
    ) -> None:
        self.inner = httpx.HTTPTransport()
        self.before = before
        self.after = after
        self.refreshes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        refresh = b"grant_type=refresh_token" in request.content
        if refresh:
            self.refreshes += 1
            if self.before is not None:
                self.before(request, self.refreshes)
        response = self.inner.handle_request(request)
        if refresh and self.after is not None:
            response.read()
            return self.after(request, response, self.refreshes)
        return response

    def close(self) -> None:
        self.inner.close()
