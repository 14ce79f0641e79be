"""Login MUSTs: the PKCE verifier stays server-side (AC-03), the state record and its
connector (AC-06), code flow only (AC-10), and ID tokens without ``sub`` (ID-07)."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from sec_helpers import (
    Recorder,
    base_settings,
    oidc_connector,
    query_of,
    replace_json,
    serve_app,
)

from authrelay import Settings
from authrelay.testing import FakeClock, IdentityProvider

CODE_GRANT = "authorization_code"


def _one_connector(idp: IdentityProvider) -> Callable[[str], Settings]:
    return lambda base: base_settings(base, {"idp": oidc_connector(idp.issuer)})


def test_ac03_verifier_never_reaches_the_browser(idp: IdentityProvider, shell: str) -> None:
    with serve_app(_one_connector(idp), shell=shell) as app:
        done = app.login(next="/after")
        assert done.status_code == 303, done.text
        assert app.me()["authenticated"] is True
        seen, sent = list(app.seen), list(app.recorder.sent)
    token_requests = [s for s in sent if s.form().get("grant_type") == CODE_GRANT]
    assert len(token_requests) == 1
    verifier = token_requests[0].form()["code_verifier"]
    assert len(verifier) >= 43
    # The verifier went to the token endpoint, and nowhere else.
    carrying = [s for s in sent if verifier.encode() in s.body or verifier in s.url]
    assert [(s.method, urlsplit(s.url).path) for s in carrying] == [("POST", "/token")]
    assert all(verifier not in json.dumps(s.headers) for s in sent)
    # Not in a URL, a Set-Cookie value, a header or a body the browser ever saw.
    assert len(seen) >= 4  # login, provider, callback, /auth/me
    for exchange in seen:
        assert verifier not in exchange.text(), exchange.url
    cookies = [v for e in seen for k, v in e.headers if k.lower() == "set-cookie"]
    assert cookies and all(verifier not in c for c in cookies)


def test_ac06_state_record_holds_the_transaction(idp: IdentityProvider) -> None:
    clock = FakeClock(1_800_000_000.0)
    with serve_app(_one_connector(idp), clock=clock) as app:
        location = app.start_login(next="/after")
        params = query_of(location)
        store, driver = app.relay.connectors.store, app.relay.sync_driver
        tx = driver.run(store.take_transaction(params["state"], "idp"))
        assert tx is not None
        assert tx.connector == "idp"
        assert tx.issuer == idp.issuer
        assert tx.redirect_uri == params["redirect_uri"] == f"{app.base}/auth/idp/callback"
        assert tx.nonce == params["nonce"]
        assert len(tx.code_verifier) >= 43 and tx.code_verifier not in location
        assert tx.next == "/after"
        assert tx.created_at == clock()
        # The record is secret material: none of it shows in its repr.
        assert tx.code_verifier not in repr(tx) and tx.nonce not in repr(tx)


def test_ac06_callback_on_another_connector_is_invalid_state(idp: IdentityProvider) -> None:
    def settings(base: str) -> Settings:
        return base_settings(
            base,
            {
                "idp": oidc_connector(idp.issuer),
                "other": oidc_connector(
                    idp.issuer,
                    client_id="public-client",
                    client_secret=None,
                    token_endpoint_auth_method="none",
                    target="idp-public",
                ),
            },
        )

    with serve_app(settings) as app:
        callback = app.authorize("idp")
        parts = urlsplit(callback)
        assert parts.path == "/auth/idp/callback"
        moved = urlunsplit(parts._replace(path="/auth/other/callback"))
        answer = app.client.get(moved, headers={"accept": "application/json"})
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_state"
        assert answer.headers["cache-control"] == "no-store"
        assert app.recorder.token_requests() == []
        assert app.me()["authenticated"] is False
        # The refusal did not consume the state: the right callback still finishes, once.
        again = app.client.get(callback, headers={"accept": "application/json"})
        assert again.status_code == 303
        assert len(app.recorder.token_requests()) == 1
        replay = app.client.get(moved, headers={"accept": "application/json"})
        assert replay.json()["error"] == "invalid_state"
    assert idp.counters.count(endpoint="token") == 1


def test_ac10_only_the_code_response_type_is_requested(idp: IdentityProvider) -> None:
    with serve_app(_one_connector(idp)) as app:
        location = app.start_login()
    query = urlsplit(location).query
    assert query.count("response_type=") == 1
    assert query_of(location)["response_type"] == "code"
    assert "response_mode" not in query_of(location)


def test_ac10_tokens_in_the_authorization_response_are_ignored(
    idp: IdentityProvider, shell: str
) -> None:
    planted_at, planted_id = "planted-access-token-canary", "planted.id-token.canary"
    with serve_app(_one_connector(idp), shell=shell) as app:
        # Alone (no code): nothing to redeem, no session.
        bare = app.authorize()
        state = query_of(bare)["state"]
        query = urlencode(
            {
                "state": state,
                "iss": idp.issuer,
                "access_token": planted_at,
                "id_token": planted_id,
                "token_type": "Bearer",
            }
        )
        alone = app.client.get(
            f"{app.base}/auth/idp/callback?{query}", headers={"accept": "application/json"}
        )
        assert alone.status_code == 400
        assert alone.json()["error"] == "invalid_request"
        assert app.me()["authenticated"] is False
        # Beside a code: the code is redeemed, the planted tokens are not kept or used.
        callback = app.authorize()
        extra = urlencode({"access_token": planted_at, "id_token": planted_id})
        done = app.client.get(f"{callback}&{extra}")
        assert done.status_code == 303, done.text
        assert app.me()["authenticated"] is True
        store, driver = app.relay.connectors.store, app.relay.sync_driver
        subject = app.me()["subject"]
        record, _ = driver.run(store.load_tokens(subject, "idp", idp.issuer))
        assert record is not None
        assert record.access_token not in (planted_at, planted_id)
        issued = json.loads(app.recorder.token_requests(CODE_GRANT)[0].answer)
        assert record.access_token == issued["access_token"]
        assert all(
            planted_at not in s.body.decode() and planted_id not in s.body.decode()
            for s in app.recorder.sent
        )
        assert all(planted_at not in json.dumps(s.headers) for s in app.recorder.sent)


def test_id07_id_token_without_sub_is_refused(idp: IdentityProvider, shell: str) -> None:
    recorder = Recorder()
    nonces: list[str] = []

    def drop_sub(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if b"grant_type=authorization_code" not in request.content:
            return response
        body = json.loads(response.content)
        body["id_token"] = idp.mint_id_token(
            nonce=nonces[-1], access_token=body["access_token"], claims={"sub": None}
        )
        return replace_json(response, body)

    recorder.rewrite = drop_sub
    with serve_app(_one_connector(idp), shell=shell, recorder=recorder) as app:
        at_idp = app.start_login()
        nonces.append(query_of(at_idp)["nonce"])
        callback = app.client.get(at_idp).headers["location"]
        answer = app.client.get(callback, headers={"accept": "application/json"})
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_id_token"
        set_cookies = answer.headers.get_list("set-cookie")
        assert not any(c.startswith("authrelay=") and "Max-Age=0" not in c for c in set_cookies)
        assert app.me()["authenticated"] is False
        assert len(recorder.token_requests(CODE_GRANT)) == 1


def test_id07_the_same_provider_answer_with_sub_signs_in(idp: IdentityProvider) -> None:
    """The control for the test above: the rewrite itself does not break sign-in."""
    recorder = Recorder()
    nonces: list[str] = []

    def keep_sub(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if b"grant_type=authorization_code" not in request.content:
            return response
        body = json.loads(response.content)
        body["id_token"] = idp.mint_id_token(nonce=nonces[-1], access_token=body["access_token"])
        return replace_json(response, body)

    recorder.rewrite = keep_sub
    with serve_app(_one_connector(idp), recorder=recorder) as app:
        at_idp = app.start_login()
        nonces.append(query_of(at_idp)["nonce"])
        answer = app.client.get(app.client.get(at_idp).headers["location"])
        assert answer.status_code == 303, answer.text
        assert app.me()["authenticated"] is True
