"""Refresh rotation, client credentials, token exchange and on-behalf-of."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from _idp_helpers import code_flow
from joserfc import jwt
from joserfc.jwk import KeySet

from authrelay.testing import FakeClock, IdentityProvider, OAuthClient

BASIC = ("test-client", "test-secret")
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def _claims(idp: IdentityProvider, token: str) -> dict[str, object]:
    return dict(jwt.decode(token, KeySet.import_key_set(idp.keys.jwks())).claims)


def _refresh(client: httpx.Client, token: str, **extra: str) -> httpx.Response:
    return client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": token, **extra}, auth=BASIC
    )


def test_refresh_rotates_and_reuse_revokes_family(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    idp = identity_provider_server
    first = code_flow(http_client)
    rt1 = str(first["refresh_token"])
    second = _refresh(http_client, rt1)
    assert second.status_code == 200
    rt2 = second.json()["refresh_token"]
    assert rt2 != rt1
    assert idp.refresh_token_state(rt1) == "rotated"
    assert idp.refresh_token_state(rt2) == "active"
    assert idp.issued_refresh_tokens("alice") == [rt1, rt2]
    reuse = _refresh(http_client, rt1)
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert idp.refresh_token_state(rt2) == "revoked"
    assert _refresh(http_client, rt2).json()["error"] == "invalid_grant"
    assert idp.counters.count(endpoint="token", grant_type="refresh_token") == 3
    assert idp.counters.count(endpoint="token", grant_type="refresh_token", status=400) == 2


def test_refresh_reuse_within_grace_is_accepted(
    make_identity_provider: Callable[..., IdentityProvider], clock: FakeClock
) -> None:
    idp = make_identity_provider(clock=clock, refresh_reuse_grace=5.0)
    with httpx.Client(transport=idp.sync_transport(), base_url=idp.issuer) as client:
        rt1 = str(code_flow(client)["refresh_token"])
        assert _refresh(client, rt1).status_code == 200
        clock.advance(2)
        assert _refresh(client, rt1).status_code == 200
        clock.advance(10)
        assert _refresh(client, rt1).json()["error"] == "invalid_grant"


def test_refresh_token_expires(
    make_identity_provider: Callable[..., IdentityProvider], clock: FakeClock
) -> None:
    idp = make_identity_provider(clock=clock, refresh_token_ttl=100)
    with httpx.Client(transport=idp.sync_transport(), base_url=idp.issuer) as client:
        rt = str(code_flow(client)["refresh_token"])
        clock.advance(101)
        assert _refresh(client, rt).json()["error"] == "invalid_grant"


def test_refresh_scope_narrows_never_widens(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    rt = str(code_flow(idp_client, scope="openid orders.read orders.write")["refresh_token"])
    widened = _refresh(idp_client, rt, scope="openid orders.read notes.read")
    assert widened.json()["error"] == "invalid_scope"
    assert identity_provider.refresh_token_state(rt) == "active"  # refused before rotation
    narrowed = _refresh(idp_client, rt, scope="orders.read")
    assert narrowed.status_code == 200
    assert narrowed.json()["scope"] == "orders.read"
    assert "id_token" not in narrowed.json()
    assert _claims(identity_provider, narrowed.json()["access_token"])["scope"] == "orders.read"


def test_refreshed_id_token_keeps_identity_claims(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    first = code_flow(idp_client)
    refreshed = _refresh(idp_client, str(first["refresh_token"])).json()
    before = _claims(identity_provider, str(first["id_token"]))
    after = _claims(identity_provider, refreshed["id_token"])
    for name in ("iss", "sub", "aud", "azp", "auth_time"):
        assert after[name] == before[name]
    assert "nonce" not in after


def test_refresh_token_of_other_client_rejected(idp_client: httpx.Client) -> None:
    rt = str(code_flow(idp_client)["refresh_token"])
    response = idp_client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": "public-client"},
    )
    assert response.json()["error"] == "invalid_grant"


def test_client_credentials_resource_and_scope(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    by_scope = idp_client.post(
        "/token", data={"grant_type": "client_credentials", "scope": "notes.read"}, auth=BASIC
    ).json()
    assert _claims(identity_provider, by_scope["access_token"])["aud"] == "https://notes.local"
    assert "refresh_token" not in by_scope
    by_default = idp_client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "api://orders/.default"},
        auth=BASIC,
    ).json()
    assert by_default["scope"] == "orders.read orders.write"
    unknown = idp_client.post(
        "/token", data={"grant_type": "client_credentials", "resource": "api://nope"}, auth=BASIC
    )
    assert unknown.json()["error"] == "invalid_target"
    mismatch = idp_client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "resource": "api://orders",
            "scope": "notes.read",
        },
        auth=BASIC,
    )
    assert mismatch.json()["error"] == "invalid_scope"


def test_no_resource_gives_opaque_introspectable_token(
    idp_client: httpx.Client,
) -> None:
    body = idp_client.post("/token", data={"grant_type": "client_credentials"}, auth=BASIC).json()
    assert body["access_token"].count(".") == 0
    info = idp_client.post("/introspect", data={"token": body["access_token"]}, auth=BASIC).json()
    assert info["active"] is True
    assert info["client_id"] == "test-client"


# RFC 8693 token exchange ---------------------------------------------------------------


def _exchange(client: httpx.Client, subject: str, **extra: str) -> httpx.Response:
    data = {
        "grant_type": EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS,
        **extra,
    }
    return client.post("/token", data=data, auth=BASIC)


def test_exchange_issues_token_for_audience_with_act(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    idp = identity_provider_server
    subject = idp.mint_access_token(audience="api://orders", expires_in=120)
    response = _exchange(http_client, subject, audience="https://notes.local")
    assert response.status_code == 200
    body = response.json()
    assert body["issued_token_type"] == ACCESS
    assert body["token_type"] == "Bearer"
    claims = _claims(idp, body["access_token"])
    assert claims["aud"] == "https://notes.local"
    assert claims["sub"] == "alice"
    assert claims["act"] == {"sub": "test-client"}
    assert int(str(claims["exp"])) <= int(str(_claims(idp, subject)["exp"]))  # TX-04
    assert body["expires_in"] <= 120


def test_tx_exchange_nests_existing_act_and_uses_actor_token(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    subject = identity_provider.mint_access_token(claims={"act": {"sub": "first-agent"}})
    actor = identity_provider.mint_access_token(sub="planner-agent", audience="api://orders")
    body = _exchange(
        idp_client,
        subject,
        resource="https://notes.local",
        actor_token=actor,
        actor_token_type=ACCESS,
    ).json()
    claims = _claims(identity_provider, body["access_token"])
    assert claims["act"] == {"sub": "planner-agent", "act": {"sub": "first-agent"}}


def test_tx01_actor_token_without_type_is_invalid_request(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    subject = identity_provider.mint_access_token()
    actor = identity_provider.mint_access_token(sub="bob")
    response = _exchange(idp_client, subject, resource="https://notes.local", actor_token=actor)
    assert response.json()["error"] == "invalid_request"
    response = _exchange(
        idp_client, subject, resource="https://notes.local", actor_token_type=ACCESS
    )
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("subject_kind", ["expired", "other_key", "id_token", "revoked", "garbage"])
def test_exchange_rejects_inactive_or_wrong_type_subject(
    idp_client: httpx.Client, identity_provider: IdentityProvider, subject_kind: str
) -> None:
    idp = identity_provider
    subject = {
        "expired": lambda: idp.mint_access_token(expires_in=-10),
        "other_key": lambda: idp.mint_access_token(key="other"),
        "id_token": lambda: idp.mint_id_token(),
        "revoked": lambda: str(code_flow(idp_client, scope="orders.read")["access_token"]),
        "garbage": lambda: "not-a-token",
    }[subject_kind]()
    if subject_kind == "revoked":
        idp_client.post("/revoke", data={"token": subject}, auth=BASIC)
    response = _exchange(idp_client, subject, resource="https://notes.local")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_tx05_unknown_audience_is_invalid_target(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    response = _exchange(idp_client, identity_provider.mint_access_token(), audience="api://ghost")
    assert response.json()["error"] == "invalid_target"


def test_exchange_requested_jwt_type(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    response = _exchange(
        idp_client,
        identity_provider.mint_access_token(),
        resource="api://orders",
        requested_token_type="urn:ietf:params:oauth:token-type:jwt",
    )
    assert response.json()["issued_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    refused = _exchange(
        idp_client,
        identity_provider.mint_access_token(),
        requested_token_type="urn:ietf:params:oauth:token-type:refresh_token",
    )
    assert refused.json()["error"] == "invalid_request"


# On-behalf-of (Entra shape) -----------------------------------------------------------


def _obo(client: httpx.Client, assertion: str, scope: str) -> httpx.Response:
    return client.post(
        "/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion,
            "requested_token_use": "on_behalf_of",
            "scope": scope,
        },
        auth=BASIC,
    )


def test_on_behalf_of_issues_resource_token_for_user(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    user_token = identity_provider.mint_access_token(sub="bob", audience="test-client")
    response = _obo(idp_client, user_token, "api://orders/orders.read")
    assert response.status_code == 200, response.text
    claims = _claims(identity_provider, response.json()["access_token"])
    assert claims["sub"] == "bob"
    assert claims["aud"] == "api://orders"
    assert claims["scope"] == "orders.read"
    default = _obo(idp_client, user_token, "api://orders/.default").json()
    assert default["scope"] == "orders.read orders.write"


def test_on_behalf_of_requires_assertion_for_this_client(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    foreign = identity_provider.mint_access_token(audience="api://orders")
    assert _obo(idp_client, foreign, "api://orders/orders.read").json()["error"] == "invalid_grant"


def test_on_behalf_of_app_id_uri(make_identity_provider: Callable[..., IdentityProvider]) -> None:
    client = OAuthClient(
        "test-client",
        "test-secret",
        grant_types=("urn:ietf:params:oauth:grant-type:jwt-bearer",),
        app_id_uris=("api://middle",),
    )
    idp = make_identity_provider(clients=[client])
    with httpx.Client(transport=idp.sync_transport(), base_url=idp.issuer) as http:
        token = idp.mint_access_token(audience="api://middle")
        assert _obo(http, token, "https://notes.local/notes.read").status_code == 200
