"""Session users reach exchange-based services (``subject``; docs/security.md TX-04).

A browser signed in through the connector ``idp`` calls ``token_exchange`` services: the
subject token is the access token that connector obtained from the same provider,
refreshed first when due; the derived token is cached per session and ends with it.
Everything runs over loopback against the test provider, under ASGI and WSGI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from svc_apps import asgi_app, wsgi_app
from svc_support import Downstream

from authrelay import ConfigurationError, Relay, Settings
from authrelay._crypto import random_token
from authrelay.testing import IdentityProvider, free_port, serve_asgi, serve_identity_provider
from authrelay.testing.pytest_plugin import default_provider_config
from authrelay.testing.servers import serve_wsgi
from authrelay.wsgi import AuthRelayWSGIMiddleware

SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
KEY = "session-subject-tests-key-0000000"


@dataclass
class App:
    """The app behind authrelay, its provider, downstream API, clock and a browser."""

    base: str
    relay: Relay
    idp: IdentityProvider
    api: Downstream
    api_url: str
    now: list[float]
    browser: httpx.Client
    shell_app: Any

    def login(self, user: str = "alice") -> None:
        self.idp.auto_approve = user
        start = self.browser.get(f"{self.base}/auth/idp/login")
        at_idp = self.browser.get(start.headers["location"])
        done = self.browser.get(at_idp.headers["location"])
        assert done.status_code == 303, done.text

    def call(self, service: str, **kw: Any) -> httpx.Response:
        headers = {"accept": "application/json", **kw.pop("headers", {})}
        return self.browser.get(f"{self.base}/call/{service}", headers=headers, **kw)

    def exchanges(self, expected: int = 0) -> int:
        return _count(self.idp, EXCHANGE, expected)

    def refreshes(self, expected: int = 0) -> int:
        return _count(self.idp, "refresh_token", expected)


def _count(idp: IdentityProvider, grant: str, expected: int) -> int:
    """The provider's count of ``grant`` requests once it reaches ``expected`` (or after 5 s):
    the provider counts a request after answering it."""
    deadline = time.monotonic() + 5
    while True:
        count = idp.counters.count(endpoint="token", grant_type=grant)
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


def _settings(idp: IdentityProvider, base: str, api: str, **extra: Any) -> Settings:
    service = {"base_url": api, "allow_http": True, "flow": "token_exchange",
               "audience": "api://orders", "scopes": ["orders.read"]}  # fmt: skip
    services = extra.pop("services", None) or {
        "notes": service,
        "bearer_only": {**service, "subject": "bearer"},
        "session_only": {**service, "subject": "session"},
        "obo": {"base_url": api, "allow_http": True, "flow": "on_behalf_of",
                "scopes": ["api://orders/orders.read"]},
    }  # fmt: skip
    data: dict[str, Any] = {
        "secret_keys": [KEY],
        "public_base_url": base,
        "session": {"dev_insecure_cookies": True},
        "http": {"allow_insecure_loopback": True},
        "bearer": {"issuer": idp.issuer, "audience": "api://app"},
        "client": {"client_id": "test-client", "client_secret": "test-secret"},
        "connectors": {
            "idp": {
                "standard": "oidc",
                "issuer": idp.issuer,
                "client_id": "test-client",
                "client_secret": "test-secret",
            }
        },
        "services": services,
    }
    data.update(extra)
    return Settings.model_validate(data)


@contextmanager
def _running(shell: str, **extra: Any) -> Iterator[App]:
    now = [1_700_000_000.0]
    idp = IdentityProvider(**{**default_provider_config(), "issuer": None, "clock": lambda: now[0]})
    api = Downstream(idp)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # A long keep-alive: a loaded machine must not turn idle connections into resets.
    with serve_identity_provider(idp), serve_asgi(api.app, timeout_keep_alive=60) as api_url:
        relay = Relay(_settings(idp, base, api_url, **extra), clock=lambda: now[0])
        app = asgi_app(relay) if shell == "asgi" else wsgi_app(relay)
        server = (
            serve_asgi(app, port=port, timeout_keep_alive=60)
            if shell == "asgi"
            else serve_wsgi(app, port=port)
        )
        try:
            with server, httpx.Client(follow_redirects=False, timeout=30) as browser:
                yield App(base, relay, idp, api, api_url, now, browser, app)
        finally:
            relay.close()


@pytest.fixture(params=["asgi", "wsgi"])
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(shell: str) -> Iterator[App]:
    with _running(shell) as running:
        running.login()
        yield running


def _session_entries(relay: Relay) -> list[Any]:
    runtime = relay.services.runtimes["notes"]
    return [key for key in runtime.cache.entries if key[1][0] == "session"]


def test_tx04_a_session_user_reaches_an_exchange_service(app: App) -> None:
    for _ in range(3):
        answer = app.call("notes")
        assert answer.status_code == 200, answer.text
        assert answer.json()["body"]["sub"] == "alice"
        assert answer.json()["body"]["aud"] in ("api://orders", ["api://orders"])
        assert answer.json()["body"]["client_id"] == "test-client"
    assert app.exchanges(1) == 1  # cached for the session after the first call
    assert app.call("session_only").status_code == 200
    assert all(entry["cookie"] is None for entry in app.api.seen)


def test_tx04_on_behalf_of_a_session_user(app: App) -> None:
    answer = app.call("obo")
    assert answer.status_code == 200, answer.text
    assert answer.json()["body"]["sub"] == "alice"
    assert "orders.read" in answer.json()["body"]["scope"]
    jwt_bearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert _count(app.idp, jwt_bearer, 1) == 1


def test_tx04_a_session_token_refused_by_the_provider_asks_to_sign_in_again(app: App) -> None:
    app.idp.faults.add("token", error="invalid_grant", grant_type=EXCHANGE)
    answer = app.call("notes")
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "connector_authorization_required"
    assert answer.json()["login_url"] == "/auth/idp/login"


def test_tx04_subject_bearer_refuses_a_session_cookie_alone(app: App) -> None:
    answer = app.call("bearer_only")
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"
    assert app.exchanges() == 0


def test_tx04_a_cookie_beside_a_bearer_token_gives_nothing(app: App) -> None:
    """An API request (bearer) never exchanges the session's token, even with the cookie."""
    token = app.idp.mint_access_token(
        sub="bob", audience="api://app", scope="app.use", client_id="caller"
    )
    bearer = {"authorization": f"Bearer {token}"}
    auto = app.call("notes", headers=bearer)
    assert auto.status_code == 200, auto.text
    assert auto.json()["body"]["sub"] == "bob"  # the bearer's subject, not alice's session
    refused = app.call("session_only", headers=bearer)
    assert refused.status_code == 401
    assert app.exchanges(1) == 1
    assert _session_entries(app.relay) == []


