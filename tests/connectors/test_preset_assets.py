"""Preset and standard-connector logos and readmes exist, are served with the right
headers, and ``GET /auth/connectors`` points to URLs that work."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from connector_helpers import Running, run_app

from authrelay.connectors.presets import PRESETS

NO_IDP: Any = SimpleNamespace(issuer="https://idp.invalid")


def _every_preset() -> dict[str, Any]:
    connectors: dict[str, Any] = {
        name: {"preset": name, "client_id": f"{name}-client", "client_secret": "s"}
        for name in PRESETS
    }
    connectors["plain"] = {
        "standard": "oauth2",
        "authorization_endpoint": "https://oauth.invalid/authorize",
        "token_endpoint": "https://oauth.invalid/token",
        "userinfo_endpoint": "https://oauth.invalid/user",
        "client_id": "c",
        "client_secret": "s",
    }
    connectors["company"] = {
        "standard": "oidc",
        "issuer": "https://oidc.invalid",
        "client_id": "c",
        "client_secret": "s",
        "logo": "https://cdn.example/company.svg",
    }
    return connectors


def _listed(app: Running) -> dict[str, dict[str, Any]]:
    response = app.client.get(f"{app.base}/auth/connectors")
    assert response.status_code == 200
    return {c["id"]: c for c in response.json()["connectors"]}


def _check_served(app: Running, url: str, content_type: str) -> httpx.Response:
    assert url.startswith("/auth/connectors/"), url
    response = app.client.get(f"{app.base}{url}")
    assert response.status_code == 200, (url, response.text)
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert response.headers["etag"].startswith('"')
    assert "sandbox" in response.headers["content-security-policy"]
    return response


def test_every_presets_logo_and_readme_are_served(shell: str) -> None:
    with run_app(NO_IDP, wsgi=shell == "wsgi", connectors=_every_preset()) as app:
        listed = _listed(app)
        assert set(PRESETS) <= set(listed)
        for name in [*PRESETS, "plain"]:
            entry = listed[name]
            assert entry["logo"] == f"/auth/connectors/{name}/logo"
            logo = _check_served(app, entry["logo"], "image/svg+xml")
            assert logo.content.startswith(b"<svg") and b"<script" not in logo.content
            readme = _check_served(app, entry["readme"], "text/markdown; charset=utf-8")
            assert readme.text.startswith("# Sign in with ")
            assert f"[connectors.{entry['connector_id']}]" in readme.text
        dark = listed["github"]["logo_dark"]
        assert dark == "/auth/connectors/github/logo-dark"
        assert (
            _check_served(app, dark, "image/svg+xml").content
            != app.client.get(f"{app.base}/auth/connectors/github/logo").content
        )
        assert listed["google"]["logo_dark"] is None
        # a logo the app configures is passed through as it is
        assert listed["company"]["logo"] == "https://cdn.example/company.svg"
        assert listed["company"]["readme"] == "/auth/connectors/company/readme"
        assert app.client.get(f"{app.base}/auth/connectors/company/logo").status_code == 404


def test_logo_revalidation_answers_304(shell: str) -> None:
    with run_app(NO_IDP, wsgi=shell == "wsgi", connectors=_every_preset()) as app:
        url = f"{app.base}/auth/connectors/slack/logo"
        etag = app.client.get(url).headers["etag"]
        again = app.client.get(url, headers={"if-none-match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag


@pytest.mark.parametrize(
    "path",
    [
        "/auth/connectors/nobody/logo",
        "/auth/connectors/github/favicon",
        "/auth/connectors/github/..%2F..%2Fpyproject.toml",
        "/auth/connectors/github/logo/extra",
    ],
)
def test_unknown_asset_routes_are_404(path: str) -> None:
    with run_app(NO_IDP, connectors=_every_preset()) as app:
        response = app.client.get(f"{app.base}{path}")
        assert response.status_code == 404
        assert "pyproject" not in response.text


def test_asset_routes_are_get_only() -> None:
    with run_app(NO_IDP, connectors=_every_preset()) as app:
        response = app.client.post(f"{app.base}/auth/connectors/github/logo")
        assert response.status_code == 405
