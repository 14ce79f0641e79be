"""authrelay with Starlette.

Run it from the project root, against the test identity provider::

    authrelay idp                                   # in one terminal
    uvicorn examples.starlette_app:app              # in another

then open http://127.0.0.1:8000/me (sign in as alice). Settings come from
``examples/authrelay.toml``; its ``${VAR}``s default to ``authrelay idp``'s values (see
``examples/local_provider.py``), or come from the caller of :func:`create_app`.
"""

from __future__ import annotations

from examples.local_provider import SETTINGS_FILE, load_settings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay.services import AsyncServiceClient
from authrelay.starlette import get_principal, requires, uses

__all__ = ["SETTINGS_FILE", "app", "create_app"]


async def home(request: Request) -> JSONResponse:
    """Open to everyone; says who is calling, if anyone."""
    user = get_principal(request)
    return JSONResponse({"signed_in": user.is_authenticated, "name": user.display_name})


@requires()
async def me(request: Request) -> JSONResponse:
    """Signed-in callers only (401 for APIs, a login redirect for browsers)."""
    user = get_principal(request)
    return JSONResponse({"subject": user.subject, "kind": user.kind, "name": user.display_name})


@requires("orders.read")
async def scopes(request: Request) -> JSONResponse:
    """Callers whose token carries ``orders.read`` (403 insufficient_scope otherwise)."""
    return JSONResponse({"scopes": sorted(request.auth.scopes)})


@requires("orders.read")
@uses("orders")  # checked against the settings at start-up
async def orders(request: Request, orders: AsyncServiceClient) -> JSONResponse:
    """Calls the orders service on behalf of the caller (a token is fetched on first use)."""
    response = await orders.get("/orders")
    return JSONResponse(response.json(), status_code=response.status_code)


def create_app(settings: Settings | None = None, *, relay: Relay | None = None) -> Starlette:
    """The example app; settings default to ``examples/authrelay.toml``."""
    if relay is None:
        relay = Relay(settings or load_settings())
    return Starlette(
        routes=[
            Route("/", home),
            Route("/me", me),
            Route("/scopes", scopes),
            Route("/orders", orders),
        ],
        middleware=[Middleware(AuthRelayMiddleware, relay=relay)],
    )


app = create_app()
