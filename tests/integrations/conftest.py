"""Real servers for the end-to-end identity tests.

One test identity provider and one downstream echo service per session, all on
127.0.0.1; each framework's app is served per module (uvicorn for ASGI, werkzeug's
threaded server for WSGI) with a relay of its own (see ``integration_support``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authrelay.testing import IdentityProvider, Resource, serve_identity_provider
from authrelay.testing.servers import serve_asgi


@pytest.fixture(scope="session")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(
        resources=[
            Resource("api://orders", ["orders.read", "orders.write"]),
            Resource("https://notes.local", ["notes.read"]),
        ]
    )
    with serve_identity_provider(provider):
        yield provider


def _claims(request: Request) -> dict[str, Any]:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


async def _echo(request: Request) -> JSONResponse:
    claims = _claims(request)
    return JSONResponse(
        {
            "path": request.url.path,
            "authorized": "authorization" in request.headers,
            "sub": claims.get("sub"),
            "aud": claims.get("aud"),
            "cookie_forwarded": "cookie" in request.headers,
        }
    )


@pytest.fixture(scope="session")
def downstream() -> Iterator[str]:
    """The ``orders`` service: echoes who the token it received was minted for."""
    with serve_asgi(Starlette(routes=[Route("/echo", _echo)])) as url:
        yield url
