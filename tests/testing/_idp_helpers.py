"""Helpers shared by the identity provider tests (imported as a plain module)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(response: httpx.Response) -> dict[str, str]:
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


CALLBACK = "http://testserver/auth/idp/callback"


def authorize(
    client: httpx.Client,
    *,
    client_id: str = "test-client",
    redirect_uri: str = CALLBACK,
    scope: str = "openid profile",
    challenge: str | None = None,
    **extra: str,
) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "st-1",
        "nonce": "n-1",
        **extra,
    }
    if challenge is not None:
        params.setdefault("code_challenge", challenge)
        params.setdefault("code_challenge_method", "S256")
    return client.get("/authorize", params=params)


def code_flow(
    client: httpx.Client, *, scope: str = "openid profile", **extra: str
) -> dict[str, object]:
    """Run code + PKCE for test-client and return the token response body."""
    verifier, challenge = pkce_pair()
    response = authorize(client, scope=scope, challenge=challenge, **extra)
    assert response.status_code == 302, response.text
    code = query_of(response)["code"]
    token = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
        auth=("test-client", "test-secret"),
    )
    assert token.status_code == 200, token.text
    body: dict[str, object] = token.json()
    return body
