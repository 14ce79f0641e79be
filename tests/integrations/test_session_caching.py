"""SE-08 in every framework integration: an answer that depended on the session cookie
carries ``Vary: Cookie`` and, when the app chose no caching, ``Cache-Control: private``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from integration_support import Served, relay_settings, serve_framework, session_cookie

from authrelay.testing import IdentityProvider

FRAMEWORKS = ["starlette", "fastapi", "flask", "django-wsgi", "django-asgi"]


@pytest.fixture(scope="module", params=FRAMEWORKS)
def served(
    request: pytest.FixtureRequest, idp: IdentityProvider, downstream: str
) -> Iterator[Served]:
    with serve_framework(request.param, relay_settings(idp.issuer, downstream)) as served:
        yield served


def _items(response: httpx.Response, name: str) -> list[str]:
    joined = ",".join(response.headers.get_list(name))
    return [item.strip().lower() for item in joined.split(",") if item.strip()]


def test_se08_session_answers_vary_on_cookie_and_are_private(served: Served) -> None:
    cookie = session_cookie(served.relay)
    response = httpx.get(
        f"{served.url}/me", headers={"cookie": cookie, "accept": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["authenticated"] is True
    assert "cookie" in _items(response, "vary"), served.name
    assert _items(response, "cache-control") == ["private"], served.name
    anonymous = httpx.get(f"{served.url}/open", headers={"accept": "application/json"})
    assert "private" not in _items(anonymous, "cache-control")
