"""An authrelay error raised inside a view gets its error-model answer in every framework.

Each app's ``/call/{service}`` calls a service for the caller and lets the error
propagate: a token endpoint answering 503 (the test provider's fault switch), a session
caller on a service that needs a bearer token (401), a token endpoint asking for consent
(403) and a connected account lacking a scope (a browser is sent to connect it again).
Real servers on loopback: uvicorn for ASGI, werkzeug for WSGI.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from integration_support import Served, relay_settings, serve_framework, session_cookie

from authrelay.stores.records import StoredTokens
from authrelay.testing import IdentityProvider

FRAMEWORKS = ["starlette", "fastapi", "flask", "django-wsgi", "django-asgi", "wsgi"]
JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def _settings(issuer: str, downstream: str) -> dict[str, Any]:
    mapping = relay_settings(issuer, downstream)
    base = {"base_url": downstream, "allow_http": True}
    mapping["services"].update(
        {
            "exchange": {
                **base,
                "flow": "token_exchange",
                "subject": "bearer",  # a session user gets 401 here, not an exchange
                "audience": "api://orders",
                "scopes": ["orders.read"],
                "token_endpoint": f"{issuer}/token",
                "client": {"client_id": "app", "client_secret": "app-secret"},
                "token_retries": 0,
                "negative_cache_ttl": 0,
            },
            "linked": {**base, "flow": "connector", "connector": "idp", "scopes": ["orders.write"]},
        }
    )
    return mapping


@pytest.fixture(scope="module", params=FRAMEWORKS)
def served(
    request: pytest.FixtureRequest, idp: IdentityProvider, downstream: str
) -> Iterator[Served]:
    with serve_framework(request.param, _settings(idp.issuer, downstream)) as served:
        yield served


@pytest.fixture
def faults(idp: IdentityProvider) -> Iterator[IdentityProvider]:
    idp.faults.clear()
    idp.counters.reset()
    yield idp
    idp.faults.clear()


def _bearer(idp: IdentityProvider, sub: str) -> dict[str, str]:
    token = idp.mint_access_token(sub=sub, scope="orders.read")
    return {"Authorization": f"Bearer {token}", **JSON}


def test_e_upstream_token_endpoint_outage_in_a_view_is_503_with_retry_after(
    served: Served, faults: IdentityProvider
) -> None:
    faults.faults.add("token", status=503, retry_after=40, grant_type=EXCHANGE, count=None)
    response = httpx.get(f"{served.url}/call/exchange", headers=_bearer(faults, "alice"))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "40"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert body["service"] == "exchange"
    assert faults.counters.count(endpoint="token", grant_type=EXCHANGE, status=503) == 1


def test_e_missing_service_needing_a_bearer_token_in_a_view_is_401(served: Served) -> None:
    cookie = session_cookie(served.relay, "carol", "Carol")
    response = httpx.get(f"{served.url}/call/exchange", headers={"Cookie": cookie, **JSON})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="authrelay"'
    assert response.json()["error"] == "unauthorized"


def test_e_scope_token_endpoint_asking_for_consent_in_a_view_is_403(
    served: Served, faults: IdentityProvider
) -> None:
    faults.faults.add("token", error="consent_required", grant_type=EXCHANGE, count=None)
    response = httpx.get(f"{served.url}/call/exchange", headers=_bearer(faults, "dave"))
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "insufficient_scope"
    challenge = response.headers["www-authenticate"]
    assert challenge == 'Bearer error="insufficient_scope", scope="orders.read"'


def test_e_reauth_consent_for_a_missing_scope_redirects_a_browser(served: Served) -> None:
    relay = served.relay
    connector = relay.connectors.get("idp")
    assert connector is not None
    linked = StoredTokens(
        connector="idp",
        target="idp",
        issuer=connector.issuer,
        access_token="linked-access-token",
        expires_at=relay.clock() + 3600,
        scopes=("openid",),
    )
    assert relay.sync_driver.run(
        relay.connectors.store.save_tokens("erin", linked, expected_version=None)
    )
    cookie = {"Cookie": session_cookie(relay, "erin", "Erin")}
    browser = httpx.get(f"{served.url}/call/linked", headers={**cookie, **BROWSER})
    assert browser.status_code == 302, browser.text
    assert browser.headers["location"] == "/auth/idp/connect?scope=orders.write"
    api = httpx.get(f"{served.url}/call/linked", headers={**cookie, **JSON})
    assert api.status_code == 403, api.text
    assert api.json()["login_url"] == "/auth/idp/connect?scope=orders.write"
    assert (
        api.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="orders.write"'
    )
