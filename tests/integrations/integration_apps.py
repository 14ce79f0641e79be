"""The same small app in every framework, for the end-to-end identity tests.

Routes: ``/open`` (anyone), ``/me`` (signed in), ``/orders`` (scope ``orders.read``),
``/downstream`` (scope ``orders.read``; calls the ``orders`` service for the caller) and
``/call/{service}`` (anyone; calls ``/echo`` of that service for the caller, and lets
every authrelay error propagate).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import flask
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from authrelay import AuthRelayMiddleware, Principal, Relay
from authrelay import fastapi as relay_fastapi
from authrelay import flask as relay_flask
from authrelay import starlette as relay_starlette
from authrelay.wsgi import AuthRelayWSGIMiddleware


def describe(user: Principal, scopes: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {
        "authenticated": user.is_authenticated,
        "subject": user.subject,
        "sub": user.claims.get("sub"),
        "kind": user.kind,
        "name": user.display_name,
        "scopes": sorted(scopes),
    }


# -- Starlette -------------------------------------------------------------------------


def starlette_app(relay: Relay, lifespan_log: list[str] | None = None) -> Starlette:
    log = lifespan_log if lifespan_log is not None else []

    async def open_route(request: Request) -> JSONResponse:
        return JSONResponse(describe(request.user, request.auth.scopes))

    @relay_starlette.requires()
    async def me(request: Request) -> JSONResponse:
        return JSONResponse(describe(request.user, request.auth.scopes))

    @relay_starlette.requires("orders.read")
    def orders(request: Request) -> JSONResponse:  # a sync endpoint (thread pool)
        return JSONResponse(describe(request.user, request.auth.scopes))

    @relay_starlette.requires("orders.read")
    async def downstream(request: Request) -> JSONResponse:
        response = await relay_starlette.get_services(request)["orders"].get("/echo")
        return JSONResponse(response.json(), status_code=response.status_code)

    async def call(request: Request) -> JSONResponse:
        service = relay_starlette.get_services(request)[request.path_params["service"]]
        response = await service.get("/echo")
        return JSONResponse(response.json(), status_code=response.status_code)

    @relay_starlette.requires(redirect_to_login=False)
    async def api_only(request: Request) -> JSONResponse:
        return JSONResponse(describe(request.user))

    class Profile(HTTPEndpoint):
        @relay_starlette.requires("orders.write")
        async def get(self, request: Request) -> JSONResponse:
            return JSONResponse(describe(request.user, request.auth.scopes))

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(describe(websocket.user, websocket.auth.scopes))
        await websocket.close()

    @relay_starlette.requires("orders.read")
    async def guarded_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(describe(websocket.user, websocket.auth.scopes))
        await websocket.close()

    async def lifespan_state(request: Request) -> JSONResponse:
        return JSONResponse({"log": log})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.append("startup")
        yield
        log.append("shutdown")

    return Starlette(
        routes=[
            Route("/open", open_route),
            Route("/me", me),
            Route("/orders", orders),
            Route("/downstream", downstream),
            Route("/call/{service}", call),
            Route("/api-only", api_only),
            Route("/profile", Profile),
            Route("/lifespan", lifespan_state),
            WebSocketRoute("/ws", socket),
            WebSocketRoute("/ws/guarded", guarded_socket),
        ],
        middleware=[Middleware(AuthRelayMiddleware, relay=relay)],
        lifespan=lifespan,
    )


# -- FastAPI ---------------------------------------------------------------------------


def fastapi_app(relay: Relay) -> FastAPI:
    app = FastAPI()
    app.add_middleware(AuthRelayMiddleware, relay=relay)

    @app.get("/open")
    async def open_route(user: relay_fastapi.OptionalPrincipal) -> dict[str, Any]:
        return describe(user)

    @app.get("/me")
    async def me(user: relay_fastapi.CurrentPrincipal) -> dict[str, Any]:
        return describe(user)

    @app.get("/orders")
    def orders(  # a sync endpoint (thread pool)
        user: Annotated[Principal, relay_fastapi.require(scopes=["orders.read"])],
        request: Request,
    ) -> dict[str, Any]:
        return describe(user, request.auth.scopes)

    @app.get("/downstream", dependencies=[relay_fastapi.require(scopes="orders.read")])
    async def downstream(orders: Annotated[Any, relay_fastapi.Service("orders")]) -> Any:
        response = await orders.get("/echo")
        return response.json()

    @app.get("/call/{service}")
    async def call(service: str, request: Request) -> Any:
        response = await relay_starlette.get_services(request)[service].get("/echo")
        return response.json()

    @app.get("/items/{item_id}")
    async def item(
        item_id: int, user: relay_fastapi.CurrentPrincipal, limit: int = 10
    ) -> dict[str, Any]:
        return {"item_id": item_id, "limit": limit, "subject": user.subject}

    return app


# -- Flask -----------------------------------------------------------------------------


def flask_app(relay: Relay) -> flask.Flask:
    app = flask.Flask(__name__)
    relay_flask.init_app(app, relay=relay)

    @app.get("/open")
    def open_route() -> dict[str, Any]:
        return describe(relay_flask.principal(), relay_flask.credentials().scopes)

    @app.get("/me")
    @relay_flask.require()
    def me() -> dict[str, Any]:
        return describe(relay_flask.principal(), relay_flask.credentials().scopes)

    @app.get("/orders")
    @relay_flask.require("orders.read")
    def orders() -> dict[str, Any]:
        return describe(relay_flask.principal(), relay_flask.credentials().scopes)

    @app.get("/downstream")
    @relay_flask.require("orders.read")
    def downstream() -> Any:
        response = relay_flask.services()["orders"].get("/echo")
        return response.json(), response.status_code

    @app.get("/call/<service>")
    def call(service: str) -> Any:
        response = relay_flask.services()[service].get("/echo")
        return response.json(), response.status_code

    return app


# -- bare WSGI -------------------------------------------------------------------------


def wsgi_app(relay: Relay) -> Any:
    """A plain WSGI app behind ``AuthRelayWSGIMiddleware``: only ``/call/{service}``."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path: str = environ["PATH_INFO"]
        if not path.startswith("/call/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        response = environ["authrelay.services"][path[len("/call/") :]].get("/echo")
        start_response(f"{response.status_code} Status", [("Content-Type", "application/json")])
        return [response.content]

    return AuthRelayWSGIMiddleware(app, relay=relay)
