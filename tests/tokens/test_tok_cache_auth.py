"""The token cache (ST-07) and client authentication (AC-09, AC-11)."""

from __future__ import annotations

import base64
import json
from urllib.parse import unquote_plus

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from authrelay.settings import ClientSettings
from authrelay.testing import FakeClock
from authrelay.tokens import AccessToken, ClientAuthenticator, TokenCache
from authrelay.tokens.cache import use_until


def test_st07_entries_end_a_margin_before_expiry_and_never_after() -> None:
    clock = FakeClock(1_800_000_000.0)
    cache = TokenCache(10, 1 << 20, clock=clock)
    cache.put("k", AccessToken("t", clock.now + 300), "Bearer t", 60)
    assert cache.header("k") == "Bearer t"
    clock.now += 239
    assert cache.header("k") == "Bearer t"
    clock.now += 1
    assert cache.header("k") is None
    # Short-lived tokens are used for half their life, never past expiry.
    assert use_until(0, 20, 60) == 10


def test_st07_bounded_by_entries_and_bytes() -> None:
    clock = FakeClock(1_800_000_000.0)
    cache = TokenCache(3, 1 << 20, clock=clock)
    for i in range(5):
        cache.put(i, AccessToken(f"t{i}", clock.now + 300), f"Bearer t{i}", 60)
    assert sorted(cache.entries) == [2, 3, 4]
    small = TokenCache(1000, 4000, clock=clock)
    for i in range(50):
        small.put(i, AccessToken("x" * 500, clock.now + 300), "Bearer " + "x" * 500, 60)
    assert small.nbytes <= 4000
    assert 0 < len(small) < 50


def test_expired_entries_are_evicted_first() -> None:
    clock = FakeClock(1_800_000_000.0)
    cache = TokenCache(2, 1 << 20, clock=clock)
    cache.put("old", AccessToken("a", clock.now + 10), "Bearer a", 0)
    cache.put("keep", AccessToken("b", clock.now + 1000), "Bearer b", 0)
    clock.now += 20
    cache.put("new", AccessToken("c", clock.now + 1000), "Bearer c", 0)
    assert set(cache.entries) == {"keep", "new"}


def test_discard_only_the_refused_token() -> None:
    clock = FakeClock(1_800_000_000.0)
    cache = TokenCache(10, 1 << 20, clock=clock)
    cache.put("k", AccessToken("new", clock.now + 300), "Bearer new", 60)
    cache.discard("k", "Bearer old")
    assert cache.header("k") == "Bearer new"
    cache.discard("k", "Bearer new")
    assert cache.header("k") is None


def test_negative_cache_window() -> None:
    clock = FakeClock(1_800_000_000.0)
    cache = TokenCache(10, 1 << 20, clock=clock)
    error = RuntimeError("down")
    cache.fail("k", error, 2.0)
    assert cache.failure("k") is error
    clock.now += 2.5
    assert cache.failure("k") is None
    cache.fail("k", error, 0)
    assert cache.failure("k") is None


def test_repr_has_no_token() -> None:
    token = AccessToken("secret-token-value", 1.0)
    assert "secret-token-value" not in repr(token)


def test_ac09_basic_auth_form_encodes_before_base64() -> None:
    auth = ClientAuthenticator(ClientSettings(client_id="my app", client_secret="a:b%c+d"))
    form: dict[str, str] = {}
    headers: dict[str, str] = {}
    auth.apply(form, headers, token_endpoint="https://idp/token", issuer=None)
    raw = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    user, _, password = raw.partition(":")
    assert (unquote_plus(user), unquote_plus(password)) == ("my app", "a:b%c+d")
    assert "a:b%c+d" not in repr(auth)
    assert form == {}


def test_client_secret_post() -> None:
    auth = ClientAuthenticator(
        ClientSettings(
            client_id="app", client_secret="s", token_endpoint_auth_method="client_secret_post"
        )
    )
    form: dict[str, str] = {}
    headers: dict[str, str] = {}
    auth.apply(form, headers, token_endpoint="https://idp/token", issuer=None)
    assert form == {"client_id": "app", "client_secret": "s"} and headers == {}


@pytest.mark.parametrize("as_jwk", [False, True])
def test_ac11_private_key_jwt_assertion(as_jwk: bool) -> None:
    key = RSAKey.generate_key(2048, {"kid": "k1"})
    private = json.dumps(key.as_dict(private=True)) if as_jwk else key.as_pem(private=True).decode()
    clock = FakeClock(1_800_000_000.0)
    auth = ClientAuthenticator(
        ClientSettings(
            client_id="app",
            token_endpoint_auth_method="private_key_jwt",
            private_key=private,
            private_key_id="k1",
        ),
        clock=clock,
    )
    form: dict[str, str] = {}
    auth.apply(form, {}, token_endpoint="https://idp/token", issuer="https://idp")
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    token = jwt.decode(form["client_assertion"], key, algorithms=["RS256"])
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "app"
    assert claims["aud"] == "https://idp"
    assert claims["exp"] - claims["iat"] <= 300
    assert token.header["kid"] == "k1"
    other: dict[str, str] = {}
    auth.apply(other, {}, token_endpoint="https://idp/token", issuer=None)
    second = jwt.decode(other["client_assertion"], key, algorithms=["RS256"]).claims
    assert second["jti"] != claims["jti"]
    assert second["aud"] == "https://idp/token"
