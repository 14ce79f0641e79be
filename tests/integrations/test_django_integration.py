"""Django specifics: one relay per process, connector routes, errors a view raises."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from integration_support import Served, relay_settings, serve_django, setup_django

from authrelay.testing import IdentityProvider


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def served(
    request: pytest.FixtureRequest, idp: IdentityProvider, downstream: str
) -> Iterator[Served]:
    mapping = relay_settings(idp.issuer, downstream)
    with serve_django(mapping, asgi=request.param == "asgi") as served:
        yield served


def test_connector_login_route_is_served_under_the_prefix(
    served: Served, idp: IdentityProvider
) -> None:
    response = httpx.get(f"{served.url}/auth/idp/login?next=/me", headers={"Accept": "text/html"})
    assert response.status_code in (302, 303), response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == idp.issuer
    query = parse_qs(location.query)
    assert query["client_id"] == ["test-client"]
    assert query["code_challenge_method"] == ["S256"]
    assert response.headers["cache-control"] == "no-store"


def test_an_authrelay_error_raised_by_a_view_gets_its_http_answer(served: Served) -> None:
    response = httpx.get(f"{served.url}/raises", headers={"Accept": "application/json"})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'scope="admin"' in response.headers["www-authenticate"]


def test_the_relay_is_built_once_per_settings_object(
    idp: IdentityProvider, downstream: str
) -> None:
    setup_django()
    from django.test.utils import override_settings

    from authrelay.django import get_relay

    mapping = relay_settings(idp.issuer, downstream)
    with override_settings(AUTHRELAY=mapping, AUTHRELAY_SETTINGS_FILE=None):
        first = get_relay()
        assert get_relay() is first
    with override_settings(AUTHRELAY=dict(mapping), AUTHRELAY_SETTINGS_FILE=None):
        assert get_relay() is not first


def test_missing_or_double_configuration_is_refused_clearly() -> None:
    setup_django()
    from django.core.exceptions import ImproperlyConfigured
    from django.test.utils import override_settings

    from authrelay.django import get_relay

    with (
        override_settings(AUTHRELAY=None, AUTHRELAY_SETTINGS_FILE=None),
        pytest.raises(ImproperlyConfigured, match="exactly one of AUTHRELAY"),
    ):
        get_relay()
    with (
        override_settings(AUTHRELAY={}, AUTHRELAY_SETTINGS_FILE="x.toml"),
        pytest.raises(ImproperlyConfigured),
    ):
        get_relay()


def test_the_middleware_starts_the_background_loop_with_the_first_request(
    idp: IdentityProvider, downstream: str
) -> None:
    setup_django()
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.test.utils import override_settings

    from authrelay.django import AuthRelayMiddleware, get_relay

    mapping = relay_settings(idp.issuer, downstream)
    mapping["connectors"]["idp"]["refresh_ahead"] = "10m"
    with override_settings(AUTHRELAY=mapping, AUTHRELAY_SETTINGS_FILE=None):
        relay = get_relay()
        middleware = AuthRelayMiddleware(lambda request: HttpResponse("ok"))
        assert not relay.connectors.maintenance.running  # nothing at import (pre-fork servers)
        response = middleware(RequestFactory().get("/open"))
        assert response.status_code == 200
        assert relay.connectors.maintenance.running
        relay.close()
    assert not relay.connectors.maintenance.running
