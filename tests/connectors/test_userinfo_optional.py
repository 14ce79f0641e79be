"""UserInfo is optional (OIDC Core §5.3): ``fetch_userinfo = "auto"`` signs in from the
validated ID token when UserInfo refuses or fails, ``"required"`` keeps the strict
behaviour, ``"never"`` does not call it. ID-10 still holds whenever UserInfo answers."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from connector_helpers import run_app

from authrelay import Settings
from authrelay.errors import ConfigurationError
from authrelay.testing import IdentityProvider

FAULTS: dict[str, dict[str, Any]] = {
    "401": {"status": 401, "error": "invalid_token"},
    "403": {"status": 403, "error": "insufficient_scope"},
    "500": {"status": 500},
    "malformed": {"malformed": True},
    "dropped": {"drop": True},
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_id10_userinfo_refusal_signs_in_from_the_id_token(
    idp: IdentityProvider, shell: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    with run_app(idp, wsgi=shell == "wsgi") as app:
        idp.faults.add("userinfo", **FAULTS[fault])
        caplog.set_level(logging.WARNING, logger="authrelay")
        done = app.login("/after")
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/after"
        me = app.me()
        assert me["authenticated"] is True
        assert me["subject"] == "idp|alice"
        assert me["profile"]["email"] == "alice@example.test"  # from the ID token
    assert idp.counters.count(endpoint="userinfo") == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "userinfo_unavailable" in warnings[0].getMessage()
    message = warnings[0].getMessage()
    assert "connector=idp" in message
    assert "eyJ" not in message and "Bearer" not in message  # no token in the log


def test_userinfo_required_keeps_the_strict_behaviour(idp: IdentityProvider, shell: str) -> None:
    with run_app(idp, wsgi=shell == "wsgi", connector={"fetch_userinfo": "required"}) as app:
        idp.faults.add("userinfo", status=401, error="invalid_token")
        done = app.login()
        assert done.status_code == 502
        assert done.json()["error"] == "upstream_token_error"
        assert "user-info" in done.json()["error_description"]
        assert app.me()["authenticated"] is False
        # with UserInfo answering, a required fetch signs in as usual
        assert app.login().status_code == 303
        assert app.me()["authenticated"] is True


def test_userinfo_never_is_not_called(idp: IdentityProvider) -> None:
    with run_app(idp, connector={"fetch_userinfo": "never"}) as app:
        assert app.login().status_code == 303
        assert app.me()["profile"]["name"]
    assert idp.counters.count(endpoint="userinfo") == 0


def test_userinfo_answering_is_used_by_default(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        assert app.login().status_code == 303
    assert idp.counters.count(endpoint="userinfo") == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [(True, "auto"), (False, "never"), ("required", "required"), ("auto", "auto")],
)
def test_fetch_userinfo_setting_values(given: object, expected: str) -> None:
    settings = Settings.model_validate(
        {
            "secret_keys": ["x" * 32],
            "public_base_url": "https://app.example",
            "connectors": {
                "c": {
                    "standard": "oidc",
                    "issuer": "https://idp.example",
                    "client_id": "a",
                    "client_secret": "b",
                    "fetch_userinfo": given,
                }
            },
        }
    )
    assert settings.connectors["c"].fetch_userinfo == expected


def test_fetch_userinfo_unknown_value_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="fetch_userinfo"):
        Settings.model_validate(
            {
                "secret_keys": ["x" * 32],
                "public_base_url": "https://app.example",
                "connectors": {
                    "c": {
                        "standard": "oidc",
                        "issuer": "https://idp.example",
                        "client_id": "a",
                        "client_secret": "b",
                        "fetch_userinfo": "sometimes",
                    }
                },
            }
        )
