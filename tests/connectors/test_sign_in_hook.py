"""``on_sign_in`` from settings: the app's own user id becomes the principal's subject."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from connector_helpers import SIGN_INS, app_user_id, async_app_user_id, run_app

from authrelay import CallbackError
from authrelay.connectors import Profile
from authrelay.testing import IdentityProvider, OAuthClient, serve_identity_provider


@pytest.fixture(autouse=True)
def _forget_sign_ins() -> Iterator[None]:
    SIGN_INS.clear()
    yield
    SIGN_INS.clear()


def test_sync_hook_from_settings_names_the_subject(idp: IdentityProvider, shell: str) -> None:
    with run_app(idp, wsgi=shell == "wsgi", on_sign_in=app_user_id) as app:
        done = app.login("/after")
        assert done.status_code == 303, done.text
        assert app.client.get(f"{app.base}/after").json()["subject"] == "user-alice"
        assert app.me()["subject"] == "user-alice"
        app.login()  # the identity is linked now: the hook is not asked again
        assert app.me()["subject"] == "user-alice"
    assert SIGN_INS == [("alice", "idp")]


def test_hook_given_as_an_import_path(idp: IdentityProvider) -> None:
    with run_app(idp, on_sign_in="connector_helpers:app_user_id") as app:
        app.login()
        assert app.me()["subject"] == "user-alice"


def test_async_hook_is_awaited_under_asgi(idp: IdentityProvider) -> None:
    with run_app(idp, on_sign_in=async_app_user_id) as app:
        done = app.login("/after")
        assert done.status_code == 303, done.text
        assert app.client.get(f"{app.base}/after").json()["subject"] == "async-user-alice"
    assert SIGN_INS == [("alice", "idp")]


def test_async_hook_under_wsgi_is_a_clear_error_and_no_session(
    idp: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="authrelay"),
        run_app(idp, wsgi=True, on_sign_in=async_app_user_id) as app,
    ):
        done = app.login()
        assert done.status_code == 500
        assert done.json()["error"] == "server_error"
        assert "Traceback" not in done.text
        assert app.me()["authenticated"] is False
        app.relay.connectors.set_sign_in_hook(app_user_id)  # a plain function works
        assert app.login().status_code == 303
        assert app.me()["subject"] == "user-alice"
    assert any("on_sign_in_async_under_wsgi" in r.getMessage() for r in caplog.records)


def test_set_sign_in_hook_replaces_the_settings_hook(idp: IdentityProvider, shell: str) -> None:
    def other(profile: Profile, connector: str) -> str:
        return f"other-{profile.sub}"

    with run_app(idp, wsgi=shell == "wsgi", on_sign_in=app_user_id) as app:
        app.relay.connectors.set_sign_in_hook(other)
        app.login()
        assert app.me()["subject"] == "other-alice"
    assert SIGN_INS == []


@pytest.mark.parametrize(
    ("hook", "status", "error"),
    [
        pytest.param(
            lambda p, c: (_ for _ in ()).throw(CallbackError("access_denied")),
            400,
            "access_denied",
            id="refused",
        ),
        pytest.param(lambda p, c: "", 500, "server_error", id="empty-id"),
        pytest.param(lambda p, c: 1 / 0, 500, "server_error", id="crash"),
    ],
)
def test_hook_refusal_or_failure_leaves_no_session_and_no_link(
    idp: IdentityProvider, hook: Callable[[Profile, str], Any], status: int, error: str
) -> None:
    with run_app(idp, on_sign_in=hook) as app:
        done = app.login()
        assert done.status_code == status
        assert done.json()["error"] == error
        assert app.me()["authenticated"] is False
        app.relay.connectors.set_sign_in_hook(app_user_id)
        app.login()  # nothing was linked by the failed attempt: the new hook decides
        assert app.me()["subject"] == "user-alice"


def test_identities_of_one_target_link_to_the_same_user(
    make_identity_provider: Callable[..., IdentityProvider], shell: str
) -> None:
    """Two connectors of target ``idp`` (web and native): one user, one hook call."""
    client = OAuthClient(
        "test-client",
        "test-secret",
        redirect_uris=(
            "http://127.0.0.1/auth/idp/callback",
            "http://127.0.0.1/auth/idp-native/callback",
        ),
        loopback_any_port=True,
    )
    provider = make_identity_provider(issuer=None, clients=[client])
    with serve_identity_provider(provider):
        connector = {
            "standard": "oidc",
            "issuer": provider.issuer,
            "client_id": "test-client",
            "client_secret": "test-secret",
        }
        connectors = {
            "idp": connector,
            "idp-native": {**connector, "target": "idp", "platform": "native"},
        }
        with run_app(
            provider, wsgi=shell == "wsgi", on_sign_in=app_user_id, connectors=connectors
        ) as app:
            app.login(connector="idp-native")
            assert app.me()["subject"] == "user-alice"
            app.client.cookies.clear()
            app.login(connector="idp")
            me = app.me()
            assert me["subject"] == "user-alice"
            assert me["connector"] == "idp"
    assert SIGN_INS == [("alice", "idp-native")]


def test_a_blocking_sync_hook_does_not_hold_up_the_event_loop(idp: IdentityProvider) -> None:
    """Under ASGI a plain ``on_sign_in`` runs in a worker thread (the ``Hook`` effect)."""
    entered, release = threading.Event(), threading.Event()

    def slow_lookup(profile: Profile, connector: str) -> str:
        entered.set()
        release.wait(15)  # a slow database, released by the test below
        return f"slow-{profile.sub}"

    with run_app(idp, on_sign_in=slow_lookup) as app:
        outcome: list[httpx.Response] = []
        login = threading.Thread(target=lambda: outcome.append(app.login("/after")))
        login.start()
        try:
            assert entered.wait(10)
            with httpx.Client(timeout=10) as other:  # another user, while the hook blocks
                answer = other.get(f"{app.base}/auth/me")
            assert answer.status_code == 200
            assert answer.json()["authenticated"] is False
            assert not release.is_set()  # it completed while the hook was still waiting
        finally:
            release.set()
            login.join(15)
        assert outcome[0].status_code == 303, outcome[0].text
        assert app.me()["subject"] == "slow-alice"
