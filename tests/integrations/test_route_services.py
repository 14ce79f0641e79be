"""Services declared per route: injected clients end to end, start-up checks, the CLI table.

Each framework's route declares ``Orders`` (the settings say ``orders``: names match
without regard to case) and calls the echo service through the client it is given; the
echo answers with the subject and audience of the token it received.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from django.urls import path as django_path
from fastapi import FastAPI
from flask import Flask
from integration_support import ROOT, relay_settings, setup_django
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from authrelay import AuthRelayMiddleware, ConfigurationError, Relay, Settings
from authrelay.fastapi import Service, require
from authrelay.flask import init_app
from authrelay.flask import require as flask_require
from authrelay.flask import uses as flask_uses
from authrelay.services import AsyncServiceClient, SyncServiceClient
from authrelay.starlette import requires, uses
from authrelay.testing import IdentityProvider
from authrelay.testing.servers import serve_asgi, serve_wsgi


@uses("Orders")
async def starlette_echo(request: Request, orders: AsyncServiceClient) -> JSONResponse:
    return JSONResponse((await orders.get("/echo")).json())


@requires("orders.read")
@uses("orders")
def starlette_sync_echo(request: Request, orders: AsyncServiceClient) -> JSONResponse:
    return JSONResponse({"client": type(orders).__name__})


def starlette_app(relay: Relay, *, name: str = "Orders") -> Starlette:
    @uses(name)
    async def declared(request: Request) -> JSONResponse:
        return JSONResponse({})

    routes = [
        Route("/echo", starlette_echo),
        Route("/sync", starlette_sync_echo),
        Mount("/more", routes=[Route("/declared", declared)]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(AuthRelayMiddleware, relay=relay)])


Orders = Annotated[AsyncServiceClient, Service("Orders")]
Misspelt = Annotated[AsyncServiceClient, Service("oders")]


def fastapi_app(relay: Relay, *, misspelt: bool = False) -> FastAPI:
    app = FastAPI()
    app.add_middleware(AuthRelayMiddleware, relay=relay)

    @app.get("/echo", dependencies=[require(scopes=["orders.read"])])
    async def echo(orders: Orders) -> Any:
        return (await orders.get("/echo")).json()

    if misspelt:

        @app.post("/stock")
        async def stock(inventory: Misspelt) -> Any:
            raise AssertionError("never called")

    return app


def flask_app(relay: Relay, *, name: str = "Orders", before: bool = False) -> Flask:
    app = Flask(__name__)
    if not before:
        init_app(app, relay=relay)

    @app.get("/echo")
    @flask_require("orders.read")
    @flask_uses(name)
    def echo(orders: SyncServiceClient) -> Any:
        return orders.get("/echo").json()

    if before:
        init_app(app, relay=relay)
    return app


@pytest.fixture(scope="module")
def settings(idp: IdentityProvider, downstream: str) -> dict[str, Any]:
    return relay_settings(idp.issuer, downstream)


@pytest.fixture
def relay(settings: dict[str, Any]) -> Iterator[Relay]:
    built = Relay(Settings.model_validate(settings))
    yield built
    built.close()  # pooled connections a WSGI app (no lifespan) left open


def _bearer(idp: IdentityProvider) -> dict[str, str]:
    return {"Authorization": f"Bearer {idp.mint_access_token(sub='alice', scope='orders.read')}"}


def _assert_forwarded(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["authorized"], body["sub"], body["aud"]) == (True, "alice", "api://orders")


def test_starlette_route_gets_its_declared_client(relay: Relay, idp: IdentityProvider) -> None:
    with serve_asgi(starlette_app(relay)) as url:
        _assert_forwarded(httpx.get(f"{url}/echo", headers=_bearer(idp)))
        # a sync endpoint under @requires gets the request's client as well
        answer = httpx.get(f"{url}/sync", headers=_bearer(idp))
        assert answer.json() == {"client": "AsyncServiceClient"}
        assert httpx.get(f"{url}/sync").status_code == 401


def test_fastapi_service_dependency_end_to_end(relay: Relay, idp: IdentityProvider) -> None:
    with serve_asgi(fastapi_app(relay)) as url:
        _assert_forwarded(httpx.get(f"{url}/echo", headers=_bearer(idp)))
        assert httpx.get(f"{url}/echo").status_code == 401


def test_flask_view_gets_its_declared_client(idp: IdentityProvider, relay: Relay) -> None:
    with serve_wsgi(flask_app(relay)) as url:
        _assert_forwarded(httpx.get(f"{url}/echo", headers=_bearer(idp)))
        assert httpx.get(f"{url}/echo").status_code == 401


@contextmanager
def _django(settings: dict[str, Any], urlconf: Any, *, asgi: bool) -> Iterator[str]:
    setup_django()
    from django.test.utils import override_settings

    from authrelay.django import with_lifespan

    with override_settings(ROOT_URLCONF=urlconf, AUTHRELAY=settings, AUTHRELAY_SETTINGS_FILE=None):
        if asgi:
            from django.core.asgi import get_asgi_application

            with serve_asgi(with_lifespan(get_asgi_application())) as url:
                yield url
        else:
            from django.core.wsgi import get_wsgi_application

            with serve_wsgi(get_wsgi_application()) as url:
                yield url


@pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])
def test_django_views_get_their_declared_clients(
    settings: dict[str, Any], idp: IdentityProvider, asgi: bool
) -> None:
    with _django(dict(settings), "route_services_django_urls", asgi=asgi) as url:
        _assert_forwarded(httpx.get(f"{url}/sync", headers=_bearer(idp)))
        assert httpx.get(f"{url}/sync").status_code == 401
        if asgi:  # async views get async clients under ASGI only
            _assert_forwarded(httpx.get(f"{url}/async", headers=_bearer(idp)))


def test_starlette_refuses_to_start_with_a_misspelt_service(relay: Relay) -> None:
    app = starlette_app(relay, name="ordrs")
    with pytest.raises(ConfigurationError) as refused, TestClient(app):
        pass
    (problem,) = refused.value.problems
    assert "/more/declared" in problem
    assert "no service named 'ordrs' (did you mean 'orders'?)" in problem


def test_fastapi_refuses_to_start_with_a_misspelt_service(relay: Relay) -> None:
    app = fastapi_app(relay, misspelt=True)
    expected = r"'oders' \(did you mean 'orders'\?\)"
    with pytest.raises(ConfigurationError, match=expected), TestClient(app):
        pass


def test_flask_refuses_a_misspelt_service_at_init_app(relay: Relay) -> None:
    with pytest.raises(ConfigurationError, match=r"GET /echo: no service named 'order' \(did"):
        flask_app(relay, name="order", before=True)


def test_flask_views_added_after_init_app_are_checked_before_the_first_request(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    app = flask_app(relay, name="order")
    with serve_wsgi(app) as url:
        answer = httpx.get(f"{url}/echo")
    assert answer.status_code == 500
    assert answer.json()["error"] == "server_error"
    assert "no service named 'order' (did you mean 'orders'?)" not in answer.text
    logged = [r.getMessage() for r in caplog.records if r.name == "authrelay.flask"]
    assert any("no service named 'order' (did you mean 'orders'?)" in m for m in logged)


@pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])
def test_django_refuses_to_load_the_middleware_with_a_misspelt_service(
    settings: dict[str, Any], asgi: bool
) -> None:
    @uses("inventry")
    def view(request: Any) -> Any:
        raise AssertionError("never called")

    urlconf = types.ModuleType("misspelt_urls")
    urlconf.urlpatterns = [django_path("stock", view)]  # type: ignore[attr-defined]
    expected = r"/stock: no service named 'inventry'"
    with (
        pytest.raises(ConfigurationError, match=expected),
        _django(dict(settings), urlconf, asgi=asgi),
    ):
        pass


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(cwd)]),
        "AUTHRELAY_SECRET": "s" * 40,
        "AUTHRELAY_ISSUER": "http://127.0.0.1:9000",
        "AUTHRELAY_CLIENT_SECRET": "test-secret",
        "ORDERS_URL": "http://127.0.0.1:9100",
    }
    command = [sys.executable, "-m", "authrelay.cli", "check", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "app",
    [
        "examples.starlette_app:app",
        "examples.fastapi_app:app",
        "examples.flask_app:app",
        "examples.django_app.wsgi:application",
    ],
)
def test_check_lists_the_routes_of_each_example(app: str) -> None:
    done = _cli(str(ROOT / "examples" / "authrelay.toml"), "--app", app, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("routes (", 1)[1].splitlines()
    assert table[1].split() == ["METHODS", "PATH", "SERVICES", "SCOPES"]
    rows = {line.split()[1]: line.split() for line in table[2:]}
    assert rows["/orders"][2:] == ["orders", "orders.read"]
    assert rows["/scopes"][2:] == ["-", "orders.read"]
    assert rows["/me"][2:] == ["-", "-"]


def test_check_refuses_an_app_declaring_an_unknown_service(tmp_path: Path) -> None:
    (tmp_path / "typo_app.py").write_text(
        "from starlette.applications import Starlette\n"
        "from starlette.responses import JSONResponse\n"
        "from starlette.routing import Route\n"
        "from authrelay.starlette import uses\n"
        "@uses('Ordrs')\n"
        "async def view(request):\n"
        "    return JSONResponse({})\n"
        "app = Starlette(routes=[Route('/stock', view, methods=['POST'])])\n"
    )
    done = _cli(str(ROOT / "examples" / "authrelay.toml"), "--app", "typo_app:app", cwd=tmp_path)
    assert done.returncode == 1
    assert "invalid" in done.stderr
    assert "route POST /stock: no service named 'Ordrs' (did you mean 'orders'?)" in done.stderr


def test_check_explains_an_app_it_cannot_load(tmp_path: Path) -> None:
    done = _cli(str(ROOT / "examples" / "authrelay.toml"), "--app", "nowhere:app", cwd=tmp_path)
    assert done.returncode == 1
    assert "--app nowhere:app: cannot load it" in done.stderr
