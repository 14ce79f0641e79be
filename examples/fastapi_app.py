"""authrelay with FastAPI.

Run it from the project root, against the test identity provider::

    authrelay idp                                   # in one terminal
    uvicorn examples.fastapi_app:app                # in another

then open http://127.0.0.1:8000/me (sign in as alice). Settings come from
``examples/authrelay.toml``; its ``${VAR}``s default to ``authrelay idp``'s values (see
``examples/local_provider.py``), or come from the caller of :func:`create_app`.
"""

from __future__ import annotations

from typing import Annotated, Any

from examples.local_provider import SETTINGS_FILE, load_settings
from fastapi import FastAPI

from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay.fastapi import (
    AsyncServiceClient,
    CurrentPrincipal,
    OptionalPrincipal,
    Service,
    require,
)

__all__ = ["SETTINGS_FILE", "app", "create_app"]


def create_app(settings: Settings | None = None, *, relay: Relay | None = None) -> FastAPI:
    """The example app; settings default to ``examples/authrelay.toml``."""
    if relay is None:
        relay = Relay(settings or load_settings())
    app = FastAPI(title="authrelay example")
    app.add_middleware(AuthRelayMiddleware, relay=relay)

    @app.get("/")
    async def home(user: OptionalPrincipal) -> dict[str, Any]:
        """Open to everyone; says who is calling, if anyone."""
        return {"signed_in": user.is_authenticated, "name": user.display_name}

    @app.get("/me")
    async def me(user: CurrentPrincipal) -> dict[str, Any]:
        """Signed-in callers only (401 for APIs, a login redirect for browsers)."""
        return {"subject": user.subject, "kind": user.kind, "name": user.display_name}

    @app.get("/scopes", dependencies=[require(scopes=["orders.read"])])
    async def scopes(user: CurrentPrincipal) -> dict[str, Any]:
        """Callers whose token carries ``orders.read`` (403 insufficient_scope otherwise)."""
        return {"subject": user.subject}

    @app.get("/orders", dependencies=[require(scopes=["orders.read"])])
    async def orders(orders: Annotated[AsyncServiceClient, Service("orders")]) -> Any:
        """Calls the orders service on behalf of the caller (a token is fetched on first use)."""
        response = await orders.get("/orders")
        return response.json()

    return app


app = create_app()
