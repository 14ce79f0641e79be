"""A standard client library (Authlib's httpx OAuth2Client) against the provider."""

from __future__ import annotations

import warnings

import httpx
import pytest
from _idp_helpers import CALLBACK, pkce_pair
from joserfc import jwt
from joserfc.jwk import KeySet

from authrelay.testing import IdentityProvider

pytestmark = pytest.mark.filterwarnings("ignore:The httpx module is deprecated")

# Authlib installs an "always" filter for its own deprecation warnings on import; importing
# here, inside catch_warnings, keeps that filter (and the import-time warning) contained.
with warnings.catch_warnings():
    import authlib.deprecate  # noqa: F401  (installs the filter, undone on exit)

    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import OAuth2Client

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def _client(idp: IdentityProvider, **kwargs: object) -> object:
    return OAuth2Client(
        client_id="test-client",
        client_secret="test-secret",
        token_endpoint_auth_method="client_secret_basic",
        **kwargs,
    )


def test_authlib_code_pkce_refresh(identity_provider_server: IdentityProvider) -> None:
    idp = identity_provider_server
    client = _client(
        idp, scope="openid profile orders.read", redirect_uri=CALLBACK, code_challenge_method="S256"
    )
    verifier, _ = pkce_pair()
    with client:  # type: ignore[attr-defined]
        url, state = client.create_authorization_url(  # type: ignore[attr-defined]
            f"{idp.issuer}/authorize", code_verifier=verifier, nonce="n-42"
        )
        redirect = httpx.get(url)
        assert redirect.status_code == 302
        token = client.fetch_token(  # type: ignore[attr-defined]
            f"{idp.issuer}/token",
            authorization_response=redirect.headers["location"],
            code_verifier=verifier,
            state=state,
        )
        keys = KeySet.import_key_set(httpx.get(f"{idp.issuer}/jwks").json())
        assert jwt.decode(token["id_token"], keys).claims["nonce"] == "n-42"
        refreshed = client.refresh_token(  # type: ignore[attr-defined]
            f"{idp.issuer}/token", refresh_token=token["refresh_token"]
        )
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert idp.refresh_token_state(token["refresh_token"]) == "rotated"


def test_authlib_client_credentials_and_token_exchange(
    identity_provider_server: IdentityProvider,
) -> None:
    idp = identity_provider_server
    client = _client(idp)
    with client:  # type: ignore[attr-defined]
        app_token = client.fetch_token(  # type: ignore[attr-defined]
            f"{idp.issuer}/token", grant_type="client_credentials", resource="api://orders"
        )
        assert app_token["token_type"] == "Bearer"
        user_token = idp.mint_access_token()
        exchanged = client.fetch_token(  # type: ignore[attr-defined]
            f"{idp.issuer}/token",
            grant_type=EXCHANGE,
            subject_token=user_token,
            subject_token_type=ACCESS,
            audience="https://notes.local",
        )
    assert exchanged["issued_token_type"] == ACCESS
    keys = KeySet.import_key_set(idp.keys.jwks())
    claims = jwt.decode(exchanged["access_token"], keys).claims
    assert claims["aud"] == "https://notes.local"
    assert claims["act"] == {"sub": "test-client"}
