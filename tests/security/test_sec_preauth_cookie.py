"""AC-04 with many tabs: pending sign-ins share one bounded pre-auth cookie (at most ten
entries, the oldest evicted), so parallel tabs work and the ``Cookie`` header cannot grow
until the browser is locked out; the callback errors stay precise. ASGI and WSGI."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from sec_helpers import App, base_settings, oidc_connector, serve_app

from authrelay import Settings
from authrelay.connectors.preauth import MAX_PENDING
from authrelay.testing import IdentityProvider


def _settings(idp: IdentityProvider) -> Callable[[str], Settings]:
    return lambda base: base_settings(base, {"idp": oidc_connector(idp.issuer)})


def _description(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_state"
    return str(response.json()["error_description"])


def _tx_cookies(app: App) -> list[str]:
    return [c.name for c in app.client.cookies.jar if c.name.startswith("authrelay-tx")]


def test_ac04_eleven_tabs_keep_one_bounded_cookie_and_ten_of_them_work(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        callbacks = [app.authorize(next=f"/tab/{n}") for n in range(MAX_PENDING + 1)]
        assert _tx_cookies(app) == ["authrelay-tx"]
        value = app.client.cookies["authrelay-tx"]
        assert len(value) <= 600 and value.count(".") == MAX_PENDING - 1
        # One more login does not grow it: the header stays the same size.
        extra = app.authorize(next="/tab/extra")
        assert len(app.client.cookies["authrelay-tx"]) == len(value)
        # The oldest two were evicted; the ten newest complete in any order.
        for n in (1, 0):
            evicted = app.client.get(callbacks[n])
            assert "not started in this browser" in _description(evicted)
        for callback in [extra, *callbacks[2:]][::-1]:
            done = app.client.get(callback)
            assert done.status_code == 303, done.text
            assert done.headers["location"].startswith("/tab/")
        assert app.me()["authenticated"] is True
        assert "authrelay-tx" not in app.client.cookies  # the last callback cleared it


def test_ac04_precise_errors_stay_with_the_shared_cookie(idp: IdentityProvider, shell: str) -> None:
    now = [time.time()]
    with serve_app(_settings(idp), shell=shell, clock=lambda: now[0]) as app:
        mine = app.authorize()
        with httpx.Client() as other_browser:
            assert "not started in this browser" in _description(other_browser.get(mine))
        unknown = mine.replace("state=", "state=unknown")
        assert "unknown, expired or already used" in _description(app.client.get(unknown))
        late = app.authorize()
        now[0] += 601
        assert "expired" in _description(app.client.get(late))


def test_ac04_a_tampered_preauth_cookie_is_refused_without_a_500(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(_settings(idp), shell=shell) as app, httpx.Client() as raw:
        for tamper in (
            lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"),
            lambda v: v[::-1],
            lambda v: v.upper(),
            lambda v: "." * 20 + v[:10],
            lambda v: "x" * 4000,
            lambda v: v + "; authrelay-tx=" + v,
        ):
            callback = app.authorize()
            value = app.client.cookies["authrelay-tx"]
            answer = raw.get(callback, headers={"cookie": f"authrelay-tx={tamper(value)}"})
            assert "not started in this browser" in _description(answer)
        callback = app.authorize()
        value = app.client.cookies["authrelay-tx"]
        done = raw.get(callback, headers={"cookie": f"authrelay-tx={value}"})
        assert done.status_code == 303
