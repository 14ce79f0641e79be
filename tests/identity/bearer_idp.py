"""A small identity provider for the bearer-token tests: discovery, JWKS, introspection.

It serves real HTTP (under uvicorn, see the fixtures in the test modules) and lets tests
mint well-formed and deliberately broken tokens with keys made by joserfc.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
import httpx
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authrelay._io import SyncDriver
from authrelay.testing import FakeClock
from authrelay.testing.servers import serve_asgi

AUDIENCE = "api://orders"
_RSA_1 = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
_EC_1 = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
CLIENT_ID = "orders-api"
CLIENT_SECRET = "s3cr:et%+ x"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_raw(header_json: str, payload_json: str, key: Any, alg: str) -> str:
    """Sign exactly these JSON texts (duplicates, odd types and all)."""
    signing_input = f"{b64(header_json.encode())}.{b64(payload_json.encode())}"
    signature = JWSRegistry.algorithms[alg].sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


@dataclass
class MiniIdP:
    """State of the test identity provider; ``app`` serves it."""

    issuer: str
    clock: FakeClock
    keys: dict[str, Any] = field(default_factory=dict)
    published: list[dict[str, Any]] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    faults: dict[str, Callable[[], Response]] = field(default_factory=dict)
    introspection: dict[str, dict[str, Any]] = field(default_factory=dict)
    introspection_requests: list[tuple[dict[str, str], dict[str, str]]] = field(
        default_factory=list
    )
    metadata_overrides: dict[str, Any] = field(default_factory=dict)
    oidc_discovery: bool = True
    gate: threading.Event | None = None
    """When set, JWKS and introspection answers wait for it (to make requests overlap)."""

    def __post_init__(self) -> None:
        self.add_key("rsa-1", _RSA_1)
        self.add_key("ec-1", _EC_1)

    # keys ---------------------------------------------------------------------------
    def add_key(self, kid: str, key: Any, *, publish: dict[str, Any] | None = None) -> None:
        self.keys[kid] = key
        self.published.append(publish or key.as_dict(private=False))

    def rotate(self) -> str:
        kid = f"rsa-{uuid.uuid4().hex[:8]}"
        self.add_key(kid, RSAKey.generate_key(2048, parameters={"kid": kid}))
        return kid

    # tokens -------------------------------------------------------------------------
    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock.now)
        base: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": AUDIENCE,
            "client_id": "web-app",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "scope": "orders.read profile",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not DROP}

    def mint(
        self,
        *,
        kid: str | None = "rsa-1",
        alg: str | None = None,
        header: dict[str, Any] | None = None,
        key: Any = None,
        **claims: Any,
    ) -> str:
        signing_key = key if key is not None else self.keys[kid or "rsa-1"]
        if alg is None:
            alg = "ES256" if isinstance(signing_key, ECKey) else "RS256"
        head: dict[str, Any] = {"alg": alg, "typ": "at+jwt"}
        if kid is not None:
            head["kid"] = kid
        head.update(header or {})
        head = {k: v for k, v in head.items() if v is not DROP}
        return sign_raw(json.dumps(head), json.dumps(self.claims(**claims)), signing_key, alg)

    # HTTP ---------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        doc = {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "token_endpoint": f"{self.issuer}/token",
            "introspection_endpoint": f"{self.issuer}/introspect",
        }
        doc.update(self.metadata_overrides)
        return {k: v for k, v in doc.items() if v is not DROP}

    def _fault(self, name: str) -> Response | None:
        self.counters[name] += 1
        fault = self.faults.get(name)
        return fault() if fault else None

    async def _openid(self, request: Request) -> Response:
        if (fault := self._fault("openid")) is not None:
            return fault
        if not self.oidc_discovery:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(self.metadata())

    async def _oauth(self, request: Request) -> Response:
        if (fault := self._fault("oauth")) is not None:
            return fault
        return JSONResponse(self.metadata())

    async def _jwks(self, request: Request) -> Response:
        if (fault := self._fault("jwks")) is not None:
            return fault
        if self.gate is not None:
            await anyio.to_thread.run_sync(self.gate.wait, 5)
        return JSONResponse({"keys": self.published})

    async def _introspect(self, request: Request) -> Response:
        if (fault := self._fault("introspect")) is not None:
            return fault
        if self.gate is not None:
            await anyio.to_thread.run_sync(self.gate.wait, 5)
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        self.introspection_requests.append((dict(request.headers), form))
        expected = "Basic " + base64.b64encode(b"orders-api:s3cr%3Aet%25%2B+x").decode()
        basic_ok = request.headers.get("authorization") == expected
        post_ok = form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET
        if not (basic_ok or post_ok):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse(self.introspection.get(form.get("token", ""), {"active": False}))

    def routes(self, prefix: str) -> list[Route]:
        return [
            Route(f"{prefix}/.well-known/openid-configuration", self._openid),
            Route(f"/.well-known/oauth-authorization-server{prefix}", self._oauth),
            Route(f"{prefix}/jwks", self._jwks),
            Route(f"{prefix}/introspect", self._introspect, methods=["POST"]),
        ]


class DROPPED:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = DROPPED()
"""Pass as a claim or header value to leave that member out."""


class Dispatcher:
    """One loopback server for the whole test session; each test installs its own IdP."""

    def __init__(self) -> None:
        self.app: Starlette | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.app is not None
        await self.app(scope, receive, send)


@contextmanager
def idp_server() -> Iterator[tuple[str, Dispatcher]]:
    dispatcher = Dispatcher()
    with serve_asgi(dispatcher) as base_url:
        yield base_url, dispatcher


def install(dispatcher: Dispatcher, base_url: str, clock: FakeClock, path: str = "") -> MiniIdP:
    idp = MiniIdP(issuer=f"{base_url}{path}", clock=clock)
    dispatcher.app = Starlette(routes=idp.routes(path))
    return idp


def sync_driver() -> SyncDriver:
    return SyncDriver(httpx.Client(timeout=5))


def running_server() -> Iterator[tuple[str, Dispatcher]]:
    """Body of a module-scoped ``server`` fixture."""
    with idp_server() as running:
        yield running


def fresh_idp(server: tuple[str, Dispatcher], clock: FakeClock) -> MiniIdP:
    """Body of an ``idp`` fixture: a new provider state behind the shared server."""
    base_url, dispatcher = server
    return install(dispatcher, base_url, clock)


def driver_for_test() -> Iterator[SyncDriver]:
    """Body of a ``driver`` fixture: a sync driver over a real HTTP client."""
    client = httpx.Client(timeout=5)
    yield SyncDriver(client)
    client.close()
