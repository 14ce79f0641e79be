"""Starlette specifics over uvicorn: websockets, lifespan, endpoints as methods, API routes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from integration_apps import starlette_app
from integration_support import relay_settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from authrelay import Relay, Settings
from authrelay.starlette import requires
from authrelay.testing import IdentityProvider
from authrelay.testing.servers import serve_asgi

BROWSER = {"Accept": "text/html"}


class App:
    def __init__(self, url: str, log: list[str]) -> None:
        self.url = url
        self.ws = "ws" + url.removeprefix("http")
        self.log = log


@pytest.fixture(scope="module")
def app(idp: IdentityProvider, downstream: str) -> Iterator[App]:
    log: list[str] = []
    relay = Relay(Settings.model_validate(relay_settings(idp.issuer, downstream)))
    with serve_asgi(starlette_app(relay, log), ws="websockets-sansio") as url:
        yield App(url, log)


def test_websocket_route_receives_the_bearer_principal(app: App, idp: IdentityProvider) -> None:
    token = idp.mint_access_token(sub="alice", scope="orders.read")
    with connect(f"{app.ws}/ws", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        user = json.loads(ws.recv(timeout=10))
    assert (user["kind"], user["sub"], user["scopes"]) == ("bearer", "alice", ["orders.read"])


def test_websocket_route_receives_anonymous_without_credentials(app: App) -> None:
    with connect(f"{app.ws}/ws") as ws:
        user = json.loads(ws.recv(timeout=10))
    assert user["authenticated"] is False


def test_guarded_websocket_refuses_anonymous_and_admits_the_scope(
    app: App, idp: IdentityProvider
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{app.ws}/ws/guarded").close()
    assert refused.value.response.status_code == 403
    token = idp.mint_access_token(sub="alice", scope="orders.read")
    headers = {"Authorization": f"Bearer {token}"}
    with connect(f"{app.ws}/ws/guarded", additional_headers=headers) as ws:
        assert json.loads(ws.recv(timeout=10))["sub"] == "alice"


def test_jw07_websocket_with_expired_token_is_refused(app: App, idp: IdentityProvider) -> None:
    token = idp.mint_access_token(sub="alice", expires_in=-3600)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{app.ws}/ws", additional_headers={"Authorization": f"Bearer {token}"}).close()
    assert refused.value.response.status_code == 403


def test_lifespan_passes_through_to_the_app(idp: IdentityProvider, downstream: str) -> None:
    log: list[str] = []
    relay = Relay(Settings.model_validate(relay_settings(idp.issuer, downstream)))
    with serve_asgi(starlette_app(relay, log)) as url:
        assert httpx.get(f"{url}/lifespan").json() == {"log": ["startup"]}
    assert log == ["startup", "shutdown"]


def test_api_route_answers_browsers_with_401_not_a_redirect(app: App) -> None:
    response = httpx.get(f"{app.url}/api-only", headers=BROWSER)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="authrelay"'
    # The same browser on a route that may redirect is sent to the login route.
    assert httpx.get(f"{app.url}/me", headers=BROWSER).status_code == 302


def test_e_scope_on_an_endpoint_method(app: App, idp: IdentityProvider) -> None:
    token = idp.mint_access_token(sub="alice", scope="orders.read")
    response = httpx.get(f"{app.url}/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert 'scope="orders.write"' in response.headers["www-authenticate"]
    token = idp.mint_access_token(sub="alice", scope="orders.write")
    response = httpx.get(f"{app.url}/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["sub"] == "alice"


def test_requires_refuses_a_scope_list_in_one_string() -> None:
    with pytest.raises(TypeError, match="scope names"):
        requires("orders.read orders.write")
