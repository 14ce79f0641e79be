"""BearerVerifier end to end: discovery → JWKS → JWT rules → verified-token cache."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import pytest
from bearer_idp import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    DROP,
    FakeClock,
    MiniIdP,
)
from starlette.responses import Response

from authrelay._io import AsyncDriver, SyncDriver
from authrelay.errors import (
    ConfigurationError,
    IdentityProviderUnavailable,
    InsufficientScope,
    InvalidToken,
)
from authrelay.identity.bearer import BearerVerifier, scopes_of
from authrelay.identity.jwks import JwksCache, SignatureCheck
from authrelay.settings import Settings


def settings_for(idp: MiniIdP, **bearer: Any) -> Settings:
    return Settings(
        dev_mode=True,
        bearer={"issuer": idp.issuer, "audience": AUDIENCE, **bearer},
        client={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        http={"allow_insecure_loopback": True},
    )


@pytest.fixture
def verifier(idp: MiniIdP, clock: FakeClock) -> BearerVerifier:
    return BearerVerifier(settings_for(idp), clock=clock)


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts signature verifications, by algorithm, made with keys from the JWKS."""
    calls: list[str] = []
    original = JwksCache.check

    def spy(self: JwksCache, key: Any, alg: str) -> SignatureCheck:
        check = original(self, key, alg)

        def counted(signing_input: bytes, signature: bytes) -> bool:
            calls.append(alg)
            return check(signing_input, signature)

        return counted

    monkeypatch.setattr(JwksCache, "check", spy)
    return calls


# -- success ------------------------------------------------------------------------------


def test_jwt_bearer_gives_principal_and_credentials(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, clock: FakeClock
) -> None:
    token = idp.mint(sub="alice", name="Alice", scope="orders.read profile")
    principal, credentials = driver.run(verifier.verify(token))
    assert (principal.subject, principal.kind, principal.issuer) == ("alice", "bearer", idp.issuer)
    assert principal.is_authenticated and principal.display_name == "Alice"
    assert principal.claims["aud"] == AUDIENCE
    with pytest.raises(TypeError):
        principal.claims["sub"] = "mallory"  # type: ignore[index]
    assert credentials.scopes == {"orders.read", "profile"}
    assert credentials.token == token
    assert credentials.expires_at == int(clock.now) + 300
    assert token not in repr(principal) + repr(credentials) + repr(verifier)
    assert (idp.counters["openid"], idp.counters["jwks"]) == (1, 1)


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({"scope": "a b  c"}, {"a", "b", "c"}),
        ({"scope": DROP, "scp": ["a", "b"]}, {"a", "b"}),
        ({"scope": DROP, "scp": "a b"}, {"a", "b"}),
        ({"scope": DROP}, set()),
        ({"scope": DROP, "scp": [1, "a", ""]}, {"a"}),
    ],
)
def test_scopes_from_scope_or_scp(
    idp: MiniIdP,
    verifier: BearerVerifier,
    driver: SyncDriver,
    claims: dict[str, Any],
    scopes: set[str],
) -> None:
    _, credentials = driver.run(verifier.verify(idp.mint(**claims)))
    assert credentials.scopes == scopes
    assert scopes_of({"scope": 5}) == frozenset()


def test_es256_bearer_accepted(idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver) -> None:
    assert driver.run(verifier.verify(idp.mint(kid="ec-1", sub="bob")))[0].subject == "bob"


