"""Serve the examples as users run them: settings from ``examples/authrelay.toml``.

The TOML's ``${VAR}``s point at a test identity provider and a downstream orders service,
both on 127.0.0.1, for the whole session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authrelay.testing import IdentityProvider, serve_identity_provider
from authrelay.testing.pytest_plugin import default_provider_config
from authrelay.testing.servers import serve_asgi

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # ``examples`` is imported from the project root
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def example_idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(**default_provider_config())
    with serve_identity_provider(provider):
        yield provider


async def _orders(request: Request) -> JSONResponse:
    """The orders service: says whose token it got, never the token itself."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    claims: dict[str, Any] = {}
    if scheme.lower() == "bearer" and token.count(".") == 2:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return JSONResponse(
        {
            "sub": claims.get("sub"),
            "aud": claims.get("aud"),
            "token_sha256": hashlib.sha256(token.encode()).hexdigest() if token else None,
        }
    )


@pytest.fixture(scope="session")
def orders_url() -> Iterator[str]:
    with serve_asgi(Starlette(routes=[Route("/orders", _orders)])) as url:
        yield url


@pytest.fixture(scope="session")
def example_env(example_idp: IdentityProvider, orders_url: str) -> Iterator[dict[str, str]]:
    """The environment ``examples/authrelay.toml`` reads, set for the session."""
    env = {
        "AUTHRELAY_SECRET": "example-tests-secret-key-0123456789ab",
        "AUTHRELAY_ISSUER": example_idp.issuer,
        "AUTHRELAY_CLIENT_SECRET": "test-secret",
        "ORDERS_URL": orders_url,
        "DJANGO_SETTINGS_MODULE": "examples.django_app.settings",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env
