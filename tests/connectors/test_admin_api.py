"""The connector admin API over real HTTP, under both shells (issue 18 §4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from connector_helpers import Running, run_app

from authrelay import ConfigurationError, Relay
from authrelay.testing import IdentityProvider

ADMIN = "authrelay.admin"


@pytest.fixture
def app(idp: IdentityProvider, shell: str, tmp_path: Path) -> Iterator[Running]:
    """Both shells, on a SQLite store, with the admin API on."""
    with run_app(
        idp,
        wsgi=shell == "wsgi",
        bearer={"issuer": idp.issuer, "audience": "api://orders"},
        admin={"enabled": True},
        store={"url": f"sqlite:///{tmp_path / 'relay.db'}"},
    ) as running:
        yield running


def _admin(idp: IdentityProvider, scope: str = ADMIN) -> dict[str, str]:
    return {"authorization": f"Bearer {idp.mint_access_token(scope=scope)}"}


def _url(app: Running, path: str = "") -> str:
    return f"{app.base}/auth/admin/connectors{path}"


def test_admin_lists_and_shows_connectors_without_secrets(
    app: Running, idp: IdentityProvider
) -> None:
    listed = app.client.get(_url(app), headers=_admin(idp))
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["connectors"]
    assert item["id"] == "idp" and item["enabled"] is True
    assert item["target"] == "idp" and item["connector_id"] == "oidc"
    assert item["config"]["client_secret"] == "**********"
    assert "test-secret" not in listed.text
    one = app.client.get(_url(app, "/idp"), headers=_admin(idp))
    assert one.json() == item


def test_admin_patch_changes_the_connector_and_masked_secret_is_kept(
    app: Running, idp: IdentityProvider
) -> None:
    shown = app.client.get(_url(app, "/idp"), headers=_admin(idp)).json()
    changed = app.client.patch(
        _url(app, "/idp"),
        headers=_admin(idp),
        json={
            "config": {**shown["config"], "scopes": ["openid", "email"]},  # secret masked
            "metadata": {"logo": "https://app.example/idp.svg"},
            "sync_profile": True,
        },
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["logo"] == "https://app.example/idp.svg" and body["sync_profile"] is True
    assert body["overrides"] == {"config": ["scopes"], "metadata": ["logo"]}
    assert app.relay.connectors.settings_of("idp").client_secret.get_secret_value() == (  # type: ignore[union-attr]
        "test-secret"
    )
    listing = app.client.get(f"{app.base}/auth/connectors").json()["connectors"]
    assert listing[0]["logo"] == "https://app.example/idp.svg"
    start = app.client.get(f"{app.base}/auth/idp/login")
    assert "scope=openid+email" in start.headers["location"]


def test_admin_disable_hides_the_connector_and_enable_brings_it_back(
    app: Running, idp: IdentityProvider
) -> None:
    off = app.client.post(_url(app, "/idp/disable"), headers=_admin(idp))
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert app.client.get(f"{app.base}/auth/connectors").json() == {"connectors": []}
    assert app.client.get(f"{app.base}/auth/idp/login").status_code == 404
    on = app.client.post(_url(app, "/idp/enable"), headers=_admin(idp))
    assert on.status_code == 200 and on.json()["enabled"] is True
    assert app.client.get(f"{app.base}/auth/idp/login").status_code == 302


def test_admin_refuses_a_target_change_with_409(app: Running, idp: IdentityProvider) -> None:
    refused = app.client.patch(
        _url(app, "/idp"), headers=_admin(idp), json={"metadata": {"target": "other"}}
    )
    assert refused.status_code == 409
    assert refused.json()["error"] == "target_immutable"
    assert "cannot change" in refused.json()["error_description"]
    same = app.client.patch(
        _url(app, "/idp"), headers=_admin(idp), json={"metadata": {"target": "idp"}}
    )
    assert same.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "error", "says"),
    [
        (b"{not json", 400, "invalid_json", "not valid JSON"),
        (b'{"config": ' * 5000 + b"{}" + b"}" * 5000, 400, "invalid_json", "too deep"),
        (b'{"enabled": true, "enabled": false}', 400, "invalid_json", "duplicate member"),
        (b"[]", 400, "invalid_request", "JSON object"),
        (b'{"colour": 1}', 400, "invalid_request", "unknown member(s) colour"),
        (b'{"config": {"client_idd": "x"}}', 400, "invalid_connector_change", "client_idd"),
        (b'{"config": {"standard": "oauth2"}}', 400, "invalid_connector_change", "settings file"),
        (
            b'{"config": {"issuer": "http://sso.example"}}',
            400,
            "invalid_connector_change",
            "connectors.idp.issuer",
        ),
        (
            b'{"config": {"token_endpoint_auth_method": "private_key_jwt"}}',
            400,
            "invalid_connector_change",
            "private_key",
        ),
        (b'{"enabled": "yes"}', 400, "invalid_request", "true or false"),
    ],
)
def test_admin_bad_input_gets_a_clear_400(
    app: Running, idp: IdentityProvider, body: bytes, status: int, error: str, says: str
) -> None:
    before = app.client.get(_url(app, "/idp"), headers=_admin(idp)).json()
    answer = app.client.patch(
        _url(app, "/idp"),
        headers={**_admin(idp), "content-type": "application/json"},
        content=body,
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert says in answer.json()["error_description"]
    assert app.client.get(_url(app, "/idp"), headers=_admin(idp)).json() == before


def test_admin_needs_a_bearer_token_with_the_scope(app: Running, idp: IdentityProvider) -> None:
    anonymous = app.client.get(_url(app))
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == f'Bearer scope="{ADMIN}"'
    wrong = app.client.get(_url(app), headers=_admin(idp, scope="orders.read"))
    assert wrong.status_code == 403 and wrong.json()["error"] == "insufficient_scope"
    bad = app.client.get(_url(app), headers={"authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    assert app.client.post(_url(app, "/idp/disable")).status_code == 401
    assert app.client.get(f"{app.base}/auth/idp/login").status_code == 302  # nothing changed


def test_admin_a_session_cookie_is_never_enough(app: Running, idp: IdentityProvider) -> None:
    """CSRF: a signed-in browser cannot change connectors, whatever its user may do."""
    app.login()
    assert app.me()["authenticated"] is True
    refused = app.client.post(_url(app, "/idp/disable"))
    assert refused.status_code == 401
    assert app.client.get(f"{app.base}/auth/idp/login").status_code == 302


def test_admin_unknown_connector_and_methods(app: Running, idp: IdentityProvider) -> None:
    assert app.client.get(_url(app, "/nope"), headers=_admin(idp)).json()["error"] == (
        "unknown_connector"
    )
    assert app.client.delete(_url(app, "/idp"), headers=_admin(idp)).status_code == 405
    assert app.client.get(_url(app, "/idp/disable"), headers=_admin(idp)).status_code == 405


def test_admin_api_is_off_by_default(idp: IdentityProvider) -> None:
    with run_app(idp, bearer={"issuer": idp.issuer, "audience": "api://orders"}) as app:
        answer = app.client.get(_url(app), headers=_admin(idp))
        assert answer.status_code == 404


def test_admin_needs_bearer_settings() -> None:
    from connector_helpers import app_settings

    with pytest.raises(ConfigurationError) as info:
        Relay(app_settings("https://idp.example", "https://app.example", admin={"enabled": True}))
    assert any(p.startswith("admin.enabled: ") for p in info.value.problems)


def test_admin_scope_setting_is_used(idp: IdentityProvider) -> None:
    with run_app(
        idp,
        bearer={"issuer": idp.issuer, "audience": "api://orders"},
        admin={"enabled": True, "scope": "ops"},
    ) as app:
        assert app.client.get(_url(app), headers=_admin(idp)).status_code == 403
        assert app.client.get(_url(app), headers=_admin(idp, scope="ops")).status_code == 200
