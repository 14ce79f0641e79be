"""BearerVerifier against the strict test identity provider (``authrelay.testing``).

Over real loopback HTTP (``identity_provider_server``) with the sync driver, and in process
(``idp.transport()``) with the async driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from pydantic import SecretStr

from authrelay._io import AsyncDriver, SyncDriver
from authrelay.errors import IdentityProviderUnavailable, InsufficientScope, InvalidToken
from authrelay.identity.bearer import BearerVerifier
from authrelay.settings import ClientSettings, Settings
from authrelay.testing import FakeClock, IdentityProvider


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def idp(make_identity_provider: Any, clock: FakeClock) -> Iterator[IdentityProvider]:
    from authrelay.testing import serve_identity_provider

    provider: IdentityProvider = make_identity_provider(issuer=None, clock=clock)
    with serve_identity_provider(provider):
        yield provider


@pytest.fixture
def driver() -> Iterator[SyncDriver]:
    with httpx.Client(timeout=5) as client:
        yield SyncDriver(client)


def settings_for(issuer: str, **bearer: Any) -> Settings:
    return Settings(
        dev_mode=True,
        bearer={
            "issuer": issuer,
            "audience": "api://orders",
            "introspection_endpoint": f"{issuer}/introspect",
            **bearer,
        },
        client={"client_id": "test-client", "client_secret": "test-secret"},
        http={"allow_insecure_loopback": True, "metadata_timeout": 5.0},
    )


@pytest.fixture
def verifier(idp: IdentityProvider, clock: FakeClock) -> BearerVerifier:
    return BearerVerifier(settings_for(idp.issuer), clock=clock)


def test_access_token_from_provider_accepted(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    token = idp.mint_access_token(sub="alice", scope="orders.read orders.write")
    principal, credentials = driver.run(verifier.verify(token))
    assert (principal.subject, principal.issuer) == ("alice", idp.issuer)
    assert credentials.scopes == {"orders.read", "orders.write"}
    assert verifier.cached(token) == (principal, credentials)
    es = idp.mint_access_token(sub="bob", alg="ES256")
    assert driver.run(verifier.verify(es))[0].subject == "bob"
    assert idp.counters.count(endpoint="jwks") == 1
    assert idp.counters.count(endpoint="discovery") == 1


def test_jw13_rotation_one_refetch_and_forged_kids_rate_limited(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver, clock: FakeClock
) -> None:
    driver.run(verifier.verify(idp.mint_access_token()))
    clock.now += 31
    idp.rotate_keys()
    assert driver.run(verifier.verify(idp.mint_access_token(sub="bob")))[0].subject == "bob"
    assert idp.counters.count(endpoint="jwks") == 2
    for n in range(25):
        forged = idp.mint_access_token(headers={"kid": f"forged-{n}"})
        with pytest.raises(InvalidToken):
            driver.run(verifier.verify(forged))
        clock.now += 1
    assert idp.counters.count(endpoint="jwks") == 2
    # tokens signed with the previous (still published) key keep working
    old = idp.mint_access_token(key="old", sub="carol")
    assert driver.run(verifier.verify(old))[0].subject == "carol"


def test_signature_by_unknown_key_rejected(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    with pytest.raises(InvalidToken) as caught:
        driver.run(verifier.verify(idp.mint_access_token(key="other")))
    assert caught.value.context["reason"] == "signature"


def test_jw09_id_token_rejected_as_access_token(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    id_token = idp.mint_id_token(audience="api://orders", nonce="n-1")
    with pytest.raises(InvalidToken) as caught:
        driver.run(verifier.verify(id_token))
    assert caught.value.context["reason"] == "typ"
    # dressed as an access token (typ, client_id, jti), its nonce still gives it away
    dressed = idp.mint_id_token(
        audience="api://orders",
        nonce="n-1",
        typ="at+jwt",
        claims={"client_id": "test-client", "jti": "j-1"},
    )
    with pytest.raises(InvalidToken) as caught:
        driver.run(verifier.verify(dressed))
    assert caught.value.context["reason"] == "token_kind"


def test_jw06_wrong_audience_from_provider_rejected(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    with pytest.raises(InvalidToken) as caught:
        driver.run(verifier.verify(idp.mint_access_token(audience="https://notes.local")))
    assert caught.value.context["reason"] == "audience"


def test_required_scope_from_provider(
    idp: IdentityProvider, clock: FakeClock, driver: SyncDriver
) -> None:
    verifier = BearerVerifier(
        settings_for(idp.issuer, required_scopes=["orders.write"]), clock=clock
    )
    with pytest.raises(InsufficientScope):
        driver.run(verifier.verify(idp.mint_access_token(scope="orders.read")))


def test_in01_opaque_token_introspected(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    token = idp.mint_opaque_token(sub="bob", scope="orders.read")
    principal, credentials = driver.run(verifier.verify(token))
    assert (principal.subject, credentials.scopes) == ("bob", {"orders.read"})
    driver.run(verifier.verify(token))
    assert idp.counters.count(endpoint="introspect", status=200) == 1


def test_in02_inactive_opaque_token_rejected_and_negatively_cached(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    token = idp.mint_opaque_token(active=False)
    with pytest.raises(InvalidToken):
        driver.run(verifier.verify(token))
    with pytest.raises(InvalidToken):
        driver.run(verifier.verify(token))
    assert idp.counters.count(endpoint="introspect") == 1


def test_in03_opaque_token_for_other_audience_rejected(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    token = idp.mint_opaque_token(audience="https://notes.local")
    with pytest.raises(InvalidToken) as caught:
        driver.run(verifier.verify(token))
    assert caught.value.context["reason"] == "audience"


@pytest.mark.parametrize(
    "fault",
    [{"status": 500}, {"status": 503, "retry_after": 7}, {"malformed": True}, {"drop": True}],
    ids=["500", "503", "malformed", "drop"],
)
def test_in04_introspection_faults_are_503(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver, fault: dict[str, Any]
) -> None:
    token = idp.mint_opaque_token()
    idp.faults.add("introspect", **fault)
    with pytest.raises(IdentityProviderUnavailable):
        driver.run(verifier.verify(token))
    assert verifier.cached(token) is None
    assert driver.run(verifier.verify(token))[0].subject == "alice"


def test_in04_wrong_client_secret_is_503(
    idp: IdentityProvider, clock: FakeClock, driver: SyncDriver, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(idp.issuer).model_copy(
        update={"client": ClientSettings(client_id="test-client", client_secret=SecretStr("wrong"))}
    )
    verifier = BearerVerifier(settings, clock=clock)
    with pytest.raises(IdentityProviderUnavailable):
        driver.run(verifier.verify(idp.mint_opaque_token()))
    assert "introspection_auth_failed" in caplog.text


@pytest.mark.parametrize("endpoint", ["jwks", "discovery"])
def test_provider_endpoint_down_is_503(
    idp: IdentityProvider, verifier: BearerVerifier, driver: SyncDriver, endpoint: str
) -> None:
    idp.faults.add(endpoint, status=503, retry_after=3)
    with pytest.raises(IdentityProviderUnavailable) as caught:
        driver.run(verifier.verify(idp.mint_access_token()))
    assert caught.value.retry_after is not None


def test_in_process_async_driver(make_identity_provider: Any, clock: FakeClock) -> None:
    idp: IdentityProvider = make_identity_provider(clock=clock)  # issuer https://idp.test
    settings = Settings(
        dev_mode=True,
        bearer={"issuer": idp.issuer, "audience": "api://orders"},
    )
    verifier = BearerVerifier(settings, clock=clock)
    tokens = [idp.mint_access_token(sub=f"user-{n}") for n in range(4)]

    async def main() -> list[str | None]:
        async with httpx.AsyncClient(transport=idp.transport()) as client:
            driver = AsyncDriver(client)
            subjects: list[str | None] = []

            async def one(token: str) -> None:
                subjects.append((await driver.run(verifier.verify(token)))[0].subject)

            async with anyio.create_task_group() as group:
                for token in tokens:
                    group.start_soon(one, token)
            return sorted(s or "" for s in subjects)

    assert anyio.run(main) == [f"user-{n}" for n in range(4)]
    assert idp.counters.count(endpoint="jwks") == 1
