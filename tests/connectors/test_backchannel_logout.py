"""OpenID Connect Back-Channel Logout 1.0 (ID-11): the provider ends our sessions.

The test provider signs in alice with a provider session id (``sid``) per sign-in and,
when told (or when its end-session endpoint is used), POSTs logout tokens over real HTTP
to the client's registered ``backchannel_logout_uri``. The negative cases are the OpenID
Foundation's back-channel logout tests: AlgNone, NoEvent, WithNonce, WrongAlg, WrongAud,
WrongEvent, WrongIssuer, plus replay and the request's own shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from connector_helpers import Running, run_app
from joserfc.jwk import OctKey

from authrelay.testing import IdentityProvider, serve_identity_provider

EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture
def served(idp: IdentityProvider, shell: str) -> Iterator[Running]:
    """The app signed in as alice, registered at the provider for back-channel logout."""
    with run_app(idp, wsgi=shell == "wsgi") as app:
        idp.clients["test-client"] = dataclasses.replace(
            idp.clients["test-client"],
            backchannel_logout_uri=f"{app.base}/auth/idp/backchannel-logout",
        )
        callback = app.login()
        assert callback.status_code == 303, callback.text
        yield app


def _sids(idp: IdentityProvider) -> list[str]:
    """The provider session ids of alice's sign-ins, oldest first."""
    with idp.state.lock:
        return [g.sid for g in idp.state.grants.values() if g.sub == "alice" and g.sid]


def _signed_in(app: Running, client: httpx.Client) -> bool:
    response = client.get(f"{app.base}/auth/me")
    assert response.status_code == 200
    return bool(response.json()["authenticated"])


def _second_browser(app: Running) -> httpx.Client:
    browser = httpx.Client(follow_redirects=False, timeout=10)
    start = browser.get(f"{app.base}/auth/idp/login")
    at_idp = browser.get(start.headers["location"])
    done = browser.get(at_idp.headers["location"])
    assert done.status_code == 303, done.text
    return browser


def _post(app: Running, token: str, **kw: Any) -> httpx.Response:
    return httpx.post(f"{app.base}/auth/idp/backchannel-logout", data={"logout_token": token}, **kw)


def test_id11_a_sid_ends_that_session_and_a_sub_ends_them_all(
    idp: IdentityProvider, served: Running
) -> None:
    app = served
    other = _second_browser(app)
    try:
        first, second = _sids(idp)
        assert first != second  # two provider sessions
        assert idp.backchannel_logout(sub="alice", sid=first) == {"test-client": 200}
        assert _signed_in(app, app.client) is False  # the session of sid 1 ended
        assert _signed_in(app, other) is True  # the other one did not
        assert idp.backchannel_logout(sub="alice") == {"test-client": 200}
        assert _signed_in(app, other) is False
    finally:
        other.close()
    counted = [c for c in app.relay.stats()["counters"] if c["name"] == "backchannel_logouts"]
    assert counted == [
        {"name": "backchannel_logouts", "target": "idp", "flow": "connector", "value": 2}
    ]


def test_id11_signing_out_at_the_provider_ends_the_session_here(
    idp: IdentityProvider, served: Running
) -> None:
    app = served
    (sid,) = _sids(idp)
    hint = idp.mint_id_token(claims={"sid": sid})
    ended = httpx.get(f"{idp.issuer}/end-session", params={"id_token_hint": hint})
    assert ended.status_code == 200
    assert idp.backchannel_deliveries == [{"test-client": 200}]
    assert _signed_in(app, app.client) is False


def test_id11_a_logout_token_is_used_once(idp: IdentityProvider, served: Running) -> None:
    app = served
    other_session = idp.mint_logout_token(sid="not-a-session-here")
    assert _post(app, other_session).status_code == 200  # valid, nothing to end
    replayed = _post(app, other_session)
    assert replayed.status_code == 400
    assert replayed.json() == {
        "error": "invalid_request",
        "error_description": "the logout token is not valid",
    }
    assert "no-store" in replayed.headers["cache-control"]


