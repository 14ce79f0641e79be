"""INV-1 sweep: a whole session (login, connect, every service flow, refresh, logout) with
canary secrets, and none of its tokens, codes, verifiers or secrets anywhere it must not be:
log records at DEBUG, response headers and bodies, ``repr()`` of the relay's objects,
counters, the raw bytes of the SQLite file and of the Redis values."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from sec_helpers import Seen, base_settings, browser, serve_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authrelay import Settings
from authrelay._crypto import random_token
from authrelay.principal import Credentials
from authrelay.testing import FakeClock, IdentityProvider, serve_asgi, serve_identity_provider
from authrelay.testing.models import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
    OAuthClient,
    Resource,
    TestUser,
)

CLIENT_SECRET = "cnry-client-secret-4f1d2a"
ACTOR_SECRET = "cnry-actor-secret-93be70"
API_KEY = "cnry-api-key-7c55e1"
COOKIE_KEY = "cnry-cookie-key-0d2b8e-000000000000000000"
CANARIES = (CLIENT_SECRET, ACTOR_SECRET, API_KEY, COOKIE_KEY)
REDIS_URL = "redis://127.0.0.1:6379/0"
_MAIN_THREAD = threading.get_ident()
_SECRET_FIELDS = (
    "code",
    "code_verifier",
    "refresh_token",
    "subject_token",
    "actor_token",
    "assertion",
    "token",
    "client_secret",
    "client_assertion",
)
_SECRET_ANSWERS = ("access_token", "refresh_token", "id_token")


class Tap:
    """Wraps the provider's ASGI app: keeps every request body and every answer."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[tuple[str, bytes, list[tuple[bytes, bytes]], bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        headers: list[tuple[bytes, bytes]] = []
        answer = bytearray()

        async def tapped_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        async def tapped_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers.extend(message.get("headers", []))
            elif message["type"] == "http.response.body":
                answer.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, tapped_receive, tapped_send)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            self.exchanges.append((f"{scope['path']}?{query}", bytes(body), headers, bytes(answer)))

    def secrets(self) -> set[str]:
        """Every token, code and verifier that crossed the provider's endpoints."""
        found: set[str] = set()
        for _, body, headers, answer in self.exchanges:
            form = parse_qs(body.decode("latin-1"))
            for name in _SECRET_FIELDS:
                found.update(form.get(name, []))
            try:
                data = json.loads(answer)
            except ValueError:
                data = None
            if isinstance(data, dict):
                found.update(str(data[k]) for k in _SECRET_ANSWERS if data.get(k))
            for header, value in headers:
                if header.lower() == b"location":
                    query = parse_qs(urlsplit(value.decode("latin-1")).query)
                    found.update(query.get("code", []))
        return found


class Downstream:
    """An API that keeps every credential it was sent."""

    def __init__(self) -> None:
        self.credentials: list[str] = []
        self.app = Starlette(routes=[Route("/data", self.data)])

    async def data(self, request: Request) -> JSONResponse:
        for name in ("authorization", "x-api-key"):
            if name in request.headers:
                self.credentials.append(request.headers[name].removeprefix("Bearer "))
        return JSONResponse({"ok": True})


@pytest.fixture
def provider() -> Iterator[tuple[IdentityProvider, Tap]]:
    idp = IdentityProvider(
        clients=[
            OAuthClient(
                "rp",
                CLIENT_SECRET,
                redirect_uris=("http://127.0.0.1/auth/idp/callback",),
                loopback_any_port=True,
                grant_types=(
                    GRANT_AUTHORIZATION_CODE,
                    GRANT_REFRESH_TOKEN,
                    GRANT_CLIENT_CREDENTIALS,
                    GRANT_TOKEN_EXCHANGE,
                    GRANT_JWT_BEARER,
                ),
                app_id_uris=("api://app",),
                post_logout_redirect_uris=("http://127.0.0.1/",),
            ),
            OAuthClient("planner-agent", ACTOR_SECRET, grant_types=(GRANT_CLIENT_CREDENTIALS,)),
        ],
        users=[TestUser("alice", "alice", name="Alice", email="alice@example.test")],
        resources=[
            Resource("api://app", ("app.use",)),
            Resource("api://orders", ("orders.read",)),
            Resource("api://billing", ("billing.read",)),
            Resource("api://agents", ("act",)),
        ],
        auto_approve="alice",
    )
    tap = Tap(idp.app)
    idp.app = tap  # type: ignore[assignment]
    with serve_identity_provider(idp):
        yield idp, tap


