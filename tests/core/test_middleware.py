"""The ASGI and WSGI shells: pass-through, identity in scope/environ, errors rendered."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from authrelay import AuthRelayMiddleware, MissingCredentials, Settings
from authrelay.identity.session import SessionRecord
from authrelay.principal import ANONYMOUS, NO_CREDENTIALS
from authrelay.relay import Relay
from authrelay.testing.servers import serve_asgi, serve_wsgi
from authrelay.wsgi import AuthRelayWSGIMiddleware

KEY = "k" * 32


def settings(**extra: object) -> Settings:
    base: dict[str, object] = {
        "secret_keys": [KEY],
        "session": {"dev_insecure_cookies": True},
        "services": {
            "billing": {
                "base_url": "https://billing.example",
                "flow": "api_key",
                "api_key": {"value": "k"},
            }
        },
    }
    base.update(extra)
    return Settings.model_validate(base)


async def whoami(request: Request) -> JSONResponse:
    user = request.user
    return JSONResponse(
        {
            "authenticated": user.is_authenticated,
            "subject": user.identity,
            "name": user.display_name,
            "services": list(request.state.services),
        }
    )


async def protected(request: Request) -> PlainTextResponse:
    if not request.user.is_authenticated:
        raise MissingCredentials()
    return PlainTextResponse("secret")


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"subject": websocket.scope["user"].identity})
    await websocket.close()


def starlette_app(relay: Relay) -> Starlette:
    app = Starlette(
        routes=[Route("/", whoami), Route("/protected", protected), WebSocketRoute("/ws", ws)]
    )
    app.add_middleware(AuthRelayMiddleware, relay=relay)
    return app


def session_cookie(relay: Relay, subject: str = "alice") -> str:
    header = relay.sync_driver.run(
        relay.sessions.create(
            SessionRecord(
                subject=subject, claims={"name": subject.title()}, created_at=relay.clock()
            )
        )
    )
    return header.split(";", 1)[0]


def test_anonymous_request_passes_through() -> None:
    relay = Relay(settings())
    with TestClient(starlette_app(relay)) as client:
        body = client.get("/").json()
    assert body == {"authenticated": False, "subject": "", "name": "", "services": ["billing"]}


def test_session_cookie_over_real_http() -> None:
    relay = Relay(settings())
    cookie = session_cookie(relay)
    with serve_asgi(starlette_app(relay)) as url:
        response = httpx.get(url + "/", headers={"cookie": cookie})
    assert response.json()["subject"] == "alice"
    assert response.json()["name"] == "Alice"


def test_br04_missing_credentials_api_gets_401_challenge_without_error() -> None:
    relay = Relay(settings())
    with TestClient(starlette_app(relay)) as client:
        response = client.get("/protected", headers={"accept": "application/json"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="authrelay"'
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "unauthorized"


def test_missing_credentials_browser_redirected_to_login() -> None:
    relay = Relay(
        settings(
            public_base_url="https://app.example",
            connectors={
                "idp": {
                    "standard": "oidc",
                    "issuer": "https://idp.example",
                    "client_id": "c",
                    "client_secret": "s",
                }
            },
        )
    )
    with TestClient(starlette_app(relay), follow_redirects=False) as client:
        response = client.get("/protected", headers={"accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 302
    assert response.headers["location"] == "/auth/idp/login?next=/protected"


def test_se08_br06_stale_cookie_is_cleared_with_vary_and_no_store() -> None:
    relay = Relay(settings())
    with TestClient(starlette_app(relay)) as client:
        response = client.get("/", headers={"cookie": "authrelay=forged"})
    assert response.json()["authenticated"] is False
    assert "authrelay=; Max-Age=0" in response.headers["set-cookie"]
    assert response.headers["vary"] == "Cookie"
    assert response.headers["cache-control"] == "no-store"


def test_websocket_gets_principal() -> None:
    relay = Relay(settings())
    cookie = session_cookie(relay, "bob")
    with (
        TestClient(starlette_app(relay)) as client,
        client.websocket_connect("/ws", headers={"cookie": cookie}) as sock,
    ):
        assert sock.receive_json() == {"subject": "bob"}


def test_lifespan_passes_through_and_closes_relay() -> None:
    events: list[str] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    relay = Relay(settings())
    with TestClient(AuthRelayMiddleware(app, relay=relay)):
        pass
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_unknown_service_is_a_clear_error() -> None:
    relay = Relay(settings())
    services = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=True)
    assert "billing" in services and "nope" not in services
    with pytest.raises(KeyError, match="configured services: billing"):
        services["nope"]


def test_auth_prefix_is_not_passed_to_the_app() -> None:
    relay = Relay(settings())
    with TestClient(starlette_app(relay)) as client:
        response = client.get("/auth/nothing-here")
    assert response.status_code == 404


def wsgi_app(environ, start_response):  # type: ignore[no-untyped-def]
    principal = environ["authrelay.principal"]
    if environ["PATH_INFO"] == "/protected" and not principal.is_authenticated:
        raise MissingCredentials()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{principal.identity or 'anonymous'}".encode()]


def test_wsgi_shell_over_real_server() -> None:
    relay = Relay(settings())
    cookie = session_cookie(relay)
    with serve_wsgi(AuthRelayWSGIMiddleware(wsgi_app, relay=relay)) as url:
        assert httpx.get(url + "/").text == "anonymous"
        assert httpx.get(url + "/", headers={"cookie": cookie}).text == "alice"
        denied = httpx.get(url + "/protected", headers={"accept": "application/json"})
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == 'Bearer realm="authrelay"'
        forged = httpx.get(url + "/", headers={"cookie": "authrelay=forged"})
        assert forged.text == "anonymous" and "Max-Age=0" in forged.headers["set-cookie"]


def test_stats_route_off_by_default_and_on_when_enabled() -> None:
    relay = Relay(settings())
    with TestClient(starlette_app(relay)) as client:
        assert client.get("/auth/stats").status_code == 404
    relay = Relay(settings(routes={"stats": True}))
    relay.metrics.incr("cache_hits", target="billing", flow="api_key")
    with TestClient(starlette_app(relay)) as client:
        body = client.get("/auth/stats").json()
        assert client.post("/auth/stats").status_code == 405
    assert {"name": "cache_hits", "target": "billing", "flow": "api_key", "value": 1} in body[
        "counters"
    ]


def test_one_sync_driver_even_when_threads_race_for_it() -> None:
    import threading

    relay = Relay(settings())
    barrier = threading.Barrier(16)
    seen: list[object] = []

    def grab() -> None:
        barrier.wait()
        seen.append(relay.sync_driver)

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(driver) for driver in seen}) == 1


def test_error_after_response_started_is_not_rendered_twice() -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise MissingCredentials()

    relay = Relay(settings())
    client = TestClient(AuthRelayMiddleware(app, relay=relay))  # no lifespan: the app has none
    with pytest.raises(MissingCredentials):
        client.get("/")


def test_requires_answers_even_when_the_middleware_wraps_the_whole_app() -> None:
    from authrelay.starlette import requires

    @requires("orders.read")
    async def orders(request: Request) -> PlainTextResponse:
        return PlainTextResponse("orders")

    relay = Relay(settings())
    wrapped = AuthRelayMiddleware(Starlette(routes=[Route("/orders", orders)]), relay=relay)
    with TestClient(wrapped) as client:
        response = client.get("/orders", headers={"accept": "application/json"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="authrelay"'
