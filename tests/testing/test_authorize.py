"""The authorization endpoint over real loopback HTTP: front-channel strictness."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from _idp_helpers import CALLBACK, authorize, pkce_pair, query_of

from authrelay.testing import IdentityProvider, serve_identity_provider


def test_success_echoes_state_and_adds_iss(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    _, challenge = pkce_pair()
    response = authorize(http_client, challenge=challenge)
    assert response.status_code == 302
    assert response.headers["location"].startswith(CALLBACK + "?")
    params = query_of(response)
    assert params["state"] == "st-1"
    assert params["iss"] == identity_provider_server.issuer  # RFC 9207
    assert len(params["code"]) >= 32
    assert response.headers["cache-control"] == "no-store"


def test_mismatched_redirect_uri_is_an_error_page_never_a_redirect(
    http_client: httpx.Client,
) -> None:
    _, challenge = pkce_pair()
    for redirect_uri in (
        "http://testserver/auth/idp/callback/",
        "http://testserver/auth/idp/callback?x=1",
        "https://testserver/auth/idp/callback",
        "http://TESTSERVER/auth/idp/callback",
        "http://evil.test/auth/idp/callback",
        "",
    ):
        response = authorize(http_client, redirect_uri=redirect_uri, challenge=challenge)
        assert response.status_code == 400, redirect_uri
        assert "location" not in response.headers
        assert "redirect_uri" in response.text


def test_unknown_client_is_an_error_page(http_client: httpx.Client) -> None:
    response = authorize(http_client, client_id="nobody")
    assert response.status_code == 400
    assert "location" not in response.headers


def test_loopback_redirect_any_port_when_opted_in(http_client: httpx.Client) -> None:
    _, challenge = pkce_pair()
    uri = "http://127.0.0.1:49152/auth/idp/callback"
    response = authorize(http_client, redirect_uri=uri, challenge=challenge)
    assert response.status_code == 302
    assert response.headers["location"].startswith(uri + "?")
    other_path = authorize(
        http_client, redirect_uri="http://127.0.0.1:49152/other", challenge=challenge
    )
    assert other_path.status_code == 400


def test_loopback_port_must_match_without_opt_in(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    from authrelay.testing import OAuthClient

    idp = make_identity_provider(
        issuer=None,
        clients=[OAuthClient("c", "s", redirect_uris=("http://127.0.0.1/cb",))],
    )
    with serve_identity_provider(idp) as url, httpx.Client(base_url=url) as client:
        response = authorize(client, client_id="c", redirect_uri="http://127.0.0.1:5000/cb")
    assert response.status_code == 400


def test_only_code_response_type(http_client: httpx.Client) -> None:
    _, challenge = pkce_pair()
    for response_type in ("token", "id_token", "code id_token", "code token"):
        response = authorize(http_client, challenge=challenge, response_type=response_type)
        assert response.status_code == 302
        params = query_of(response)
        assert params["error"] == "unsupported_response_type"
        assert params["state"] == "st-1"
        assert "iss" in params
        assert "code" not in params


def test_plain_pkce_refused(http_client: httpx.Client) -> None:
    verifier, _ = pkce_pair()
    response = authorize(
        http_client, code_challenge=verifier, code_challenge_method="plain", challenge=None
    )
    params = query_of(response)
    assert params["error"] == "invalid_request"
    assert "iss" in params


def test_challenge_without_method_means_plain_and_is_refused(http_client: httpx.Client) -> None:
    _, challenge = pkce_pair()
    response = authorize(http_client, code_challenge=challenge)
    assert query_of(response)["error"] == "invalid_request"


def test_public_client_must_use_pkce(http_client: httpx.Client) -> None:
    response = authorize(http_client, client_id="public-client")
    params = query_of(response)
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]
    _, challenge = pkce_pair()
    ok = authorize(http_client, client_id="public-client", challenge=challenge)
    assert "code" in query_of(ok)


def test_repeated_parameter_refused(http_client: httpx.Client) -> None:
    response = http_client.get(
        "/authorize?response_type=code&client_id=test-client&client_id=test-client"
        f"&redirect_uri={CALLBACK}"
    )
    assert response.status_code == 400


def test_unknown_scope_is_invalid_scope(http_client: httpx.Client) -> None:
    _, challenge = pkce_pair()
    response = authorize(http_client, scope="openid admin.everything", challenge=challenge)
    assert query_of(response)["error"] == "invalid_scope"


def test_deny_next_authorization(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    identity_provider_server.deny_next_authorization()
    _, challenge = pkce_pair()
    denied = query_of(authorize(http_client, challenge=challenge))
    assert denied["error"] == "access_denied"
    assert denied["iss"] == identity_provider_server.issuer
    assert denied["state"] == "st-1"
    assert "code" in query_of(authorize(http_client, challenge=challenge))


def test_prompt_none_without_user_is_login_required(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    idp = make_identity_provider(issuer=None, auto_approve=None, login_form=True)
    _, challenge = pkce_pair()
    with serve_identity_provider(idp) as url, httpx.Client(base_url=url) as client:
        response = authorize(client, challenge=challenge, prompt="none")
        assert query_of(response)["error"] == "login_required"
        idp.next_login("bob")
        assert "code" in query_of(authorize(client, challenge=challenge, prompt="none"))


def test_login_form_wrong_password_then_right(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    idp = make_identity_provider(issuer=None, auto_approve=None, login_form=True)
    _, challenge = pkce_pair()
    with serve_identity_provider(idp) as url, httpx.Client(base_url=url) as client:
        page = authorize(client, challenge=challenge)
        assert page.status_code == 200
        assert "<form" in page.text
        tx = page.text.split('name="tx" value="')[1].split('"')[0]
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        form = {"tx": tx, "csrf": csrf, "username": "bob"}
        # A browser posts the form to its action resolved against the page's URL.
        action = page.text.split('<form method="post" action="')[1].split('"')[0]
        assert page.url.join(action).path == "/authorize/login"
        wrong = client.post("/authorize/login", data={**form, "password": "nope"})
        assert wrong.status_code == 200
        assert "Wrong username or password" in wrong.text
        right = client.post("/authorize/login", data={**form, "password": "password"})
        assert right.status_code == 303
        assert query_of(right)["state"] == "st-1"
        # The browser now has a session: prompt=none succeeds.
        again = authorize(client, challenge=challenge, prompt="none")
        assert "code" in query_of(again)


def test_login_form_post_without_csrf_cookie_is_refused(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    idp = make_identity_provider(issuer=None, auto_approve=None, login_form=True)
    _, challenge = pkce_pair()
    with serve_identity_provider(idp) as url, httpx.Client(base_url=url) as client:
        page = authorize(client, challenge=challenge)
        tx = page.text.split('name="tx" value="')[1].split('"')[0]
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        with httpx.Client(base_url=url) as attacker:
            forged = attacker.post(
                "/authorize/login",
                data={"tx": tx, "csrf": csrf, "username": "alice", "password": "password"},
            )
    assert forged.status_code == 400
    assert "location" not in forged.headers


def test_login_disabled_without_auto_approve_is_login_required(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    idp = make_identity_provider(auto_approve=None)
    _, challenge = pkce_pair()
    with httpx.Client(transport=idp.sync_transport(), base_url=idp.issuer) as client:
        assert query_of(authorize(client, challenge=challenge))["error"] == "login_required"


def test_end_session_validates_post_logout_redirect(http_client: httpx.Client) -> None:
    ok = http_client.get(
        "/end-session",
        params={
            "client_id": "test-client",
            "post_logout_redirect_uri": "http://testserver/",
            "state": "bye",
        },
    )
    assert ok.status_code == 302
    assert ok.headers["location"] == "http://testserver/?state=bye"
    bad = http_client.get(
        "/end-session",
        params={"client_id": "test-client", "post_logout_redirect_uri": "http://evil.test/"},
    )
    assert bad.status_code == 400
    assert "location" not in bad.headers


def test_end_session_with_id_token_hint(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    hint = identity_provider_server.mint_id_token()
    ok = http_client.get(
        "/end-session",
        params={"id_token_hint": hint, "post_logout_redirect_uri": "http://127.0.0.1/"},
    )
    assert urlsplit(ok.headers["location"]).netloc == "127.0.0.1"
    forged = identity_provider_server.mint_id_token(key="other")
    bad = http_client.get(
        "/end-session",
        params={"id_token_hint": forged, "post_logout_redirect_uri": "http://127.0.0.1/"},
    )
    assert bad.status_code == 400
