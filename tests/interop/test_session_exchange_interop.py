"""A session user's token exchanged at the certified oidc-provider (``token-exchange``
profile of ``server.mjs``), under ASGI and WSGI; the downstream API verifies the result."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from oidc_harness import OidcProvider

sys.path.insert(0, str(Path(__file__).parent.parent / "connectors"))
sys.path.insert(0, str(Path(__file__).parent.parent / "services"))
from connector_helpers import app_settings
from svc_apps import asgi_app, wsgi_app

from asgi_lifespan import answer_lifespan
from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay.testing import free_port, serve_asgi
from authrelay.testing.servers import serve_wsgi

pytestmark = [pytest.mark.interop, pytest.mark.parametrize("shell", ["asgi", "wsgi"])]

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ORDERS = {"allow_http": True, "flow": "token_exchange", "audience": "api://orders",
          "scopes": ["orders.read"]}  # fmt: skip


def _orders_api(issuer: str) -> tuple[Any, Relay]:
    """A resource server that accepts only the provider's RS256 JWTs for ``api://orders``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        if scope["type"] != "http":
            return None
        claims = scope["user"].claims
        body = json.dumps({k: claims.get(k) for k in ("sub", "aud", "scope", "client_id")})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body.encode()})
        return None

    settings = Settings.model_validate(
        {
            "secret_keys": ["interop-orders-api-key-0000000000"],
            "http": {"allow_insecure_loopback": True},
            "bearer": {"issuer": issuer, "audience": "api://orders"},
        }
    )
    relay = Relay(settings)
    return AuthRelayMiddleware(app, relay=relay), relay


@contextmanager
def _app(provider: OidcProvider, shell: str) -> Iterator[tuple[str, httpx.Client]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    orders, orders_relay = _orders_api(provider.issuer)
    with serve_asgi(orders) as api:
        settings = app_settings(
            provider.issuer,
            base,
            connector={
                "client_id": provider.client_id,
                "client_secret": provider.client_secret,
                "scopes": ["openid", "profile", "email", "offline_access"],
                "authorize_params": {"prompt": "consent"},
            },
            bearer={"issuer": provider.issuer, "audience": "api://app"},
            client={"client_id": provider.client_id, "client_secret": provider.client_secret},
            services={"orders": ORDERS | {"base_url": api}},
        )
        relay = Relay(settings)
        app = asgi_app(relay) if shell == "asgi" else wsgi_app(relay)
        server = serve_asgi(app, port=port) if shell == "asgi" else serve_wsgi(app, port=port)
        try:
            with server, httpx.Client(follow_redirects=False, timeout=20) as browser:
                yield base, browser
        finally:
            relay.close()
            orders_relay.close()


def test_tx04_session_subject_exchanged_at_oidc_provider(
    oidc_token_exchange_provider: OidcProvider, shell: str
) -> None:
    provider = oidc_token_exchange_provider
    with _app(provider, shell) as (base, browser):
        callback = provider.login(f"{base}/auth/idp/login", "alice", http=browser)
        assert browser.get(callback).status_code == 303
        for _ in range(2):
            answer = browser.get(f"{base}/call/orders", headers={"accept": "application/json"})
            assert answer.status_code == 200, answer.text
            body = answer.json()["body"]
            assert body["sub"] == "alice"
            assert body["aud"] in ("api://orders", ["api://orders"])
            assert body["scope"] == "orders.read"
        out = browser.post(
            f"{base}/auth/logout", headers={"origin": base, "accept": "application/json"}
        )
        assert out.status_code == 200
        after = browser.get(f"{base}/call/orders", headers={"accept": "application/json"})
        assert after.status_code == 401


def test_tx04_an_unknown_subject_is_refused_by_oidc_provider(
    oidc_token_exchange_provider: OidcProvider, shell: str
) -> None:
    """The grant itself checks the subject: a made-up token gets invalid_grant."""
    provider = oidc_token_exchange_provider
    answer = httpx.post(
        provider.discovery["token_endpoint"],
        data={
            "grant_type": EXCHANGE,
            "subject_token": "not-a-token",
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "audience": "api://orders",
        },
        auth=(provider.client_id, provider.client_secret),
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
