"""Identity over real servers, the same assertions for every framework integration.

Starlette and FastAPI under uvicorn, Flask under werkzeug's threaded server, Django
under both WSGI and ASGI; bearer tokens from the test identity provider on a loopback
port, session cookies from the relay's own session store.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from integration_support import Served, relay_settings, serve_framework, session_cookie

from authrelay.testing import IdentityProvider

FRAMEWORKS = ["starlette", "fastapi", "flask", "django-wsgi", "django-asgi"]
JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture(scope="module", params=FRAMEWORKS)
def served(
    request: pytest.FixtureRequest, idp: IdentityProvider, downstream: str
) -> Iterator[Served]:
    with serve_framework(request.param, relay_settings(idp.issuer, downstream)) as served:
        yield served


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **JSON}


def test_open_route_answers_anonymous_callers(served: Served) -> None:
    response = httpx.get(f"{served.url}/open", headers=JSON)
    assert response.status_code == 200
    assert response.json()["authenticated"] is False
    assert response.json()["kind"] == "anonymous"


def test_e_missing_api_call_gets_401_with_bare_challenge(served: Served) -> None:
    response = httpx.get(f"{served.url}/me", headers=JSON)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="authrelay"'
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "unauthorized"


def test_e_login_browser_gets_302_to_login_with_next(served: Served) -> None:
    response = httpx.get(f"{served.url}/me", headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["location"] == "/auth/idp/login?next=/me"


def test_br01_valid_bearer_token_gives_the_principal(served: Served, idp: IdentityProvider) -> None:
    token = idp.mint_access_token(sub="alice", scope="orders.read", claims={"name": "Alice"})
    response = httpx.get(f"{served.url}/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["authenticated"], body["kind"], body["sub"]) == (True, "bearer", "alice")
    assert body["name"] == "Alice"


def test_scoped_route_admits_a_token_with_the_scope(served: Served, idp: IdentityProvider) -> None:
    token = idp.mint_access_token(sub="alice", scope="orders.read orders.write")
    response = httpx.get(f"{served.url}/orders", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["scopes"] == ["orders.read", "orders.write"]


def test_e_scope_token_without_the_scope_gets_403_naming_it(
    served: Served, idp: IdentityProvider
) -> None:
    token = idp.mint_access_token(sub="alice", scope="orders.write")
    response = httpx.get(f"{served.url}/orders", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="orders.read"' in challenge


@pytest.mark.parametrize(
    ("case", "mint"),
    [
        ("expired", {"expires_in": -3600}),
        ("wrong audience", {"audience": "https://notes.local", "scope": "notes.read"}),
        ("other key", {"key": "other"}),
    ],
)
def test_jw01_jw06_jw07_bad_tokens_get_401_invalid_token(
    served: Served, idp: IdentityProvider, case: str, mint: dict[str, object]
) -> None:
    token = idp.mint_access_token(**{"sub": "alice", "scope": "orders.read", **mint})
    for path in ("/me", "/open"):  # BR-06: never downgraded to anonymous, even when open
        response = httpx.get(f"{served.url}{path}", headers=bearer(token))
        assert response.status_code == 401, (case, path, response.text)
        assert response.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert token not in response.text  # BR-05
        assert token.split(".")[1] not in str(response.headers)


def test_br03_two_authorization_headers_get_400(served: Served, idp: IdentityProvider) -> None:
    token = idp.mint_access_token(sub="alice", scope="orders.read")
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    response = httpx.get(f"{served.url}/me", headers=[*headers, ("Accept", "application/json")])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_request"'


def test_session_cookie_gives_the_principal(served: Served) -> None:
    cookie = session_cookie(served.relay, "alice", "Alice")
    response = httpx.get(f"{served.url}/me", headers={"Cookie": cookie, **JSON})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["kind"], body["subject"], body["name"]) == ("session", "alice", "Alice")


def test_e_scope_session_without_token_scopes_gets_403(served: Served) -> None:
    cookie = session_cookie(served.relay, "bob", "Bob")
    response = httpx.get(f"{served.url}/orders", headers={"Cookie": cookie, **JSON})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


def test_session_cookie_of_another_relay_is_anonymous_and_cleared(served: Served) -> None:
    cookie = session_cookie(served.relay)
    name, value = cookie.split("=", 1)
    tampered = f"{name}={value[:-4]}{'AAAA' if not value.endswith('AAAA') else 'BBBB'}"
    response = httpx.get(f"{served.url}/open", headers={"Cookie": tampered, **JSON})
    assert response.status_code == 200
    assert response.json()["authenticated"] is False
    cleared = response.headers["set-cookie"]
    assert cleared.startswith(f"{name}=") and "Max-Age=0" in cleared
    assert "Cookie" in response.headers["vary"]
    protected = httpx.get(f"{served.url}/me", headers={"Cookie": tampered, **JSON})
    assert protected.status_code == 401


def test_service_call_carries_a_token_for_the_caller(served: Served, idp: IdentityProvider) -> None:
    services = pytest.importorskip("authrelay.services")
    if not hasattr(services, "ServiceClient"):
        pytest.skip("the downstream ServiceClient has not landed yet")
    token = idp.mint_access_token(sub="alice", scope="orders.read")
    response = httpx.get(f"{served.url}/downstream", headers=bearer(token))
    assert response.status_code == 200, response.text
    echo = response.json()
    assert echo["path"] == "/echo"
    assert echo["sub"] == "alice"  # INV-3: minted for this caller
    assert echo["cookie_forwarded"] is False  # DS-02
