"""Discovery, JWKS and key rotation, UserInfo, introspection, revocation, minting."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from _idp_helpers import code_flow
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from authrelay.testing import IdentityProvider

BASIC = ("test-client", "test-secret")


@pytest.mark.parametrize(
    "path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
)
def test_metadata(
    http_client: httpx.Client, identity_provider_server: IdentityProvider, path: str
) -> None:
    doc = http_client.get(path).json()
    issuer = identity_provider_server.issuer
    assert doc["issuer"] == issuer
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["code_challenge_methods_supported"] == ["S256"]
    for name in ("token", "introspect", "revoke", "end-session", "userinfo", "jwks"):
        assert any(str(v) == f"{issuer}/{name}" for v in doc.values())
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in doc["grant_types_supported"]
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    assert set(doc["id_token_signing_alg_values_supported"]) == {"RS256", "ES256"}


def test_jwks_is_public_only_and_rotation_keeps_old(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    idp = identity_provider_server
    keys = http_client.get("/jwks").json()["keys"]
    assert {k["alg"] for k in keys} == {"RS256", "ES256"}
    assert all("d" not in k for k in keys)
    old_token = idp.mint_access_token()
    idp.rotate_keys()
    rotated = http_client.get("/jwks").json()["keys"]
    assert len(rotated) == 4
    new_token = idp.mint_access_token()
    assert jwt.decode(new_token, KeySet.import_key_set({"keys": rotated})).header["kid"] not in {
        k["kid"] for k in keys
    }
    assert jwt.decode(old_token, KeySet.import_key_set({"keys": rotated}))
    assert jwt.decode(idp.mint_access_token(key="old"), KeySet.import_key_set({"keys": rotated}))
    idp.rotate_keys(keep_old=False)
    assert len(http_client.get("/jwks").json()["keys"]) == 2


def test_other_key_is_not_published(identity_provider: IdentityProvider) -> None:
    token = identity_provider.mint_access_token(key="other")
    keys = KeySet.import_key_set(identity_provider.keys.jwks())
    with pytest.raises(BadSignatureError):
        jwt.decode(token, keys)


def _segment(token: str, index: int) -> dict[str, object]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_mint_claims_override_and_remove(identity_provider: IdentityProvider) -> None:
    token = identity_provider.mint_access_token(claims={"exp": "soon", "jti": None}, alg="ES256")
    decoded = jwt.decode(token, KeySet.import_key_set(identity_provider.keys.jwks()))
    assert decoded.claims["exp"] == "soon"
    assert "jti" not in decoded.claims
    assert decoded.header["alg"] == "ES256"
    assert decoded.header["typ"] == "at+jwt"
    forged = identity_provider.mint_access_token(headers={"crit": ["exp"], "jku": "https://x"})
    assert _segment(forged, 0)["crit"] == ["exp"]
    unsigned = identity_provider.mint_access_token(alg="none")
    assert unsigned.endswith(".")
    assert _segment(unsigned, 0)["alg"] == "none"


def test_userinfo_header_only(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    token = str(code_flow(http_client, scope="openid profile email")["access_token"])
    ok = http_client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert ok.json() == {
        "sub": "alice",
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "email": "alice@example.test",
        "email_verified": True,
    }
    in_query = http_client.get("/userinfo", params={"access_token": token})
    assert in_query.status_code == 400
    missing = http_client.get("/userinfo")
    assert missing.status_code == 401
    assert "error=" not in missing.headers["www-authenticate"]
    bad = http_client.get("/userinfo", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]


def test_userinfo_needs_openid_scope(idp_client: httpx.Client) -> None:
    token = idp_client.post(
        "/token", data={"grant_type": "client_credentials", "scope": "orders.read"}, auth=BASIC
    ).json()["access_token"]
    response = idp_client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_in01_introspection_requires_client_auth(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    token = identity_provider.mint_opaque_token()
    assert idp_client.post("/introspect", data={"token": token}).status_code == 401
    info = idp_client.post("/introspect", data={"token": token}, auth=BASIC).json()
    assert info["active"] is True
    assert info["aud"] == "api://orders"
    assert info["scope"] == "orders.read"
    inactive = identity_provider.mint_opaque_token(active=False)
    assert idp_client.post("/introspect", data={"token": inactive}, auth=BASIC).json() == {
        "active": False
    }


def test_introspection_of_minted_jwt(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    token = identity_provider.mint_access_token(sub="bob")
    info = idp_client.post("/introspect", data={"token": token}, auth=BASIC).json()
    assert info["active"] is True
    assert info["sub"] == "bob"
    forged = identity_provider.mint_access_token(key="other")
    assert idp_client.post("/introspect", data={"token": forged}, auth=BASIC).json() == {
        "active": False
    }


def test_rv01_revoking_refresh_revokes_its_access_tokens(
    idp_client: httpx.Client, identity_provider: IdentityProvider
) -> None:
    body = code_flow(idp_client)
    response = idp_client.post(
        "/revoke",
        data={"token": body["refresh_token"], "token_type_hint": "refresh_token"},
        auth=BASIC,
    )
    assert response.status_code == 200
    assert identity_provider.refresh_token_state(str(body["refresh_token"])) == "revoked"
    introspected = idp_client.post(
        "/introspect", data={"token": body["access_token"]}, auth=BASIC
    ).json()
    assert introspected == {"active": False}
    assert idp_client.post("/revoke", data={"token": "unknown"}, auth=BASIC).status_code == 200
    bad_hint = idp_client.post(
        "/revoke", data={"token": "x", "token_type_hint": "id_token"}, auth=BASIC
    )
    assert bad_hint.json()["error"] == "unsupported_token_type"
