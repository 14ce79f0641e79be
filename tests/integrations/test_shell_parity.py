"""Every shell answers the same through the one request pipeline.

The ASGI middleware (Starlette, FastAPI), the WSGI middleware (Flask, bare WSGI) and the
Django middleware (sync under WSGI, async under ASGI) each only extract the request and
map the pipeline's decision, so ``/auth/stats``, the connector routes, an unknown path
under the prefix, the browser's login redirect and a refused bearer get one answer
whatever the shell. The sidecar (its own endpoints, no prefix routes) refuses the same
bearer with the same error code. Real servers on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from integration_support import Served, relay_settings, serve_framework, session_cookie

from authrelay import Relay, Settings
from authrelay.sidecar import create_sidecar_app
from authrelay.testing import IdentityProvider
from authrelay.testing.servers import serve_asgi

SHELLS = ["starlette", "fastapi", "flask", "wsgi", "django-wsgi", "django-asgi"]
JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def _settings(issuer: str, downstream: str) -> dict[str, Any]:
    mapping = relay_settings(issuer, downstream)
    mapping["routes"] = {"stats": True}
    return mapping


@pytest.fixture(scope="module", params=SHELLS)
def served(
    request: pytest.FixtureRequest, idp: IdentityProvider, downstream: str
) -> Iterator[Served]:
    with serve_framework(request.param, _settings(idp.issuer, downstream)) as served:
        yield served


def test_stats_route_is_served_by_every_shell(served: Served) -> None:
    response = httpx.get(f"{served.url}/auth/stats", headers=JSON)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"counters", "latency"}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_stats_route_refuses_other_methods_in_every_shell(served: Served) -> None:
    response = httpx.delete(f"{served.url}/auth/stats", headers=JSON)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "GET"
    assert response.json() == {"error": "method_not_allowed"}


def test_connector_list_is_the_same_in_every_shell(served: Served) -> None:
    response = httpx.get(f"{served.url}/auth/connectors", headers=JSON)
    assert response.status_code == 200, response.text
    names = [connector["name"] for connector in response.json()["connectors"]]
    assert names == ["idp"]


def test_route_answer_for_a_session_caller_varies_on_cookie_in_every_shell(
    served: Served,
) -> None:
    cookie = session_cookie(served.relay, "dana", "Dana")
    response = httpx.get(f"{served.url}/auth/me", headers={"Cookie": cookie, **JSON})
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == "dana"
    assert "cookie" in response.headers["vary"].lower()
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/auth/nothing-here", "/auth/idp/nothing", "/auth"])
def test_unknown_path_under_the_prefix_is_the_same_404_in_every_shell(
    served: Served, path: str
) -> None:
    response = httpx.get(f"{served.url}{path}", headers=JSON)
    assert response.status_code == 404, response.text
    assert response.json() == {"error": "not_found"}
    assert response.headers["cache-control"] == "no-store"


def test_browser_without_a_session_is_sent_to_login_by_every_shell(served: Served) -> None:
    response = httpx.get(f"{served.url}/call/orders", headers=BROWSER)
    assert response.status_code == 302, response.text
    assert response.headers["location"] == "/auth/idp/login?next=/call/orders"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_api_caller_without_credentials_gets_the_same_401_from_every_shell(
    served: Served,
) -> None:
    response = httpx.get(f"{served.url}/call/orders", headers=JSON)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="authrelay"'
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize("path", ["/call/orders", "/auth/connectors"])
def test_two_bearer_tokens_are_the_same_400_in_every_shell(served: Served, path: str) -> None:
    headers = [("Authorization", "Bearer aaa"), ("Authorization", "Bearer bbb")]
    response = httpx.get(f"{served.url}{path}", headers=[*headers, ("Accept", "application/json")])
    if path.startswith("/auth"):  # the routes see the refused caller as anonymous
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_request"'
    assert response.json()["error"] == "invalid_request"


def test_sidecar_refuses_two_bearer_tokens_with_the_same_error(
    idp: IdentityProvider, downstream: str
) -> None:
    relay = Relay(Settings.model_validate(_settings(idp.issuer, downstream)))
    headers = [("Authorization", "Bearer aaa"), ("Authorization", "Bearer bbb")]
    with serve_asgi(create_sidecar_app(relay=relay)) as url:
        response = httpx.get(f"{url}/Validate", headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
