"""MU-04: tokens from connector A's token endpoint are never sent to connector B's
resources; the store keys and seals them by connector and issuer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sec_helpers import base_settings, serve_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authrelay import Settings
from authrelay._crypto import KeyRing
from authrelay._io import SyncDriver
from authrelay.stores.memory import MemoryBackend
from authrelay.stores.tokens import StoredTokens, TokenStore
from authrelay.testing import IdentityProvider, serve_asgi, serve_identity_provider
from authrelay.testing.models import OAuthClient, TestUser

CODE = "authorization_code"


@dataclass
class Api:
    """A downstream resource that keeps every Authorization header it got."""

    seen: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        async def anything(request: Request) -> JSONResponse:
            self.seen.append(request.headers.get("authorization", ""))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/data", anything)])


def _provider(name: str) -> IdentityProvider:
    return IdentityProvider(
        clients=[
            OAuthClient(
                f"client-{name}",
                f"secret-{name}",
                redirect_uris=(f"http://127.0.0.1/auth/{name}/callback",),
                loopback_any_port=True,
            )
        ],
        users=[TestUser("alice", "alice", name="Alice")],
        auto_approve="alice",
    )


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    """Two providers, each with its own downstream API."""
    with ExitStack() as stack:
        out: dict[str, Any] = {}
        for name in ("a", "b"):
            idp = _provider(name)
            stack.enter_context(serve_identity_provider(idp))
            api = Api()
            url = stack.enter_context(serve_asgi(api.app()))
            out[name] = (idp, api, url)
        yield out


def _settings(world: dict[str, Any]) -> Callable[[str], Settings]:
    def make(base: str) -> Settings:
        connectors = {
            name: {
                "standard": "oidc",
                "issuer": idp.issuer,
                "client_id": f"client-{name}",
                "client_secret": f"secret-{name}",
                "target": f"provider-{name}",
            }
            for name, (idp, _, _) in world.items()
        }
        services = {
            f"svc_{name}": {
                "base_url": url,
                "allow_http": True,
                "flow": "connector",
                "connector": name,
            }
            for name, (_, _, url) in world.items()
        }
        return base_settings(base, connectors, services=services)

    return make


def test_mu04_connector_a_tokens_never_reach_connector_b_resources(
    world: dict[str, Any], shell: str
) -> None:
    (_, api_a, _), (_, api_b, _) = world["a"], world["b"]
    with serve_app(_settings(world), shell=shell) as app:
        assert app.login("a").status_code == 303
        # Not linked to B yet: B's service asks for B, it never borrows A's token.
        refused = app.get("/call/svc_b/data").json()
        assert refused == {"error": "ReauthorizationRequired"}
        assert api_b.seen == []
        assert app.get("/call/svc_a/data").json()["status"] == 200

        linked = app.client.get(app.authorize("b", action="connect"))
        assert linked.status_code == 303, linked.text
        for _ in range(2):
            assert app.get("/call/svc_b/data").json()["status"] == 200
            assert app.get("/call/svc_a/data").json()["status"] == 200

        issued = {
            name: {
                json.loads(s.answer)["access_token"]
                for s in app.recorder.token_requests(CODE)
                if s.url.startswith(world[name][0].issuer)
            }
            for name in ("a", "b")
        }
    assert len(issued["a"]) == 1 and len(issued["b"]) == 1
    assert issued["a"].isdisjoint(issued["b"])
    assert api_a.seen and api_b.seen
    assert {h.removeprefix("Bearer ") for h in api_a.seen} == issued["a"]
    assert {h.removeprefix("Bearer ") for h in api_b.seen} == issued["b"]
    for token in issued["a"]:
        assert all(token not in header for header in api_b.seen)


def test_mu04_store_keys_and_seals_by_connector_and_issuer() -> None:
    backend = MemoryBackend()
    store = TokenStore(KeyRing([b"k" * 32], "authrelay-store-v1"))
    driver = SyncDriver(httpx.Client(), backend)
    record = StoredTokens(
        connector="a", target="provider-a", issuer="https://a.example", access_token="at-a"
    )
    assert driver.run(store.save_tokens("u1", record, expected_version=None))
    key_a, key_b = store.tokens_key("u1", "a"), store.tokens_key("u1", "b")
    assert key_a != key_b
    # Copy A's sealed bytes under B's key: they do not open there.
    stored = backend.get(key_a)
    assert stored is not None
    backend.put(key_b, stored[0])
    found_b, _ = driver.run(store.load_tokens("u1", "b", "https://a.example"))
    assert found_b is None
    # The same connector name, another issuer (reconfigured): the old record does not open.
    found_other_issuer, _ = driver.run(store.load_tokens("u1", "a", "https://b.example"))
    assert found_other_issuer is None
    found_a, _ = driver.run(store.load_tokens("u1", "a", "https://a.example"))
    assert found_a is not None and found_a.access_token == "at-a"
    driver.client.close()
