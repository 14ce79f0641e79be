"""Browserless login / callback / connect / logout over real HTTP, ASGI and WSGI."""

from __future__ import annotations

import base64
import hashlib

from connector_helpers import query_of, run_app

from authrelay.testing import IdentityProvider


def test_ac01_ac05_login_redirect_has_pkce_s256_and_meaningless_state_nonce(
    idp: IdentityProvider,
) -> None:
    with run_app(idp) as app:
        start = app.client.get(f"{app.base}/auth/idp/login", params={"next": "/after"})
    assert start.status_code == 302
    params = query_of(start.headers["location"])
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 43 and len(params["nonce"]) >= 43
    assert params["redirect_uri"] == f"{app.base}/auth/idp/callback"
    assert "/after" not in params["state"]  # AC-05: state carries no meaning
    cookie = start.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=600" in cookie
    assert start.headers["cache-control"] == "no-store"


def test_ac12_full_login_creates_session_and_redirects_to_next_with_303(
    idp: IdentityProvider, shell: str
) -> None:
    with run_app(idp, wsgi=shell == "wsgi") as app:
        done = app.login("/after")
        assert done.status_code == 303
        assert done.headers["location"] == "/after"
        assert done.headers["referrer-policy"] == "no-referrer"  # AC-12
        assert done.headers["cache-control"] == "no-store"
        assert "Cookie" in done.headers.get("vary", "")
        page = app.client.get(f"{app.base}/after")
        assert page.json()["subject"] == "idp|alice"
        me = app.me()
        assert me["authenticated"] is True
        assert me["profile"]["name"] == "Alice Liddell"
        assert [c["connector"] for c in me["connectors"]] == ["idp"]
        assert "access_token" not in str(me) and "refresh_token" not in str(me)
        assert idp.counters.count(endpoint="token", grant_type="authorization_code") == 1