@pytest.fixture
def downstream() -> Iterator[tuple[Downstream, str]]:
    api = Downstream()
    with serve_asgi(api.app) as url:
        yield api, url


def _settings(issuer: str, api: str, store: dict[str, str]) -> Callable[[str], Settings]:
    base = {"base_url": api, "allow_http": True}

    def make(public: str) -> Settings:
        return base_settings(
            public,
            {
                "idp": {
                    "standard": "oidc",
                    "issuer": issuer,
                    "client_id": "rp",
                    "client_secret": CLIENT_SECRET,
                    "scopes": ["openid", "profile", "email"],
                }
            },
            secret_keys=[COOKIE_KEY],
            store=store,
            client={"client_id": "rp", "client_secret": CLIENT_SECRET},
            bearer={"issuer": issuer, "audience": "api://app"},
            agents={
                "planner": {
                    "client_id": "planner-agent",
                    "client_secret": ACTOR_SECRET,
                    "audience": "api://agents",
                    "scopes": ["act"],
                }
            },
            services={
                "mine": {**base, "flow": "connector", "connector": "idp"},
                "orders": {
                    **base,
                    "flow": "token_exchange",
                    "audience": "api://orders",
                    "scopes": ["orders.read"],
                },
                "calendar": {
                    **base,
                    "flow": "token_exchange",
                    "audience": "api://orders",
                    "scopes": ["orders.read"],
                    "actor": "planner",
                },
                "obo": {**base, "flow": "on_behalf_of", "scopes": ["api://orders/orders.read"]},
                "billing": {
                    **base,
                    "flow": "client_credentials",
                    "audience": "api://billing",
                    "scopes": ["billing.read"],
                },
                "passthrough": {**base, "flow": "forward", "audience": "api://app"},
                "keyed": {
                    **base,
                    "flow": "api_key",
                    "api_key": {"value": API_KEY, "header": "X-Api-Key", "scheme": None},
                },
            },
        )

    return make


@pytest.fixture(
    params=[("asgi", "sqlite"), pytest.param(("wsgi", "redis"), marks=pytest.mark.redis)],
    ids=["asgi-sqlite", "wsgi-redis"],
)
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    shell, kind = request.param
    if kind == "sqlite":
        yield shell, {"url": f"sqlite:///{tmp_path / 'store.db'}"}
        return
    prefix = f"sec-inv1-{random_token(6)}:"
    yield shell, {"url": REDIS_URL, "key_prefix": prefix}
    raw = redis.Redis.from_url(REDIS_URL)
    for name in list(raw.scan_iter(match=prefix + "*", count=500)):
        raw.delete(name)
    raw.close()


def _redis_bytes(prefix: str) -> bytes:
    raw = redis.Redis.from_url(REDIS_URL)
    out = bytearray()

    def add(*values: Any) -> None:
        for value in values:
            out.extend(value if isinstance(value, bytes) else str(value).encode())
            out.extend(b"\n")

    try:
        for name in raw.scan_iter(match=prefix + "*", count=500):
            add(name)
            kind = raw.type(name)
            if kind == b"string":
                add(raw.get(name) or b"")
            elif kind == b"hash":
                for field, value in raw.hgetall(name).items():
                    add(field, value)
            elif kind == b"list":
                add(*raw.lrange(name, 0, -1))
            elif kind == b"set":
                add(*raw.smembers(name))
            elif kind == b"zset":
                add(*raw.zrange(name, 0, -1))
    finally:
        raw.close()
    return bytes(out)


