"""Every bad callback gets a clear E-CALLBACK answer and leaves no session behind."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from connector_helpers import Running, jwt_payload, query_of, run_app

from authrelay.testing import FakeClock, IdentityProvider, free_port, serve_asgi

Rewrite = Callable[[IdentityProvider, dict[str, Any]], dict[str, Any]]


def assert_no_session(app: Running, response: httpx.Response) -> None:
    cookies = response.headers.get_list("set-cookie")
    assert not any(c.startswith("authrelay=") and "Max-Age=0" not in c for c in cookies)
    assert app.me()["authenticated"] is False
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"


def callback_error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    return str(response.json()["error"])


def test_ac04_missing_state(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        response = app.client.get(f"{app.base}/auth/idp/callback", params={"code": "x"})
        assert callback_error(response) == "invalid_state"
        assert_no_session(app, response)


def test_ac04_foreign_browser_state_is_refused_without_token_request(
    idp: IdentityProvider,
) -> None:
    with run_app(idp) as app:
        callback = app.authorize()
        with httpx.Client() as other_browser:
            response = other_browser.get(callback)
        assert callback_error(response) == "invalid_state"
        assert "not started in this browser" in response.json()["error_description"]
        assert idp.counters.count(endpoint="token") == 0
        assert app.me()["authenticated"] is False
        # the foreign browser did not consume the state: its owner still finishes
        assert app.client.get(callback).status_code == 303
        assert app.me()["authenticated"] is True
    assert idp.counters.count(endpoint="token", grant_type="authorization_code") == 1


def test_ac04_replayed_state(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        callback = app.authorize()
        assert app.client.get(callback).status_code == 303
        app.client.post(f"{app.base}/auth/logout", headers={"origin": app.base})
        replay = app.client.get(callback)
        assert callback_error(replay) == "invalid_state"
        assert_no_session(app, replay)
    assert idp.counters.count(endpoint="token", grant_type="authorization_code") == 1


def test_ac04_expired_state(idp: IdentityProvider) -> None:
    clock = FakeClock(1_000_000.0)
    with run_app(idp, clock=clock) as app:
        callback = app.authorize()
        clock.advance(601)
        response = app.client.get(callback)
        assert callback_error(response) == "invalid_state"
    assert idp.counters.count(endpoint="token") == 0


def test_ac08_code_replay_with_a_fresh_state(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        first = app.authorize()
        assert app.client.get(first).status_code == 303
        app.client.post(f"{app.base}/auth/logout", headers={"origin": app.base})
        second = app.authorize()
        forged = query_of(second)
        forged["code"] = query_of(first)["code"]
        response = app.client.get(f"{app.base}/auth/idp/callback", params=forged)
        assert callback_error(response) == "invalid_grant"
        assert_no_session(app, response)


def test_mu02_wrong_iss_is_refused_before_any_token_request(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        params = query_of(app.authorize())
        params["iss"] = idp.issuer + "/"  # trailing slash counts
        response = app.client.get(f"{app.base}/auth/idp/callback", params=params)
        assert callback_error(response) == "invalid_issuer"
        assert_no_session(app, response)
    assert idp.counters.count(endpoint="token") == 0


def test_mu01_missing_iss_when_the_provider_declares_support(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        params = query_of(app.authorize())
        del params["iss"]
        response = app.client.get(f"{app.base}/auth/idp/callback", params=params)
        assert callback_error(response) == "invalid_issuer"
    assert idp.counters.count(endpoint="token") == 0


def test_mu03_state_of_one_connector_on_anothers_callback(idp: IdentityProvider) -> None:
    two = {
        "standard": "oidc",
        "issuer": idp.issuer,
        "client_id": "test-client",
        "client_secret": "test-secret",
        "target": "second",
    }
    with run_app(idp, connectors={"idp": {**two, "target": "first"}, "two": two}) as app:
        params = query_of(app.authorize())
        response = app.client.get(f"{app.base}/auth/two/callback", params=params)
        assert callback_error(response) == "invalid_state"
    assert idp.counters.count(endpoint="token") == 0


def test_provider_error_access_denied_is_a_clear_answer(idp: IdentityProvider, shell: str) -> None:
    with run_app(idp, wsgi=shell == "wsgi") as app:
        idp.deny_next_authorization("access_denied")
        callback = app.authorize()
        response = app.client.get(callback, headers={"accept": "application/json"})
        assert callback_error(response) == "access_denied"
        assert_no_session(app, response)
        idp.deny_next_authorization("access_denied")
        page = app.client.get(app.authorize(), headers={"accept": "text/html"})
        assert page.status_code == 400
        assert page.headers["content-type"].startswith("text/html")


def test_token_endpoint_500_is_an_upstream_error_and_not_retried(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        callback = app.authorize()
        idp.faults.add("token", status=500)
        response = app.client.get(callback)
        assert response.status_code == 502
        assert response.json()["error"] == "upstream_token_error"
        assert_no_session(app, response)
    assert idp.counters.count(endpoint="token") == 1  # AC-08


def test_oversized_query_is_invalid_request(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        response = app.client.get(
            f"{app.base}/auth/idp/callback", params={"state": "s", "code": "c" * 5000}
        )
        assert callback_error(response) == "invalid_request"


@pytest.mark.parametrize(
    "bad_next",
    [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "/ok\r\nSet-Cookie: x=y",
        "/%0d%0aLocation:%20https://evil.example",
        "\\\\evil.example",
        " https://evil.example",
    ],
)
def test_rd01_unsafe_next_falls_back_to_after_login(idp: IdentityProvider, bad_next: str) -> None:
    with run_app(idp) as app:
        done = app.login(bad_next)
        assert done.status_code == 303
        assert done.headers["location"] == "/"


# -- tampered ID tokens: a rewriting layer in front of the provider's token endpoint --------


@contextmanager
def tampering_provider(
    make_identity_provider: Callable[..., IdentityProvider], rewrite: Rewrite
) -> Iterator[IdentityProvider]:
    port = free_port()
    idp = make_identity_provider(issuer=f"http://127.0.0.1:{port}")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/token"):
            await idp.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body = bytearray()

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                body.extend(message.get("body", b""))

        await idp.app(scope, receive, capture)
        data = json.loads(body)
        if "id_token" in data:
            data = rewrite(idp, data)
        out = json.dumps(data).encode()
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(out)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    with serve_asgi(app, port=port):
        yield idp


def _remint(**changes: Any) -> Rewrite:
    def rewrite(idp: IdentityProvider, data: dict[str, Any]) -> dict[str, Any]:
        original = jwt_payload(data["id_token"])
        kwargs: dict[str, Any] = {
            "sub": original["sub"],
            "nonce": original.get("nonce"),
            "access_token": data["access_token"],
        }
        kwargs.update(changes)
        return {**data, "id_token": idp.mint_id_token(**kwargs)}

    return rewrite


def _alg_none(idp: IdentityProvider, data: dict[str, Any]) -> dict[str, Any]:
    payload = jwt_payload(data["id_token"])

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return {**data, "id_token": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."}


def _no_id_token(idp: IdentityProvider, data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "id_token"}


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(_remint(key="other"), id="id04-bad-signature"),
        pytest.param(_remint(audience="someone-else"), id="id02-wrong-aud"),
        pytest.param(_remint(audience=["test-client", "evil"]), id="id02-extra-aud"),
        pytest.param(_remint(nonce="not-the-nonce"), id="id06-wrong-nonce"),
        pytest.param(_remint(nonce=None), id="id06-missing-nonce"),
        pytest.param(_remint(expires_in=-3600), id="id05-expired"),
        pytest.param(_remint(claims={"iat": None}), id="id05-missing-iat"),
        pytest.param(_remint(claims={"iss": "https://evil.example"}), id="id01-wrong-iss"),
        pytest.param(_remint(claims={"azp": "other"}), id="id03-wrong-azp"),
        pytest.param(_remint(claims={"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}), id="id08-at-hash"),
        pytest.param(_alg_none, id="jw01-alg-none"),
        pytest.param(_no_id_token, id="id-token-missing"),
    ],
)
def test_bad_id_token_is_invalid_id_token_and_no_session(
    make_identity_provider: Callable[..., IdentityProvider], rewrite: Rewrite
) -> None:
    with tampering_provider(make_identity_provider, rewrite) as idp, run_app(idp) as app:
        response = app.client.get(app.authorize())
        assert callback_error(response) == "invalid_id_token"
        assert_no_session(app, response)
        assert "eyJ" not in response.text  # INV-1: no token in the answer


def test_id10_userinfo_for_another_subject_fails(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    # the ID token names bob while the access token (used for UserInfo) is alice's
    with (
        tampering_provider(make_identity_provider, _remint(sub="bob")) as idp,
        run_app(idp) as app,
    ):
        response = app.client.get(app.authorize())
        assert callback_error(response) == "invalid_id_token"
        assert_no_session(app, response)


def test_reminted_valid_id_token_passes_the_same_path(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    # control for the cases above: an untampered re-mint signs in
    with tampering_provider(make_identity_provider, _remint()) as idp, run_app(idp) as app:
        response = app.client.get(app.authorize())
        assert response.status_code == 303
        assert app.me()["subject"] == "idp|alice"
