"""Headers on authrelay's own responses, under ASGI and WSGI. Every one carries
``X-Content-Type-Options: nosniff``; login and callback redirects carry
``Referrer-Policy: no-referrer``; HTML pages carry a CSP that allows nothing but their
own inline style, and a provider's error text is shown only as escaped text."""

from __future__ import annotations

import base64
import hashlib
import re
from contextlib import AbstractContextManager
from urllib.parse import urlencode

import httpx
from sec_helpers import App, base_settings, oidc_connector, query_of, serve_app

from authrelay.testing import IdentityProvider

HTML = {"accept": "text/html"}
JSON = {"accept": "application/json"}
XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _serve(idp: IdentityProvider, shell: str) -> AbstractContextManager[App]:
    return serve_app(
        lambda base: base_settings(base, {"idp": oidc_connector(idp.issuer)}), shell=shell
    )


def _assert_html_page(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";")}
    assert directives["default-src"] == "default-src 'none'"
    assert directives["frame-ancestors"] == "frame-ancestors 'none'"
    assert "script-src" not in directives and "'unsafe-inline'" not in csp
    for style in re.findall(r"<style>(.*?)</style>", response.text, re.S):
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in directives["style-src"]


def _own_responses(app: App) -> list[tuple[str, httpx.Response]]:
    base = app.base
    client = app.client
    login = client.get(f"{base}/auth/idp/login")
    callback = client.get(client.get(login.headers["location"]).headers["location"])
    bad_json = client.get(f"{base}/auth/idp/callback", params={"state": "x"}, headers=JSON)
    bad_html = client.get(f"{base}/auth/idp/callback", params={"state": "x"}, headers=HTML)
    return [
        ("login", login),
        ("callback", callback),
        ("callback error json", bad_json),
        ("callback error html", bad_html),
        ("me", client.get(f"{base}/auth/me")),
        ("connectors", client.get(f"{base}/auth/connectors")),
        ("not found", client.get(f"{base}/auth/nope")),
        ("method", client.post(f"{base}/auth/idp/login")),
        ("logout", app.logout()),
        ("missing json", httpx.get(f"{base}/auth/idp/connect", headers=JSON)),
        ("missing html", httpx.get(f"{base}/auth/idp/connect", headers=HTML)),
        ("too large", httpx.get(f"{base}/x", headers={"cookie": "a=" + "b" * 33_000})),
    ]


def test_headers_every_own_response_is_nosniff(idp: IdentityProvider, shell: str) -> None:
    with _serve(idp, shell) as app:
        for what, response in _own_responses(app):
            assert response.status_code < 500, what
            assert response.headers.get("x-content-type-options") == "nosniff", what
            if response.headers.get("content-type", "").startswith("text/html"):
                _assert_html_page(response)


def test_ac12_headers_login_and_callback_redirects_send_no_referrer(
    idp: IdentityProvider, shell: str
) -> None:
    with _serve(idp, shell) as app:
        login = app.client.get(f"{app.base}/auth/idp/login")
        assert login.status_code == 302
        callback = app.client.get(app.client.get(login.headers["location"]).headers["location"])
        assert callback.status_code == 303
        for response in (login, callback):
            assert response.headers["referrer-policy"] == "no-referrer"


def test_headers_provider_error_text_is_never_reflected_as_html(
    idp: IdentityProvider, shell: str
) -> None:
    with _serve(idp, shell) as app:
        for accept in (HTML, JSON):
            callback = app.authorize()
            params = query_of(callback)
            params.pop("code")
            params.update(error=XSS, error_description=XSS, error_uri="javascript:alert(3)")
            url = callback.split("?")[0] + "?" + urlencode(params)
            answer = app.client.get(url, headers=accept)
            assert answer.status_code == 400
            assert "<script" not in answer.text and "<img" not in answer.text
            assert "javascript:" not in answer.text
            if accept is HTML:
                _assert_html_page(answer)
            else:
                assert answer.json()["error"] == "access_denied"
