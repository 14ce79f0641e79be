"""The apps under measurement: the bare Starlette floor, authrelay around it, and the peers.

Every variant serves the same routes with the same small JSON answer, so differences are
the cost of the layer in front. The hand-written peer is built the way the Authlib docs
and tutorials build it (``starlette_client.OAuth`` registry, Starlette's
``SessionMiddleware``, a ``BaseHTTPMiddleware`` that looks the user and token up); it is
here to be measured, never a pattern for ``src/``.

Defends against comparing unequal work: the floor, authrelay and the peers share one
route table; the ASGI scopes are built once and copied per call, the same for all.
"""

from __future__ import annotations

import json
import time
import warnings
from base64 import b64encode
from collections.abc import Awaitable, Callable
from typing import Any

from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authrelay import Settings
from authrelay.identity.session import SessionRecord
from authrelay.relay import Relay

from .idp import AUDIENCE, BenchIdP

__all__ = [
    "SESSION_SECRET",
    "AsgiCall",
    "asgi_call",
    "authlib_peer",
    "bare_app",
    "make_scope",
    "relay_settings",
    "session_cookie",
    "starlette_session_cookie",
    "starlette_session_peer",
]

SESSION_SECRET = "bench-secret-" + "k" * 40
_OK = {"ok": True}

AsgiCall = Callable[[], Awaitable[None]]


async def _open(request: Request) -> Response:
    return JSONResponse(_OK)


async def _whoami(request: Request) -> Response:
    user = request.scope.get("user")
    if user is None:  # the peers keep their user in request.state
        user = getattr(request.state, "user", None)
        return JSONResponse({"subject": user.get("sub") if isinstance(user, dict) else None})
    return JSONResponse({"subject": getattr(user, "subject", None)})


def routes(extra: list[Route] | None = None) -> list[Route]:
    """The shared route table (``/open`` is what every scenario times)."""
    return [Route("/open", _open), Route("/whoami", _whoami), *(extra or [])]


def bare_app(extra: list[Route] | None = None) -> Starlette:
    """Scenario 1's floor: plain Starlette, a small JSON response."""
    return Starlette(routes=routes(extra))


def relay_settings(
    idp: BenchIdP,
    services: dict[str, Any] | None = None,
    store: dict[str, Any] | None = None,
    **extra: Any,
) -> Settings:
    """authrelay settings for the benchmark: session cookies, bearer JWTs, optional services."""
    data: dict[str, Any] = {
        "secret_keys": [SESSION_SECRET],
        # a browser stores the renewed cookie; the benchmark replays one, so renewal is
        # kept out of the measured window (it would otherwise re-seal on every request)
        "session": {"dev_insecure_cookies": True, "renew_after": 1200},
        "bearer": {"issuer": idp.issuer, "audience": [AUDIENCE]},
        "http": {"allow_insecure_loopback": True},
        "client": {"client_id": "bench-client", "client_secret": "bench-client-secret"},
    }
    if services:
        data["services"] = services
    if store:
        data["store"] = store
    data.update(extra)
    return Settings.model_validate(data)


def session_cookie(relay: Relay) -> str:
    """A valid authrelay session cookie (``name=value``) for subject ``alice``."""
    record = SessionRecord(subject="alice", created_at=time.time())
    set_cookie = relay.sync_driver.run(relay.sessions.create(record))
    return set_cookie.split(";", 1)[0]


def starlette_session_cookie(data: dict[str, Any]) -> str:
    """A cookie Starlette's ``SessionMiddleware`` accepts, holding ``data``."""
    signed = TimestampSigner(SESSION_SECRET).sign(b64encode(json.dumps(data).encode()))
    return "session=" + signed.decode()


def starlette_session_peer() -> Starlette:
    """Starlette's ``SessionMiddleware`` around the same routes (the session-cookie peer)."""
    return Starlette(
        routes=routes(), middleware=[Middleware(SessionMiddleware, secret_key=SESSION_SECRET)]
    )


class _TutorialAuth(BaseHTTPMiddleware):
    """What tutorials write: read user and token from the session into ``request.state``."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.user = request.session.get("user")
        request.state.token = request.session.get("token")
        return await call_next(request)


def authlib_peer(idp: BenchIdP) -> Starlette:
    """Hand-written Authlib: ``starlette_client.OAuth`` + ``SessionMiddleware`` + the above."""
    import authlib.deprecate  # installs its own "always" filter at import: do that first

    with warnings.catch_warnings():  # Authlib's integrations warn on import and first use
        warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
        from authlib.integrations.starlette_client import OAuth

        oauth = OAuth()
        oauth.register(
            "idp",
            client_id="bench-client",
            client_secret="bench-client-secret",
            server_metadata_url=f"{idp.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid orders.read"},
        )
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(SessionMiddleware, secret_key=SESSION_SECRET),
            Middleware(_TutorialAuth),
        ],
    )
    app.state.oauth = oauth
    return app


def make_scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """An HTTP scope as uvicorn builds it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


_REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> dict[str, Any]:
    return _REQUEST


async def _discard(message: Any) -> None:
    return None


def asgi_call(app: Any, scope: dict[str, Any]) -> AsgiCall:
    """A zero-argument coroutine function calling ``app`` directly (no server)."""

    async def call() -> None:
        await app(dict(scope), _receive, _discard)

    return call


def asgi_call_each(
    app: Any, path: str, headers: Callable[[], list[tuple[bytes, bytes]]]
) -> AsgiCall:
    """Like :func:`asgi_call`, with headers made anew per call (distinct tokens)."""
    base = make_scope(path)

    async def call() -> None:
        scope = dict(base)
        scope["headers"] = [(b"host", b"127.0.0.1:8000"), *headers()]
        await app(scope, _receive, _discard)

    return call


async def asgi_get(app: Any, scope: dict[str, Any]) -> tuple[int, Any]:
    """Call ``app`` once and return ``(status, decoded JSON body)`` (checks, not timing)."""
    status = 0
    body = bytearray()

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(dict(scope), _receive, send)
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, bytes(body)