def _negative_cases(idp: IdentityProvider) -> dict[str, str]:
    (sid,) = _sids(idp)
    secret = OctKey.import_key("test-secret-which-is-long-enough-32b")
    return {
        "AlgNone": idp.mint_logout_token(sid=sid, alg="none"),
        "NoEvent": idp.mint_logout_token(sid=sid, claims={"events": None}),
        "WithNonce": idp.mint_logout_token(sid=sid, claims={"nonce": "n-0S6_WzA2Mj"}),
        "WrongAlg": idp.mint_logout_token(sid=sid, alg="HS256", key=secret),
        "WrongAlgPublished": idp.mint_logout_token(sid=sid, alg="ES256"),
        "WrongAud": idp.mint_logout_token(sid=sid, audience="another-client"),
        "WrongEvent": idp.mint_logout_token(
            sid=sid, claims={"events": {"http://schemas.openid.net/event/other": {}}}
        ),
        "EventNotAnObject": idp.mint_logout_token(sid=sid, claims={"events": {EVENT: "yes"}}),
        "WrongIssuer": idp.mint_logout_token(sid=sid, claims={"iss": "https://evil.example"}),
        "OtherKey": idp.mint_logout_token(sid=sid, key="other"),
        "NoSubNorSid": idp.mint_logout_token(sub=None, sid=None),
        "NoJti": idp.mint_logout_token(sid=sid, claims={"jti": None}),
        "Expired": idp.mint_logout_token(sid=sid, expires_in=-3600),
        "IdToken": idp.mint_id_token(claims={"sid": sid}),
    }


@pytest.mark.parametrize("shell", ["asgi"])  # the checks are shared by both shells
@pytest.mark.parametrize(
    "case",
    [
        "AlgNone",
        "NoEvent",
        "WithNonce",
        "WrongAlg",
        "WrongAlgPublished",
        "WrongAud",
        "WrongEvent",
        "EventNotAnObject",
        "WrongIssuer",
        "OtherKey",
        "NoSubNorSid",
        "NoJti",
        "Expired",
        "IdToken",
    ],
)
def test_id11_invalid_logout_tokens_are_refused_and_end_nothing(
    idp: IdentityProvider, served: Running, case: str
) -> None:
    app = served
    refused = _post(app, _negative_cases(idp)[case])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_request"
    assert _signed_in(app, app.client) is True


@pytest.mark.parametrize("shell", ["asgi"])
def test_id11_the_request_must_be_a_form_post(idp: IdentityProvider, served: Running) -> None:
    app = served
    (sid,) = _sids(idp)
    url = f"{app.base}/auth/idp/backchannel-logout"
    assert httpx.get(url).status_code == 405
    token = idp.mint_logout_token(sid=sid)
    assert httpx.post(url, json={"logout_token": token}).status_code == 400
    assert (
        httpx.post(
            url,
            content=f"logout_token={token}&logout_token={token}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ).status_code
        == 400
    )
    assert _signed_in(app, app.client) is True


def test_id11_a_session_renewed_by_linking_is_still_ended(
    idp: IdentityProvider, served: Running
) -> None:
    app = served
    (sid,) = _sids(idp)
    before = app.client.cookies["authrelay"]
    linked = app.authorize("/auth/idp/connect")
    assert app.client.get(linked).status_code == 303
    assert app.client.cookies["authrelay"] != before  # SE-04: a new session id
    assert idp.backchannel_logout(sub="alice", sid=sid) == {"test-client": 200}
    assert _signed_in(app, app.client) is False


def test_id11_turned_off_per_connector(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    idp = make_identity_provider(issuer=None)
    with (
        serve_identity_provider(idp),
        run_app(idp, connector={"backchannel_logout": False}) as app,
    ):
        app.login()
        token = idp.mint_logout_token(sub="alice")
        assert _post(app, token).status_code == 404
        assert _signed_in(app, app.client) is True
