"""Each example app, imported and served as its docstring says, behaves as documented."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager

import httpx
import pytest

from authrelay import Settings
from authrelay.testing import IdentityProvider
from authrelay.testing.servers import serve_asgi, serve_wsgi

EXAMPLES = ["starlette", "fastapi", "flask", "django-wsgi", "django-asgi"]
JSON = {"Accept": "application/json"}


def _server(name: str) -> AbstractContextManager[str]:
    if name == "django-wsgi":
        return serve_wsgi(importlib.import_module("examples.django_app.wsgi").application)
    if name == "django-asgi":
        return serve_asgi(importlib.import_module("examples.django_app.asgi").application)
    module = importlib.import_module(f"examples.{name}_app")
    return serve_wsgi(module.app) if name == "flask" else serve_asgi(module.app)


@pytest.fixture(scope="module", params=EXAMPLES)
def url(request: pytest.FixtureRequest, example_env: dict[str, str]) -> Iterator[str]:
    with _server(request.param) as base:
        yield base


def _bearer(idp: IdentityProvider, scope: str) -> tuple[str, dict[str, str]]:
    token = idp.mint_access_token(sub="alice", scope=scope, claims={"name": "Alice"})
    return token, {"Authorization": f"Bearer {token}", **JSON}


def test_open_route_greets_anonymous_callers(url: str) -> None:
    response = httpx.get(f"{url}/", headers=JSON)
    assert response.status_code == 200
    assert response.json() == {"signed_in": False, "name": ""}


def test_me_needs_a_caller(url: str) -> None:
    assert httpx.get(f"{url}/me", headers=JSON).status_code == 401
    browser = httpx.get(f"{url}/me", headers={"Accept": "text/html"})
    assert browser.status_code == 302
    assert browser.headers["location"] == "/auth/idp/login?next=/me"


def test_me_returns_the_principal(url: str, example_idp: IdentityProvider) -> None:
    _, headers = _bearer(example_idp, "orders.read")
    response = httpx.get(f"{url}/me", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["kind"] == "bearer"
    assert response.json()["name"] == "Alice"


def test_scoped_route_names_the_missing_scope(url: str, example_idp: IdentityProvider) -> None:
    _, headers = _bearer(example_idp, "orders.write")
    response = httpx.get(f"{url}/scopes", headers=headers)
    assert response.status_code == 403
    assert 'scope="orders.read"' in response.headers["www-authenticate"]
    _, headers = _bearer(example_idp, "orders.read")
    assert httpx.get(f"{url}/scopes", headers=headers).status_code == 200


def test_orders_route_calls_the_service_with_an_exchanged_token(
    url: str, example_idp: IdentityProvider
) -> None:
    token, headers = _bearer(example_idp, "orders.read")
    response = httpx.get(f"{url}/orders", headers=headers)
    assert response.status_code == 200, response.text
    echo = response.json()
    assert echo["sub"] == "alice"
    assert echo["aud"] == "api://orders"
    assert echo["token_sha256"] != hashlib.sha256(token.encode()).hexdigest()  # RFC 8693


def test_example_settings_file_is_valid_with_its_variables(example_env: dict[str, str]) -> None:
    from examples.starlette_app import SETTINGS_FILE

    settings = Settings.from_toml(SETTINGS_FILE, env=example_env)
    assert settings.bearer is not None and settings.bearer.issuer == example_env["AUTHRELAY_ISSUER"]
    assert list(settings.connectors) == ["idp"]
    assert settings.services["orders"].flow == "token_exchange"