def test_tx04_the_user_changes_between_requests(app: App) -> None:
    assert app.call("notes").json()["body"]["sub"] == "alice"
    app.login("bob")  # the same browser signs in as someone else: a new session
    assert app.call("notes").json()["body"]["sub"] == "bob"
    assert app.exchanges(2) == 2
    app.login("alice")
    assert app.call("notes").json()["body"]["sub"] == "alice"


def test_tx04_an_expired_session_token_is_refreshed_before_the_exchange(app: App) -> None:
    app.now[0] += 290  # the connector's token (300 s) is within its refresh margin
    answer = app.call("notes")
    assert answer.status_code == 200, answer.text
    assert answer.json()["body"]["sub"] == "alice"
    assert app.refreshes(1) == 1
    assert app.exchanges(1) == 1


def test_tx04_derived_tokens_end_with_logout(app: App) -> None:
    assert app.call("notes").status_code == 200
    assert len(_session_entries(app.relay)) == 1
    out = app.browser.post(
        f"{app.base}/auth/logout", headers={"origin": app.base, "accept": "application/json"}
    )
    assert out.status_code == 200, out.text
    assert _session_entries(app.relay) == []
    assert app.call("notes").status_code == 401


def test_tx04_derived_tokens_end_with_session_expiry(app: App) -> None:
    assert app.call("notes").status_code == 200
    app.now[0] += 30 * 60 + 1  # past the idle timeout
    assert app.call("notes").status_code == 401
    assert app.exchanges(1) == 1


def test_tx04_derived_tokens_end_with_back_channel_logout(shell: str) -> None:
    with _running(shell) as app:
        app.idp.clients["test-client"] = dataclasses.replace(
            app.idp.clients["test-client"],
            backchannel_logout_uri=f"{app.base}/auth/idp/backchannel-logout",
        )
        app.login()
        assert app.call("notes").status_code == 200
        assert len(_session_entries(app.relay)) == 1
        assert app.idp.backchannel_logout(sub="alice") == {"test-client": 200}
        assert _session_entries(app.relay) == []
        assert app.call("notes").status_code == 401


def test_tx04_200_concurrent_requests_make_one_refresh_and_one_exchange(app: App) -> None:
    """200 requests of one session user at once: over uvicorn (ASGI), or from 200 threads
    straight into the WSGI middleware; the provider is on loopback."""
    app.now[0] += 290  # the session's connector token is due for a refresh
    cookie = "; ".join(f"{name}={value}" for name, value in app.browser.cookies.items())
    headers = {"cookie": cookie, "accept": "application/json"}
    app.idp.faults.add("token", delay=0.3, count=1)  # every request arrives meanwhile
    if isinstance(app.shell_app, AuthRelayWSGIMiddleware):
        barrier = threading.Barrier(200)

        def one(_: int) -> httpx.Response:
            transport = httpx.WSGITransport(app=app.shell_app)
            with httpx.Client(transport=transport, base_url="http://app") as client:
                barrier.wait(30)
                return client.get("/call/notes", headers=headers)

        with ThreadPoolExecutor(200) as pool:
            answers = list(pool.map(one, range(200)))
    else:  # over uvicorn: the relay's async parts belong to the server's event loop

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                return await asyncio.gather(
                    *(client.get(f"{app.base}/call/notes", headers=headers) for _ in range(200))
                )

        answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 200
    assert {a.json()["body"]["sub"] for a in answers} == {"alice"}
    assert app.refreshes(1) == 1
    assert app.exchanges(1) == 1


