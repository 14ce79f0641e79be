"""The pytest fixtures and in-process transports, as users of the plugin see them."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from authrelay.testing import IdentityProvider


def test_identity_provider_fixture_defaults(identity_provider: IdentityProvider) -> None:
    assert identity_provider.issuer == "https://idp.test"
    assert set(identity_provider.clients) == {"test-client", "public-client"}
    assert identity_provider.clients["public-client"].is_public
    assert set(identity_provider.resources) == {"api://orders", "https://notes.local"}
    assert identity_provider.auto_approve == "alice"


def test_server_fixture_is_served_on_loopback(identity_provider_server: IdentityProvider) -> None:
    assert identity_provider_server.issuer.startswith("http://127.0.0.1:")
    doc = httpx.get(identity_provider_server.issuer + "/.well-known/openid-configuration").json()
    assert doc["issuer"] == identity_provider_server.issuer


def test_factory_overrides(make_identity_provider: Callable[..., IdentityProvider]) -> None:
    idp = make_identity_provider(auto_approve="bob", access_token_ttl=30)
    assert idp.auto_approve == "bob"
    assert idp.access_token_ttl == 30


def test_issuer_unset_raises_clearly() -> None:
    idp = IdentityProvider()
    with pytest.raises(RuntimeError, match="serve_identity_provider"):
        _ = idp.issuer


async def _async_jwks(idp: IdentityProvider) -> int:
    async with httpx.AsyncClient(transport=idp.transport(), base_url=idp.issuer) as client:
        return len((await client.get("/jwks")).json()["keys"])


def test_async_and_sync_transports(identity_provider: IdentityProvider) -> None:
    import asyncio

    assert asyncio.run(_async_jwks(identity_provider)) == 2
    with httpx.Client(
        transport=identity_provider.sync_transport(), base_url=identity_provider.issuer
    ) as client:
        assert len(client.get("/jwks").json()["keys"]) == 2


def test_issuer_with_path(make_identity_provider: Callable[..., IdentityProvider]) -> None:
    idp = make_identity_provider(issuer="https://login.test/tenant-1/v2.0")
    with httpx.Client(transport=idp.sync_transport(), base_url="https://login.test") as client:
        doc = client.get("/tenant-1/v2.0/.well-known/openid-configuration").json()
        assert doc["token_endpoint"] == "https://login.test/tenant-1/v2.0/token"
        assert client.get("/.well-known/openid-configuration").status_code == 404


def test_secrets_not_in_repr(identity_provider: IdentityProvider) -> None:
    assert "test-secret" not in repr(identity_provider.clients["test-client"])
    assert "password" not in repr(next(iter(identity_provider.users.values())))


def test_inv02_bad_input_never_gives_500(idp_client: httpx.Client) -> None:
    attempts = [
        idp_client.post(
            "/token",
            content=b"\xff\xfe",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        idp_client.post(
            "/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic %%%"},
        ),
        idp_client.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": "a.b.c",
            },
        ),
        idp_client.post(
            "/token",
            data={"grant_type": "authorization_code", "code": "x"},
            auth=("test-client", "test-secret"),
        ),
        idp_client.post(
            "/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": "x",
                "subject_token_type": "y",
            },
            auth=("test-client", "test-secret"),
        ),
        idp_client.get(
            "/authorize", params={"client_id": "test-client", "redirect_uri": "http://[::1"}
        ),
        idp_client.get("/userinfo?access_token=a&access_token=b"),
        idp_client.get("/userinfo", headers={"Authorization": "Bearer"}),
        idp_client.get("/end-session", params={"id_token_hint": "not.a.jwt"}),
        idp_client.post(
            "/authorize/login",
            content=b"tx=1&tx=2",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        idp_client.post("/introspect", data={"token": "x"}, auth=("nobody", "x")),
        idp_client.get("/token"),
    ]
    assert all(r.status_code < 500 for r in attempts), [r.status_code for r in attempts]
