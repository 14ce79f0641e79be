"""FastAPI specifics: the OpenAPI document stays clean, dependencies work over uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from integration_apps import fastapi_app
from integration_support import relay_settings

from authrelay import Relay, Settings
from authrelay.fastapi import require
from authrelay.testing import IdentityProvider
from authrelay.testing.servers import serve_asgi


@pytest.fixture(scope="module")
def url(idp: IdentityProvider, downstream: str) -> Iterator[str]:
    relay = Relay(Settings.model_validate(relay_settings(idp.issuer, downstream)))
    with serve_asgi(fastapi_app(relay)) as base:
        yield base


@pytest.fixture(scope="module")
def schema(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _parameters(schema: dict[str, Any], path: str) -> list[str]:
    return [p["name"] for p in schema["paths"][path]["get"].get("parameters", [])]


def test_openapi_has_no_dependency_parameters(schema: dict[str, Any]) -> None:
    for path in ("/open", "/me", "/orders", "/downstream"):
        assert _parameters(schema, path) == [], path
    assert sorted(_parameters(schema, "/items/{item_id}")) == ["item_id", "limit"]


def test_openapi_declares_the_bearer_scheme(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schema["paths"]["/me"]["get"]["security"] == [{"bearer": []}]


def test_path_and_query_parameters_still_work_beside_the_principal(
    url: str, idp: IdentityProvider
) -> None:
    token = idp.mint_access_token(sub="alice")
    response = httpx.get(
        f"{url}/items/7", params={"limit": 3}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json()["item_id"] == 7 and response.json()["limit"] == 3
    assert httpx.get(f"{url}/items/7").status_code == 401


def test_optional_principal_sees_a_valid_token(url: str, idp: IdentityProvider) -> None:
    token = idp.mint_access_token(sub="alice")
    response = httpx.get(f"{url}/open", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["sub"] == "alice"


def test_require_refuses_malformed_scopes() -> None:
    with pytest.raises(TypeError, match="scope names"):
        require(scopes=["orders.read", ""])