def test_configured_jwks_uri_skips_discovery(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    settings = settings_for(idp, jwks_uri=f"{idp.issuer}/jwks", discovery=False)
    verifier = BearerVerifier(settings, clock=clock)
    assert driver.run(verifier.verify(idp.mint()))[0].subject == "user-1"
    assert idp.counters["openid"] == 0
    metadata = driver.run(verifier.metadata())
    assert metadata["jwks_uri"] == f"{idp.issuer}/jwks"


def test_metadata_and_warm(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, signature_checks: list[str]
) -> None:
    assert driver.run(verifier.metadata())["issuer"] == idp.issuer
    driver.run(verifier.warm())
    assert (idp.counters["openid"], idp.counters["jwks"]) == (1, 1)
    driver.run(verifier.verify(idp.mint()))
    assert (idp.counters["openid"], idp.counters["jwks"]) == (1, 1)


# -- the verified-token cache -------------------------------------------------------------


def test_second_verification_does_no_cryptography_or_io(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, signature_checks: list[str]
) -> None:
    token = idp.mint()
    assert verifier.cached(token) is None
    first = driver.run(verifier.verify(token))
    assert signature_checks == ["RS256"]
    assert verifier.cached(token) is first
    assert driver.run(verifier.verify(token)) is first
    assert signature_checks == ["RS256"]
    assert (idp.counters["openid"], idp.counters["jwks"]) == (1, 1)


def test_cache_entry_expires_at_token_exp(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, clock: FakeClock
) -> None:
    token = idp.mint(exp=int(clock.now) + 120)
    driver.run(verifier.verify(token))
    clock.advance(119.9)
    assert verifier.cached(token) is not None
    clock.advance(0.1)
    assert verifier.cached(token) is None
    clock.advance(31)
    with pytest.raises(InvalidToken):
        driver.run(verifier.verify(token))


def test_cache_is_keyed_by_hash_and_bounded(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    verifier = BearerVerifier(settings_for(idp, cache_size=4), clock=clock)
    tokens = [idp.mint(jti=f"t{n}") for n in range(10)]
    for token in tokens:
        driver.run(verifier.verify(token))
    assert len(verifier._entries) == 4
    assert all(len(key) == 32 for key in verifier._entries)
    assert verifier.cached(tokens[-1]) is not None and verifier.cached(tokens[0]) is None


def test_invalid_jwt_is_not_cached_as_valid(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    token = idp.mint(aud="api://billing")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            driver.run(verifier.verify(token))
    assert verifier.cached(token) is None


# -- scopes -------------------------------------------------------------------------------


def test_required_scope_missing_is_403_also_from_cache(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    verifier = BearerVerifier(settings_for(idp, required_scopes=["orders.write"]), clock=clock)
    token = idp.mint(scope="orders.read")
    with pytest.raises(InsufficientScope) as caught:
        driver.run(verifier.verify(token))
    assert caught.value.status == 403 and caught.value.scopes == ("orders.write",)
    with pytest.raises(InsufficientScope):
        verifier.cached(token)
    with pytest.raises(InsufficientScope):
        driver.run(verifier.verify(token))
    assert driver.run(verifier.verify(idp.mint(scope="orders.write")))[0].subject == "user-1"


# -- rejections and outages ---------------------------------------------------------------


@pytest.mark.parametrize("token", ["opaque-token", "a.b.c.d.e", "x" * 20_000])
def test_non_jwt_without_introspection_rejected(
    verifier: BearerVerifier, driver: SyncDriver, token: str
) -> None:
    with pytest.raises(InvalidToken):
        driver.run(verifier.verify(token))


def test_br05_errors_and_logs_never_echo_token_or_claims(
    idp: MiniIdP,
    verifier: BearerVerifier,
    driver: SyncDriver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    canary = "canary-subject-7f3a"
    tokens = [
        idp.mint(sub=canary, aud="api://wrong"),
        idp.mint(sub=canary, iss="https://evil.example"),
        idp.mint(sub=canary, nonce=canary),
        idp.mint(sub=canary, kid="unknown-kid", key=idp.keys["rsa-1"]),
        idp.mint(sub=canary, exp=1),
    ]
    with caplog.at_level(logging.DEBUG, logger="authrelay"):
        for token in tokens:
            with pytest.raises(InvalidToken) as caught:
                driver.run(verifier.verify(token))
            text = caught.value.description + str(caught.value) + repr(caught.value)
            assert canary not in text and token not in text
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert canary not in logged
    assert all(token not in logged for token in tokens)


def test_id01_issuer_mismatch_in_discovery_is_503(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    idp.metadata_overrides["issuer"] = "https://idp.example"
    with pytest.raises(IdentityProviderUnavailable) as caught:
        driver.run(verifier.verify(idp.mint()))
    assert caught.value.status == 503


@pytest.mark.parametrize("endpoint", ["openid", "jwks"])
def test_provider_down_is_503_with_retry_after(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, endpoint: str
) -> None:
    idp.faults[endpoint] = lambda: Response(status_code=503)
    with pytest.raises(IdentityProviderUnavailable) as caught:
        driver.run(verifier.verify(idp.mint()))
    assert caught.value.status == 503
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1


def test_provider_unreachable_is_503(clock: FakeClock, driver: SyncDriver) -> None:
    from authrelay.testing.servers import free_port

    settings = Settings(
        dev_mode=True,
        bearer={"issuer": f"http://127.0.0.1:{free_port()}", "audience": AUDIENCE},
        http={"allow_insecure_loopback": True},
    )
    verifier = BearerVerifier(settings, clock=clock)
    with pytest.raises(IdentityProviderUnavailable):
        driver.run(verifier.verify("a.b.c"))


def test_key_rotation_through_verifier(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, clock: FakeClock
) -> None:
    driver.run(verifier.verify(idp.mint()))
    clock.advance(31)
    new_kid = idp.rotate()
    assert driver.run(verifier.verify(idp.mint(kid=new_kid)))[0].subject == "user-1"
    for n in range(20):
        with pytest.raises(InvalidToken):
            driver.run(verifier.verify(idp.mint(kid=f"forged-{n}", key=idp.keys["rsa-1"])))
    assert idp.counters["jwks"] == 2


# -- configuration ------------------------------------------------------------------------


def test_verifier_needs_bearer_settings() -> None:
    with pytest.raises(ConfigurationError):
        BearerVerifier(Settings(dev_mode=True))


def test_insecure_issuer_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match=r"bearer\.issuer: must use https"):
        Settings(dev_mode=True, bearer={"issuer": "http://idp.example", "audience": "a"})


def test_discovery_off_needs_jwks_uri() -> None:
    settings = Settings(
        dev_mode=True,
        bearer={"issuer": "https://idp.example", "audience": "a", "discovery": False},
    )
    with pytest.raises(ConfigurationError):
        BearerVerifier(settings)


# -- async driver over real HTTP ----------------------------------------------------------


def test_async_driver_concurrent_first_sight(
    idp: MiniIdP, verifier: BearerVerifier, signature_checks: list[str]
) -> None:
    tokens = [idp.mint(jti=f"a{n}", kid="ec-1" if n % 2 else "rsa-1") for n in range(6)]

    async def main() -> list[str | None]:
        async with httpx.AsyncClient(timeout=5) as client:
            driver = AsyncDriver(client)
            subjects: list[str | None] = []

            async def one(token: str) -> None:
                subjects.append((await driver.run(verifier.verify(token)))[0].subject)

            async with anyio.create_task_group() as group:
                for token in tokens:
                    group.start_soon(one, token)
            return subjects

    assert anyio.run(main) == ["user-1"] * 6
    assert (idp.counters["openid"], idp.counters["jwks"]) == (1, 1)
    assert len(signature_checks) == 6