def test_parallel_logins_in_two_tabs_both_work(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        first = app.authorize(next="/one")
        second = app.authorize(next="/two")
        done_second = app.client.get(second)
        done_first = app.client.get(first)
    assert done_second.status_code == 303 and done_second.headers["location"] == "/two"
    assert done_first.status_code == 303 and done_first.headers["location"] == "/one"


def test_se04_login_issues_a_new_session_id_and_ends_the_old(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        app.login()
        old_cookie = app.client.cookies["authrelay"]
        app.login()
        assert app.client.cookies["authrelay"] != old_cookie
        app.client.cookies.clear()
        replay = app.client.get(f"{app.base}/x", headers={"cookie": f"authrelay={old_cookie}"})
    assert replay.json()["subject"] is None


def test_connect_links_another_account_keeping_the_identity(
    idp: IdentityProvider, shell: str
) -> None:
    with run_app(idp, wsgi=shell == "wsgi") as app:
        app.login()
        before = app.client.cookies["authrelay"]
        anonymous = app.client.get(
            f"{app.base}/auth/idp/connect", headers={"cookie": "x=y", "accept": "application/json"}
        )
        assert anonymous.status_code == 401
        idp.next_login("bob")
        callback = app.authorize("/auth/idp/connect", next="/linked")
        done = app.client.get(callback)
        # the same target and a different identity: linked to alice, session identity unchanged
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/linked"
        assert app.client.cookies["authrelay"] != before  # SE-04 on linking
        assert app.client.get(f"{app.base}/x").json()["subject"] == "idp|alice"


def test_se07_logout_is_post_only_same_origin_and_revokes(
    idp: IdentityProvider, shell: str
) -> None:
    with run_app(idp, wsgi=shell == "wsgi") as app:
        app.login()
        rt = idp.issued_refresh_tokens("alice")
        assert app.client.get(f"{app.base}/auth/logout").status_code == 405
        cross = app.client.post(
            f"{app.base}/auth/logout", headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        assert app.me()["authenticated"] is True
        no_origin = app.client.post(f"{app.base}/auth/logout")
        assert no_origin.status_code == 403  # no Origin, no Sec-Fetch-Site, no CSRF token
        cookie = app.client.cookies["authrelay"]
        out = app.client.post(
            f"{app.base}/auth/logout",
            headers={"origin": app.base, "accept": "application/json"},
        )
        assert out.status_code == 200
        assert out.json()["logged_out"] is True
        assert out.json()["redirect"] == "/auth/logout/provider"  # then the provider's
        assert "id_token_hint" not in out.json()["redirect"]
        assert "Max-Age=0" in out.headers["set-cookie"]
        assert "Cookie" in out.headers["vary"]
        # SE-06: the old cookie is anonymous now
        app.client.cookies.clear()
        again = app.client.get(f"{app.base}/x", headers={"cookie": f"authrelay={cookie}"})
        assert again.json()["subject"] is None
    assert rt and all(idp.is_revoked(token) for token in rt)  # RV-01


def test_logout_with_csrf_token_for_clients_without_origin(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        app.login()
        token = app.me()["csrf_token"]
        out = app.client.post(
            f"{app.base}/auth/logout",
            data={"csrf_token": token},
            headers={"accept": "text/html"},
        )
        assert out.status_code == 303
        assert app.me()["authenticated"] is False


def test_connectors_list_in_the_best_language(identity_provider: IdentityProvider) -> None:
    from connector_helpers import app_settings

    from authrelay import Relay

    settings = app_settings(
        "https://idp.test",
        "https://app.example",
        connectors={
            "github": {"preset": "github", "client_id": "g", "client_secret": "s"},
            "google": {"preset": "google", "client_id": "c", "client_secret": "s"},
        },
    )
    relay = Relay(settings)
    from authrelay.identity.resolve import Resolution
    from authrelay.routing import AuthRequest

    request = AuthRequest(
        method="GET",
        path="/connectors",
        query_string=b"",
        headers={"accept-language": "ko-KR,ko;q=0.9,en;q=0.5"},
        identity=Resolution(),
    )
    response = relay.sync_driver.run(relay.route_handler(request))
    import json

    items = {item["id"]: item for item in json.loads(response.body)["connectors"]}
    assert items["google"]["name"] == "구글"
    assert items["github"]["logo_dark"] == "/auth/connectors/github/logo-dark"
    assert items["github"]["type"] == "social" and items["github"]["platform"] == "web"
    relay.close()


def test_ac02_verifier_matches_challenge_and_never_reaches_the_browser(
    idp: IdentityProvider,
) -> None:
    with run_app(idp) as app:
        start = app.client.get(f"{app.base}/auth/idp/login")
        params = query_of(start.headers["location"])
        tx_cookie = start.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        digest = hashlib.sha256(tx_cookie.encode()).digest()
        as_challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert as_challenge != params["code_challenge"]  # the cookie is not the verifier


def test_authorization_endpoint_query_is_kept_and_authorize_params_cannot_override(
    idp: IdentityProvider,
) -> None:
    # RFC 6749 §3.1: the endpoint URI MAY include a query component, which MUST be
    # retained when adding parameters (e.g. an Azure AD B2C policy).
    connector = {
        "authorization_endpoint": f"{idp.issuer}/authorize?p=b2c_1_signin",
        "authorize_params": {"prompt": "login", "response_type": "token", "state": "fixed"},
    }
    with run_app(idp, connector=connector) as app:
        start = app.client.get(f"{app.base}/auth/idp/login")
    location = start.headers["location"]
    assert location.startswith(f"{idp.issuer}/authorize?p=b2c_1_signin&")
    params = query_of(location)
    assert params["p"] == "b2c_1_signin" and params["prompt"] == "login"
    assert params["response_type"] == "code"  # AC-10
    assert params["state"] != "fixed" and len(params["state"]) >= 43
    assert location.count("state=") == 1 and location.count("response_type=") == 1