def _sqlite_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def test_inv1_no_secret_leaks_anywhere_in_a_full_session(
    provider: tuple[IdentityProvider, Tap],
    downstream: tuple[Downstream, str],
    setup: tuple[str, dict[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp, tap = provider
    api, api_url = downstream
    shell, store = setup
    caplog.set_level(logging.DEBUG)
    clock = FakeClock(time.time())
    caller = idp.mint_access_token(
        sub="alice", audience="api://app", scope="app.use", client_id="caller", expires_in=3600
    )
    api_client, api_seen = browser()
    with (
        serve_app(_settings(idp.issuer, api_url, store), shell=shell, clock=clock) as app,
        api_client,
    ):
        assert app.login(next="/home").status_code == 303
        linked = app.client.get(app.authorize(action="connect"))
        assert linked.status_code == 303, linked.text
        for service in ("mine", "billing", "keyed"):
            answer = app.get(f"/call/{service}/data").json()
            assert answer.get("status") == 200, (service, answer)
        bearer = {"authorization": f"Bearer {caller}"}
        for service in ("orders", "calendar", "obo", "billing", "passthrough", "keyed"):
            answer = api_client.get(f"{app.base}/call/{service}/data", headers=bearer).json()
            assert answer.get("status") == 200, (service, answer)
        refreshes = sum(1 for _, body, _, _ in tap.exchanges if b"grant_type=refresh" in body)
        clock.advance(250)  # the connector token is due: the next call refreshes it
        assert app.get("/call/mine/data").json()["status"] == 200
        assert (
            sum(1 for _, body, _, _ in tap.exchanges if b"grant_type=refresh" in body)
            == refreshes + 1
        )
        me = app.me()
        out = app.logout()
        assert out.status_code == 200
        relay = app.relay
        objects: list[Any] = [
            relay,
            relay.settings,
            relay.sessions,
            relay.services,
            relay.connectors,
            relay.connectors.tokens,
            relay.connectors.store,
            relay.backend,
            relay.async_backend,
            relay.connectors.routes,
            Credentials(token=caller),
        ]
        reprs = [repr(o) for o in objects] + [str(o) for o in objects]
        reprs += [relay.settings.model_dump_json(), json.dumps(relay.stats()), json.dumps(me)]
        stored = (
            _sqlite_bytes(Path(store["url"][len("sqlite:///") :]))
            if store["url"].startswith("sqlite")
            else _redis_bytes(store["key_prefix"])
        )
    secrets = tap.secrets() | set(api.credentials) | {caller}
    kinds = {
        "codes": [s for _, b, _, _ in tap.exchanges for s in parse_qs(b.decode()).get("code", [])],
        "verifiers": [
            s for _, b, _, _ in tap.exchanges for s in parse_qs(b.decode()).get("code_verifier", [])
        ],
        "refresh": [
            s for _, b, _, _ in tap.exchanges for s in parse_qs(b.decode()).get("refresh_token", [])
        ],
    }
    assert len(kinds["codes"]) == 2 and len(kinds["verifiers"]) == 2 and kinds["refresh"]
    secrets -= {API_KEY}  # the downstream got the key itself; it is a canary below
    secrets |= set(CANARIES)
    assert len(secrets) >= 14
    assert stored, "the store holds nothing: the sweep would prove nothing"

    app_answers = [s for s in app.seen + api_seen if s.url.startswith(app.base)]
    assert len(app_answers) >= 15
    places: dict[str, list[str]] = {
        "log record": [
            f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''} {r.__dict__!r}"
            for r in caplog.records
            if not _the_tests_own_client(r)
        ],
        "response": [_answer_text(s) for s in app_answers],
        "repr": reprs,
        "store bytes": [stored.decode("latin-1")],
    }
    assert places["log record"], "nothing was logged at DEBUG"
    for place, texts in places.items():
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"a secret ({secret[:6]}...) leaked in a {place}"


def _the_tests_own_client(record: logging.LogRecord) -> bool:
    """Records that are not authrelay's: httpx/httpcore records of the test's browser (it
    sees codes in redirects, as any browser does; the relay's own HTTP traffic runs on the
    servers' threads) and werkzeug's access log of callback URLs (the development server
    in front of the app, like uvicorn's access log, which the test server silences)."""
    if record.name == "werkzeug":
        return True
    return record.name.startswith(("httpx", "httpcore")) and record.thread == _MAIN_THREAD


def _answer_text(seen: Seen) -> str:
    """Headers and body of an answer of the app (its own request URL is the browser's)."""
    headers = "\n".join(f"{k}: {v}" for k, v in seen.headers)
    return f"{seen.status}\n{headers}\n{seen.body.decode('latin-1')}"
