"""SE-08: every response that sets or clears the session cookie carries ``Vary: Cookie``
and ``Cache-Control: no-store`` (login callback, logout, renewal, stale cookie cleared),
under ASGI and WSGI."""

from __future__ import annotations

import time

import httpx
from sec_helpers import base_settings, oidc_connector, serve_app

from authrelay import Settings
from authrelay.testing import FakeClock, IdentityProvider


def _session_cookies(response: httpx.Response) -> list[str]:
    return [c for c in response.headers.get_list("set-cookie") if c.startswith("authrelay=")]


def _assert_uncacheable(response: httpx.Response, what: str) -> None:
    assert _session_cookies(response), f"{what}: no session Set-Cookie"
    vary = ",".join(response.headers.get_list("vary"))
    assert "cookie" in [v.strip().lower() for v in vary.split(",")], f"{what}: Vary {vary!r}"
    cache = ",".join(response.headers.get_list("cache-control"))
    assert "no-store" in [v.strip().lower() for v in cache.split(",")], f"{what}: {cache!r}"


def test_se08_set_and_cleared_session_cookies_are_never_cacheable(
    idp: IdentityProvider, shell: str
) -> None:
    clock = FakeClock(time.time())

    def settings(base: str) -> Settings:
        return base_settings(
            base,
            {"idp": oidc_connector(idp.issuer)},
            session={"dev_insecure_cookies": True, "renew_after": 60},
        )

    with serve_app(settings, shell=shell, clock=clock) as app:
        callback = app.login()
        assert callback.status_code == 303
        _assert_uncacheable(callback, "login callback")

        # Renewal: the rolling idle window moves on a plain app request.
        clock.advance(61)
        renewed = app.get("/page")
        assert renewed.json()["subject"] is not None
        _assert_uncacheable(renewed, "renewal")
        assert all("Max-Age=0" not in c for c in _session_cookies(renewed))

        # A stale cookie (logged out elsewhere / forged) is cleared on the way.
        stale = app.client.get(
            f"{app.base}/page", headers={"cookie": "authrelay=not-a-valid-sealed-value"}
        )
        assert stale.json()["subject"] is None
        _assert_uncacheable(stale, "stale cookie cleared")
        assert any("Max-Age=0" in c for c in _session_cookies(stale))

        out = app.logout()
        assert out.status_code == 200
        _assert_uncacheable(out, "logout")
        assert any("Max-Age=0" in c for c in _session_cookies(out))
        assert "authrelay" not in app.client.cookies  # the browser dropped it


def test_se08_connect_sets_a_new_session_cookie_uncacheably(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(
        lambda base: base_settings(base, {"idp": oidc_connector(idp.issuer)}), shell=shell
    ) as app:
        assert app.login().status_code == 303
        idp.next_login("bob")
        linked = app.client.get(app.authorize(action="connect"))
        assert linked.status_code == 303, linked.text
        _assert_uncacheable(linked, "connect callback")
