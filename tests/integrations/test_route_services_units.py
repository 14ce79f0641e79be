"""``@uses`` and ``collect`` on in-process apps: names, parameters, stacking, typing."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from authrelay import AuthRelayMiddleware, ConfigurationError, Relay, Settings
from authrelay.declare import RouteDeclaration, check_routes, collect
from authrelay.flask import services as flask_services
from authrelay.services import AsyncServiceClient, Services, SyncServiceClient
from authrelay.starlette import get_services, requires, uses

SETTINGS = {
    "secret_keys": ["k" * 32],
    "bearer": {"issuer": "https://idp.example.com", "audience": "api://app"},
    "services": {
        "My-API": {
            "base_url": "https://api.example.com",
            "flow": "forward",
            "audience": "api://my-api",
        }
    },
}


@pytest.mark.parametrize("name", ["", "  ", 3])
def test_uses_refuses_what_is_not_a_name(name: Any) -> None:
    with pytest.raises(TypeError, match=r"uses\(\) takes names of configured services"):
        uses(name)


def test_a_name_with_a_dash_reaches_the_parameter_named_like_it() -> None:
    @uses("my-api")
    async def view(request: Request, my_api: AsyncServiceClient) -> JSONResponse:
        return JSONResponse({"name": my_api.name, "kind": type(my_api).__name__})

    relay = Relay(Settings.model_validate(SETTINGS))
    app = Starlette(
        routes=[Route("/", view)], middleware=[Middleware(AuthRelayMiddleware, relay=relay)]
    )
    with TestClient(app) as client:
        # no token is fetched until the view sends a request: this one only names it
        assert client.get("/").json() == {"name": "My-API", "kind": "AsyncServiceClient"}


def test_stacked_decorators_declare_scopes_and_services_in_either_order() -> None:
    @uses("My-API")
    @requires("api.read")
    async def outer_uses(request: Request, my_api: AsyncServiceClient) -> JSONResponse:
        return JSONResponse({})

    @requires("api.read", "api.write")
    @uses("My-API", "other")
    async def outer_requires(request: Request) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(routes=[Route("/a", outer_uses), Route("/b", outer_requires)])
    assert collect(app) == [
        RouteDeclaration(("GET",), "/a", ("My-API",), ("api.read",)),
        RouteDeclaration(("GET",), "/b", ("My-API", "other"), ("api.read", "api.write")),
    ]
    with pytest.raises(ConfigurationError) as refused:
        check_routes(collect(app), ["My-API"])
    assert refused.value.problems == [
        "route GET /b: no service named 'other'; configured services: My-API"
    ]


def test_a_name_like_no_other_gets_no_suggestion_and_case_never_matters() -> None:
    routes = [RouteDeclaration(("GET",), "/", ("GRAPH", "zzz"), ())]
    with pytest.raises(ConfigurationError) as refused:
        check_routes(routes, ["graph", "github"])
    assert refused.value.problems == [
        "route GET /: no service named 'zzz'; configured services: github, graph"
    ]


def test_services_are_typed_per_shell() -> None:
    assert typing.get_type_hints(get_services)["return"] == Services[AsyncServiceClient]
    assert typing.get_type_hints(flask_services)["return"] == Services[SyncServiceClient]
    relay = Relay(Settings.model_validate(SETTINGS))
    try:
        from authrelay.principal import ANONYMOUS, NO_CREDENTIALS

        sync = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=False)
        assert isinstance(sync["my-api"], SyncServiceClient)
    finally:
        relay.close()


def test_django_routes_are_read_through_include_and_re_path() -> None:
    from integration_support import setup_django

    setup_django()
    from django.test.utils import override_settings
    from django.urls import include, path, re_path

    from authrelay.django import require, with_lifespan
    from authrelay.django import uses as django_uses

    @require("stock.read")
    @django_uses("Inventory")
    def stock(request: Any, id: str) -> Any:
        raise AssertionError("never called")

    urlconf = types.ModuleType("nested_urls")
    urlconf.urlpatterns = [  # type: ignore[attr-defined]
        path("api/", include([re_path(r"^stock/(?P<id>\d+)$", stock)]))
    ]
    with override_settings(ROOT_URLCONF=urlconf):
        routes = collect(with_lifespan(Starlette()))
    assert routes == [
        RouteDeclaration(("*",), r"/api/stock/(?P<id>\d+)", ("Inventory",), ("stock.read",))
    ]
