"""Helpers for the security-requirement tests: a small app behind authrelay on loopback,
a browser that keeps everything it saw, and transports that record (and may rewrite)
what the relay sends to identity providers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from asgi_lifespan import answer_lifespan
from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay._types import Receive, Scope, Send
from authrelay.testing import free_port, serve_asgi
from authrelay.testing.servers import serve_wsgi
from authrelay.wsgi import AuthRelayWSGIMiddleware

KEY = "security-tests-cookie-key-0000000000"

Rewrite = Callable[[httpx.Request, httpx.Response], httpx.Response]


# -- what the relay sends to providers ------------------------------------------------


@dataclass
class Sent:
    """One request the relay made to a provider, and the answer it got."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    answer: bytes = b""

    def form(self) -> dict[str, str]:
        """The form-encoded body (single values)."""
        return {k: v[0] for k, v in parse_qs(self.body.decode("latin-1")).items()}


@dataclass
class Recorder:
    """Keeps every provider request; ``rewrite`` may replace an answer."""

    sent: list[Sent] = field(default_factory=list)
    rewrite: Rewrite | None = None
    before: Callable[[httpx.Request], None] | None = None

    def token_requests(self, grant_type: str | None = None) -> list[Sent]:
        """Requests to a token endpoint (``/token``), optionally of one grant."""
        found = [s for s in self.sent if urlsplit(s.url).path.endswith("/token")]
        if grant_type is not None:
            found = [s for s in found if s.form().get("grant_type") == grant_type]
        return found

    def _keep(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if self.rewrite is not None:
            response = self.rewrite(request, response)
        self.sent.append(
            Sent(
                request.method,
                str(request.url),
                dict(request.headers),
                bytes(request.content),
                response.status_code,
                bytes(response.content),
            )
        )
        return response

    def sync(self) -> httpx.BaseTransport:
        """A sync transport for ``Relay(idp_sync_transport=...)`` (WSGI)."""
        return _SyncRecording(self)

    def asynchronous(self) -> httpx.AsyncBaseTransport:
        """An async transport for ``Relay(idp_transport=...)`` (ASGI)."""
        return _AsyncRecording(self)


class _SyncRecording(httpx.BaseTransport):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        if self.recorder.before is not None:
            self.recorder.before(request)
        response = self.inner.handle_request(request)
        response.read()
        return self.recorder._keep(request, response)

    def close(self) -> None:
        self.inner.close()


class _AsyncRecording(httpx.AsyncBaseTransport):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if self.recorder.before is not None:
            self.recorder.before(request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        return self.recorder._keep(request, response)

    async def aclose(self) -> None:
        await self.inner.aclose()


def replace_json(response: httpx.Response, body: dict[str, Any]) -> httpx.Response:
    """The same answer with another JSON body."""
    return httpx.Response(
        response.status_code,
        headers={"content-type": "application/json", "cache-control": "no-store"},
        content=json.dumps(body).encode(),
    )


# -- what the browser saw ---------------------------------------------------------------


@dataclass
class Seen:
    """One exchange of the browser."""

    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def text(self) -> str:
        """Everything in one string (URL, headers, body)."""
        headers = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.url}\n{self.status}\n{headers}\n{self.body.decode('latin-1')}"


def browser() -> tuple[httpx.Client, list[Seen]]:
    """An httpx client that keeps every response it got (never follows redirects)."""
    seen: list[Seen] = []

    def keep(response: httpx.Response) -> None:
        response.read()
        seen.append(
            Seen(
                str(response.request.url),
                response.status_code,
                list(response.headers.multi_items()),
                response.content,
            )
        )

    client = httpx.Client(follow_redirects=False, timeout=15, event_hooks={"response": [keep]})
    return client, seen


# -- the app ----------------------------------------------------------------------------


def base_settings(base_url: str, connectors: dict[str, Any], **extra: Any) -> Settings:
    """Settings for loopback tests: one key, insecure dev cookies, http providers allowed."""
    data: dict[str, Any] = {
        "secret_keys": [KEY],
        "public_base_url": base_url,
        "session": {"dev_insecure_cookies": True},
        "http": {"allow_insecure_loopback": True},
        "connectors": connectors,
    }
    data.update(extra)
    return Settings.model_validate(data)


def oidc_connector(issuer: str, **extra: Any) -> dict[str, Any]:
    """An OIDC connector at the default test provider client."""
    return {
        "standard": "oidc",
        "issuer": issuer,
        "client_id": "test-client",
        "client_secret": "test-secret",
        **extra,
    }


def _principal_json(principal: Any, services: Any, path: str) -> Any:
    return {
        "path": path,
        "subject": getattr(principal, "subject", None),
        "kind": getattr(principal, "kind", None),
        "actor_chain": list(getattr(principal, "actor_chain", ())),
    }


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Shows who is calling; ``/call/<service>/<path>`` calls a service for them."""
    if scope["type"] == "lifespan":
        return await answer_lifespan(receive, send)
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    services = scope["state"]["services"]
    if path.startswith("/call/"):
        name, _, rest = path[6:].partition("/")
        try:
            answer = await services[name].get("/" + rest)
            payload: Any = {"status": answer.status_code, "body": answer.text}
        except Exception as exc:  # an authrelay error: shown by type only
            payload = {"error": type(exc).__name__}
    else:
        payload = _principal_json(scope.get("user"), services, path)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The WSGI twin of :func:`asgi_app`."""
    path = environ["PATH_INFO"]
    services = environ["authrelay.services"]
    if path.startswith("/call/"):
        name, _, rest = path[6:].partition("/")
        try:
            answer = services[name].get("/" + rest)
            payload: Any = {"status": answer.status_code, "body": answer.text}
        except Exception as exc:
            payload = {"error": type(exc).__name__}
    else:
        payload = _principal_json(environ.get("authrelay.principal"), services, path)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(payload).encode()]


