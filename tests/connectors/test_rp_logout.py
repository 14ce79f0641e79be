"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ``id_token_hint`` from the
sealed session record, a ``state`` bound to the browser and checked on return (SE-06), and
the ID token never in a URL, a ``Location``, a cookie or a JSON body (INV-1)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from connector_helpers import Running, jwt_payload, query_of, run_app

from authrelay.testing import IdentityProvider, free_port, serve_identity_provider
from authrelay.testing.pytest_plugin import default_provider_config

JSON = {"accept": "application/json"}


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.method = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action, self.method = values["action"], values["method"]
        elif tag == "input":
            self.fields[values["name"]] = values["value"]


def _form(page: str) -> _Form:
    parser = _Form()
    parser.feed(page)
    return parser


@contextmanager
def _served(
    make_identity_provider: Callable[..., IdentityProvider], shell: str, **connector: Any
) -> Iterator[tuple[IdentityProvider, Running]]:
    port = free_port()
    config = default_provider_config()
    first, *rest = config["clients"]
    uri = f"http://127.0.0.1:{port}/auth/logout/callback"
    client = dataclasses.replace(first, post_logout_redirect_uris=(uri,))
    idp = make_identity_provider(issuer=None, clients=[client, *rest])
    served = run_app(idp, wsgi=shell == "wsgi", port=port, connector=connector)
    with serve_identity_provider(idp), served as app:
        yield idp, app


def _logout(app: Running) -> httpx.Response:
    out = app.client.post(f"{app.base}/auth/logout", headers={"origin": app.base, **JSON})
    assert out.status_code == 200, out.text
    return out


def _id_token_of(app: Running) -> str:
    """The ID token kept in the session record (read through the relay, as a test)."""
    sessions = app.relay.sessions
    state = sessions.open_cookie(app.client.cookies["authrelay"])
    assert state is not None
    record = app.relay.sync_driver.run(sessions.load(state.session_id))
    assert record is not None and record.id_token is not None
    return record.id_token


@pytest.mark.parametrize("method", ["get", "post"])
def test_se06_rp_logout_sends_id_token_hint_and_checks_the_state(
    make_identity_provider: Callable[..., IdentityProvider], shell: str, method: str
) -> None:
    settings = {} if method == "get" else {"end_session_method": "post"}
    with _served(make_identity_provider, shell, **settings) as (idp, app):
        assert app.login().status_code == 303
        id_token = _id_token_of(app)
        assert jwt_payload(id_token)["sub"] == "alice"
        assert id_token not in app.client.cookies["authrelay"]
        out = _logout(app)
        assert out.json()["redirect"] == "/auth/logout/provider"
        assert id_token not in out.text
        assert all(id_token not in value for _, value in out.headers.multi_items())
        page = app.client.get(f"{app.base}/auth/logout/provider")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
        form = _form(page.text)
        assert form.method == method
        assert form.action == f"{idp.issuer}/end-session"
        assert form.fields["id_token_hint"] == id_token  # in the form only, never a Location
        assert form.fields["client_id"] == "test-client"
        assert form.fields["post_logout_redirect_uri"] == f"{app.base}/auth/logout/callback"
        state = form.fields["state"]
        assert len(state) >= 43
        # The page is single use: the ID token is handed out once.
        again = app.client.get(f"{app.base}/auth/logout/provider")
        assert again.status_code == 303 and again.headers["location"] == "/"
        # The provider accepts the hint and returns with the state.
        if method == "post":
            at_idp = httpx.post(form.action, data=form.fields)
        else:
            at_idp = httpx.get(form.action, params=form.fields)
        assert at_idp.status_code == 302, at_idp.text
        back = at_idp.headers["location"]
        assert back.startswith(f"{app.base}/auth/logout/callback?")
        assert query_of(back)["state"] == state
        done = app.client.get(back)
        assert done.status_code == 303
        assert done.headers["location"] == "/"
        assert any("-logout=;" in c for c in done.headers.get_list("set-cookie"))
        # The state was bound to this browser and is gone now.
        assert app.client.get(back, headers=JSON).status_code == 400


@pytest.mark.parametrize("case", ["wrong-state", "no-state", "other-browser", "repeated"])
def test_se06_rp_logout_return_with_a_state_not_the_browsers_is_refused(
    make_identity_provider: Callable[..., IdentityProvider], shell: str, case: str
) -> None:
    with _served(make_identity_provider, shell) as (_idp, app):
        assert app.login().status_code == 303
        _logout(app)
        state = _form(app.client.get(f"{app.base}/auth/logout/provider").text).fields["state"]
        url = f"{app.base}/auth/logout/callback"
        answer: httpx.Response
        if case == "other-browser":
            with httpx.Client() as other:
                answer = other.get(url, params={"state": state}, headers=JSON)
        else:
            params: Any = {
                "wrong-state": {"state": state[:-2] + "xx"},
                "no-state": {},
                "repeated": [("state", state), ("state", state)],
            }[case]
            answer = app.client.get(url, params=params, headers=JSON)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_state"
        assert "location" not in answer.headers


def test_se06_logout_without_an_end_session_endpoint_goes_to_after_logout(
    idp: IdentityProvider,
) -> None:
    with run_app(idp, connector={"rp_initiated_logout": False}) as app:
        assert app.login().status_code == 303
        out = _logout(app)
        assert out.json()["redirect"] == "/"
        assert not any("-logout=" in c for c in out.headers.get_list("set-cookie"))
        page = app.client.get(f"{app.base}/auth/logout/provider")
        assert page.status_code == 303 and page.headers["location"] == "/"


def test_se06_browser_logout_is_a_303_to_the_provider_page(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    with _served(make_identity_provider, "asgi") as (_idp, app):
        assert app.login().status_code == 303
        out = app.client.post(
            f"{app.base}/auth/logout", headers={"origin": app.base, "accept": "text/html"}
        )
        assert out.status_code == 303
        assert urlsplit(out.headers["location"]).path == "/auth/logout/provider"