def test_tx04_a_connector_from_another_issuer_is_refused() -> None:
    now = [1_700_000_000.0]
    idp = IdentityProvider(**{**default_provider_config(), "issuer": None})
    with serve_identity_provider(idp):
        base, api = "http://127.0.0.1:9", "http://127.0.0.1:8"
        other = {"standard": "oidc", "issuer": "https://other.example", "client_id": "x",
                 "client_secret": "y"}  # fmt: skip
        connectors = {"other": other}
        for service in ({"subject": "session"}, {"subject_connector": "other"}):
            with pytest.raises(ConfigurationError) as info:
                Relay(
                    _settings(
                        idp, base, api, connectors=connectors,
                        services={"notes": {"base_url": api, "allow_http": True,
                                            "flow": "token_exchange", **service}},
                    ),
                    clock=lambda: now[0],
                )  # fmt: skip
            assert "services.notes.subject" in str(info.value)
        # Two connectors of the exchange's server: the service must name one.
        same = {"standard": "oidc", "issuer": idp.issuer, "client_id": "test-client",
                "client_secret": "test-secret"}  # fmt: skip
        with pytest.raises(ConfigurationError) as info:
            Relay(_settings(idp, base, api, connectors={"a": same, "b": same}))
        assert "services.session_only.subject_connector: connectors a, b could" in str(info.value)
        assert "services.notes." not in str(info.value)  # "auto": bearer only, and a warning
        # Listed as trusted by the exchange's server: allowed.
        trusted = {"base_url": api, "allow_http": True, "flow": "token_exchange",
                   "subject": "session", "subject_issuers": ["https://other.example"]}  # fmt: skip
        relay = Relay(
            _settings(idp, base, api, connectors=connectors, services={"notes": trusted}),
            clock=lambda: now[0],
        )
        assert relay.services.runtimes["notes"].session_connector == "other"
        relay.close()


def _records(namespace: str) -> list[bytes]:
    raw = redis.Redis.from_url(SHARED_REDIS_URL)
    try:
        return list(raw.scan_iter(match=namespace + "svc:*", count=500))
    finally:
        raw.close()


@pytest.mark.redis
def test_tx04_two_workers_share_one_exchange_and_a_logout_ends_it_in_both(shell: str) -> None:
    """Two relays on one Redis store stand for two worker processes."""
    namespace = f"t-{random_token(6)}:"
    store = {"url": SHARED_REDIS_URL, "key_prefix": namespace}
    try:
        with _running(shell, store=store) as app:
            app.login()
            port = free_port()
            settings = _settings(app.idp, f"http://127.0.0.1:{port}", app.api_url, store=store)
            other = Relay(settings, clock=lambda: app.now[0])
            second = asgi_app(other) if shell == "asgi" else wsgi_app(other)
            serve = serve_asgi if shell == "asgi" else serve_wsgi
            try:
                with serve(second, port=port) as there:
                    cookies = dict(app.browser.cookies)
                    assert app.call("notes").json()["body"]["sub"] == "alice"
                    answer = httpx.get(f"{there}/call/notes", cookies=cookies, timeout=30)
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["body"]["sub"] == "alice"
                    assert app.exchanges(1) == 1  # the second worker read the shared record
                    assert len(_session_entries(other)) == 1
                    other.backend.hub.connected.wait(10)  # type: ignore[attr-defined]
                    assert len(_records(namespace)) == 1  # one sealed shared record
                    out = app.browser.post(
                        f"{app.base}/auth/logout",
                        headers={"origin": app.base, "accept": "application/json"},
                    )
                    assert out.status_code == 200, out.text
                    deadline = time.monotonic() + 10
                    while _session_entries(other) and time.monotonic() < deadline:
                        time.sleep(0.02)
                    assert _session_entries(other) == []  # heard through the store
                    assert _records(namespace) == []  # deleted by the worker that logged out
                    after = httpx.get(f"{there}/call/notes", cookies=cookies, timeout=30)
                    assert after.status_code == 401
            finally:
                other.close()
    finally:
        raw = redis.Redis.from_url(SHARED_REDIS_URL)
        for name in list(raw.scan_iter(match=namespace + "*", count=500)):
            raw.delete(name)
        raw.close()