@dataclass
class App:
    """A served app, its relay, a browser that keeps what it saw, and the provider log."""

    base: str
    relay: Relay
    client: httpx.Client
    seen: list[Seen]
    recorder: Recorder

    def start_login(self, connector: str = "idp", action: str = "login", **params: str) -> str:
        """``/auth/<c>/login`` → the provider's authorization URL."""
        start = self.client.get(f"{self.base}/auth/{connector}/{action}", params=params)
        assert start.status_code == 302, start.text
        return str(start.headers["location"])

    def authorize(self, connector: str = "idp", action: str = "login", **params: str) -> str:
        """Start a login and let the provider answer; the callback URL (not visited)."""
        at_idp = self.client.get(self.start_login(connector, action, **params))
        assert at_idp.status_code in (302, 303), at_idp.text
        return str(at_idp.headers["location"])

    def login(self, connector: str = "idp", **params: str) -> httpx.Response:
        """A whole login; the callback's answer."""
        return self.client.get(self.authorize(connector, **params))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET on the app."""
        return self.client.get(f"{self.base}{path}", **kwargs)

    def logout(self) -> httpx.Response:
        """A same-origin logout."""
        return self.client.post(
            f"{self.base}/auth/logout", headers={"origin": self.base, "accept": "application/json"}
        )

    def me(self) -> dict[str, Any]:
        """``GET /auth/me``."""
        response = self.get("/auth/me")
        assert response.status_code == 200, response.text
        return dict(response.json())


@contextmanager
def serve_app(
    settings_for: Callable[[str], Settings],
    *,
    shell: str = "asgi",
    clock: Callable[[], float] = time.time,
    recorder: Recorder | None = None,
) -> Iterator[App]:
    """Serve :func:`asgi_app` or :func:`wsgi_app` behind authrelay on a loopback port."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    recorder = recorder or Recorder()
    relay = Relay(
        settings_for(base),
        clock=clock,
        idp_transport=recorder.asynchronous(),
        idp_sync_transport=recorder.sync(),
    )
    server: AbstractContextManager[str]
    if shell == "wsgi":
        server = serve_wsgi(AuthRelayWSGIMiddleware(wsgi_app, relay=relay), port=port)
    else:
        server = serve_asgi(AuthRelayMiddleware(asgi_app, relay=relay), port=port)
    client, seen = browser()
    try:
        with server, client:
            yield App(base, relay, client, seen, recorder)
    finally:
        relay.close()


def query_of(url: str) -> dict[str, str]:
    """The query parameters of ``url`` (single values)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


__all__ = [
    "KEY",
    "App",
    "Recorder",
    "Seen",
    "Sent",
    "base_settings",
    "browser",
    "oidc_connector",
    "query_of",
    "replace_json",
    "serve_app",
]
