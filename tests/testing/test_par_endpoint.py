"""The test provider's pushed authorization request endpoint (RFC 9126), over loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from _idp_helpers import CALLBACK, authorize, pkce_pair, query_of

from authrelay.testing import FakeClock, IdentityProvider, serve_identity_provider

AUTH = ("test-client", "test-secret")


def pushed_params(challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "test-client",
        "redirect_uri": CALLBACK,
        "scope": "openid profile",
        "state": "st-par",
        "nonce": "n-par",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def push(client: httpx.Client, challenge: str, **extra: str) -> httpx.Response:
    return client.post("/par", data=pushed_params(challenge, **extra), auth=AUTH)


def test_metadata_advertises_the_endpoint(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    meta = http_client.get("/.well-known/openid-configuration").json()
    assert meta["pushed_authorization_request_endpoint"] == (
        identity_provider_server.issuer + "/par"
    )
    assert meta["require_pushed_authorization_requests"] is False


def test_push_then_authorize_with_only_client_id_and_request_uri(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    verifier, challenge = pkce_pair()
    pushed = push(http_client, challenge)
    assert pushed.status_code == 201, pushed.text
    body = pushed.json()
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert body["expires_in"] == 60
    assert pushed.headers["cache-control"] == "no-store"
    response = http_client.get(
        "/authorize", params={"client_id": "test-client", "request_uri": body["request_uri"]}
    )
    assert response.status_code == 302, response.text
    params = query_of(response)
    assert params["state"] == "st-par"
    assert params["iss"] == identity_provider_server.issuer
    token = http_client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
        auth=AUTH,
    )
    assert token.status_code == 200, token.text  # the pushed PKCE challenge was kept


def test_request_uri_is_single_use(http_client: httpx.Client) -> None:
    _, challenge = pkce_pair()
    request_uri = push(http_client, challenge).json()["request_uri"]
    query = {"client_id": "test-client", "request_uri": request_uri}
    assert http_client.get("/authorize", params=query).status_code == 302
    again = http_client.get("/authorize", params=query)
    assert again.status_code == 400
    assert "location" not in again.headers


def test_request_uri_expires_after_60_seconds(
    make_identity_provider: Callable[..., IdentityProvider], clock: FakeClock
) -> None:
    idp = make_identity_provider(issuer=None, clock=clock)
    with serve_identity_provider(idp) as url, httpx.Client(base_url=url) as client:
        _, challenge = pkce_pair()
        request_uri = push(client, challenge).json()["request_uri"]
        clock.advance(61)
        response = client.get(
            "/authorize", params={"client_id": "test-client", "request_uri": request_uri}
        )
    assert response.status_code == 400
    assert "expired" in response.text


def test_other_parameters_beside_request_uri_are_refused(http_client: httpx.Client) -> None:
    _, challenge = pkce_pair()
    request_uri = push(http_client, challenge).json()["request_uri"]
    response = http_client.get(
        "/authorize",
        params={"client_id": "test-client", "request_uri": request_uri, "scope": "openid"},
    )
    assert response.status_code == 400
    assert "location" not in response.headers


def test_request_uri_of_another_client_is_refused(http_client: httpx.Client) -> None:
    _, challenge = pkce_pair()
    request_uri = push(http_client, challenge).json()["request_uri"]
    response = http_client.get(
        "/authorize", params={"client_id": "public-client", "request_uri": request_uri}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("auth", "status", "error"),
    [
        (None, 401, "invalid_client"),
        (("test-client", "wrong"), 401, "invalid_client"),
    ],
)
def test_client_authentication_is_required(
    http_client: httpx.Client, auth: tuple[str, str] | None, status: int, error: str
) -> None:
    _, challenge = pkce_pair()
    response = http_client.post("/par", data=pushed_params(challenge), auth=auth)
    assert response.status_code == status
    assert response.json()["error"] == error


def test_pushed_requests_are_validated_like_authorization_requests(
    http_client: httpx.Client,
) -> None:
    _, challenge = pkce_pair()
    bad = {
        "redirect_uri": "http://evil.test/cb",
        "response_type": "token",
        "code_challenge_method": "plain",
        "request_uri": "urn:ietf:params:oauth:request_uri:x",
    }
    for name, value in bad.items():
        response = push(http_client, challenge, **{name: value})
        assert response.status_code == 400, name
        assert response.json()["error"] in ("invalid_request", "unsupported_response_type")


def test_require_par_refuses_plain_requests(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    idp = make_identity_provider(issuer=None, require_par=True)
    with serve_identity_provider(idp) as url, httpx.Client(base_url=url) as client:
        meta = client.get("/.well-known/openid-configuration").json()
        assert meta["require_pushed_authorization_requests"] is True
        _, challenge = pkce_pair()
        plain = authorize(client, challenge=challenge)
        assert plain.status_code == 302
        assert query_of(plain)["error"] == "invalid_request"
        assert "code" not in query_of(plain)
        request_uri = push(client, challenge).json()["request_uri"]
        pushed = client.get(
            "/authorize", params={"client_id": "test-client", "request_uri": request_uri}
        )
    assert pushed.status_code == 302
    assert "code" in query_of(pushed)
