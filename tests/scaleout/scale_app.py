"""The app the scale-out tests serve: in process (``build``) or under uvicorn (``create_app``)."""

from __future__ import annotations

import json
import os
from typing import Any

from scale_support import digest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authrelay import AuthRelayMiddleware, Relay, Settings


async def header(request: Request) -> JSONResponse:
    """The service's credential, as a digest (never the token itself)."""
    client = request.state.services[request.path_params["service"]]
    value = await client.authorization_header()
    return JSONResponse({"subject": request.user.subject, "header": digest(value)})


async def call(request: Request) -> JSONResponse:
    """One downstream call through the service client (a 401 is retried once)."""
    client = request.state.services[request.path_params["service"]]
    response = await client.get("/whoami")
    return JSONResponse({"status": response.status_code})


async def whoami(request: Request) -> JSONResponse:
    """Who the relay says is calling."""
    user: Any = request.user
    return JSONResponse({"kind": user.kind, "subject": user.subject})


async def plain(request: Request) -> JSONResponse:
    """A route that needs no token and no store."""
    return JSONResponse({"ok": True})


def build(*, relay: Relay | None = None, settings: Settings | None = None) -> Starlette:
    """The app behind the middleware, for a given relay or settings."""
    app = Starlette(
        routes=[
            Route("/header/{service}", header),
            Route("/call/{service}", call),
            Route("/whoami", whoami),
            Route("/plain", plain),
        ]
    )
    if relay is not None:
        app.add_middleware(AuthRelayMiddleware, relay=relay)
    else:
        app.add_middleware(AuthRelayMiddleware, settings=settings)
    return app


def create_app() -> Starlette:
    """uvicorn factory: settings come as JSON in ``AUTHRELAY_SCALE_SETTINGS``."""
    data = json.loads(os.environ["AUTHRELAY_SCALE_SETTINGS"])
    return build(settings=Settings.model_validate(data))
