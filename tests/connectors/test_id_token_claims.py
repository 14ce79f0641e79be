"""ID-09: ``auth_time`` when ``max_age`` was requested, ``acr`` when it was essential."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from connector_helpers import app_settings, query_of, run_app

from authrelay import CallbackError, Relay
from authrelay.connectors.idtoken import validate_id_token
from authrelay.testing import IdentityProvider


@pytest.fixture
def relay(idp: IdentityProvider) -> Iterator[Relay]:
    relay = Relay(app_settings(idp.issuer, "http://127.0.0.1:1"))
    yield relay
    relay.close()


def check(relay: Relay, id_token: str, **options: Any) -> dict[str, Any]:
    connector = relay.connectors.get("idp")
    assert connector is not None
    driver = relay.sync_driver
    endpoints = driver.run(connector.endpoints())
    flow = validate_id_token(
        connector, endpoints, id_token, now=time.time(), nonce="n-1", **options
    )
    return driver.run(flow)


@pytest.mark.parametrize(
    ("auth_time", "accepted"),
    [(None, False), (-3600, False), (-30, True)],
    ids=["missing", "too-old", "recent"],
)
def test_id09_auth_time_checked_when_max_age_was_requested(
    idp: IdentityProvider, relay: Relay, auth_time: int | None, accepted: bool
) -> None:
    value = None if auth_time is None else int(time.time()) + auth_time
    token = idp.mint_id_token(nonce="n-1", claims={"auth_time": value})
    if accepted:
        assert check(relay, token, max_age=300)["sub"] == "alice"
    else:
        with pytest.raises(CallbackError) as info:
            check(relay, token, max_age=300)
        assert info.value.code == "invalid_id_token"
    assert check(relay, token)["sub"] == "alice"  # not requested: not checked


@pytest.mark.parametrize(
    ("acr", "accepted"),
    [(None, False), ("urn:loa:1", False), ("urn:loa:2", True)],
    ids=["missing", "other", "requested"],
)
def test_id09_acr_checked_when_essential(
    idp: IdentityProvider, relay: Relay, acr: str | None, accepted: bool
) -> None:
    token = idp.mint_id_token(nonce="n-1", claims={"acr": acr})
    wanted = ("urn:loa:2", "urn:loa:3")
    if accepted:
        assert check(relay, token, acr_values=wanted)["acr"] == acr
    else:
        with pytest.raises(CallbackError) as info:
            check(relay, token, acr_values=wanted)
        assert info.value.code == "invalid_id_token"
    assert check(relay, token)["sub"] == "alice"  # not essential: not checked


def test_id09_essential_acr_is_requested_and_a_provider_without_acr_fails_the_login(
    idp: IdentityProvider,
) -> None:
    connector = {"acr_values": ["urn:loa:2"], "acr_essential": True, "max_age": 600}
    with run_app(idp, connector=connector) as app:
        start = app.client.get(f"{app.base}/auth/idp/login")
        params = query_of(start.headers["location"])
        assert params["acr_values"] == "urn:loa:2"
        assert params["max_age"] == "600"
        assert json.loads(params["claims"]) == {
            "id_token": {"acr": {"essential": True, "values": ["urn:loa:2"]}}
        }
        done = app.login()  # the test provider asserts no acr
        assert done.status_code == 400
        assert done.json()["error"] == "invalid_id_token"
        assert app.me()["authenticated"] is False


def test_id09_acr_values_alone_are_a_voluntary_request(idp: IdentityProvider) -> None:
    with run_app(idp, connector={"acr_values": ["urn:loa:2"], "max_age": 600}) as app:
        start = app.client.get(f"{app.base}/auth/idp/login")
        assert "claims" not in query_of(start.headers["location"])
        assert app.login().status_code == 303  # auth_time is recent; acr not required
        assert app.me()["authenticated"] is True


def test_acr_essential_needs_acr_values(idp: IdentityProvider) -> None:
    from authrelay.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="acr_values"):
        app_settings(idp.issuer, "http://127.0.0.1:1", connector={"acr_essential": True})
