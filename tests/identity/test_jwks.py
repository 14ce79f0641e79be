"""The JWKS cache: key parsing (JW-12), rotation (JW-13), kid-less tokens (JW-14), 503s."""

from __future__ import annotations

import threading

import anyio
import httpx
import pytest
from bearer_idp import (
    Dispatcher,
    FakeClock,
    MiniIdP,
    b64,
)
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from starlette.responses import JSONResponse, Response

from authrelay._io import AsyncDriver, SyncDriver
from authrelay.errors import IdentityProviderUnavailable, InvalidToken
from authrelay.identity.jwks import JwksCache, parse_jwks
from authrelay.settings import HttpSettings

HTTP = HttpSettings(allow_insecure_loopback=True)


@pytest.fixture
def jwks(idp: MiniIdP, clock: FakeClock) -> JwksCache:
    return JwksCache(f"{idp.issuer}/jwks", http=HTTP, clock=clock, refresh_cooldown=30)


def rsa_jwk(bits: int, kid: str) -> dict[str, str]:
    numbers = rsa.generate_private_key(65537, bits).public_key().public_numbers()

    def enc(value: int) -> str:
        return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return {"kty": "RSA", "kid": kid, "n": enc(numbers.n), "e": enc(numbers.e)}


def kids(found: tuple[object, ...]) -> list[str | None]:
    return [key.kid for key in found]  # type: ignore[attr-defined]


# -- JW-12 unusable keys are skipped one by one -----------------------------------------


def test_jw12_unusable_keys_skipped_valid_keys_kept(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver
) -> None:
    weak = rsa_jwk(1024, "weak")
    enc = RSAKey.generate_key(2048, parameters={"kid": "enc", "use": "enc"})
    private = ECKey.generate_key("P-256", parameters={"kid": "private"})
    oct_key = OctKey.generate_key(256, parameters={"kid": "oct"})
    x25519 = OKPKey.generate_key("X25519", parameters={"kid": "x25519"})
    idp.published.extend(
        [
            weak,
            enc.as_dict(private=False),
            private.as_dict(private=True),
            oct_key.as_dict(private=True),
            x25519.as_dict(private=False),
            {"kty": "AKP", "alg": "ML-DSA-44", "kid": "pq", "pub": "AAAA"},
            {"kty": "RSA", "kid": "garbage", "n": "!!", "e": "AQAB"},
            {"kty": "EC", "kid": "bad-curve", "crv": "P-999", "x": "AA", "y": "AA"},
            {
                "kty": "RSA",
                **rsa_jwk(2048, "ops"),
                "key_ops": ["encrypt"],
            },
            "not a key",
            {"kid": "no-kty"},
        ]
    )
    driver.run(jwks.warm())
    assert sorted(k.kid or "" for k in jwks.keys) == ["ec-1", "rsa-1"]
    for kid in ("weak", "enc", "private", "oct", "x25519", "pq", "garbage", "bad-curve", "ops"):
        with pytest.raises(InvalidToken):
            driver.run(jwks.key_for(kid, "RS256"))
    assert driver.run(jwks.key_for("rsa-1", "RS256")).kid == "rsa-1"


def test_jw12_key_with_verify_key_ops_accepted() -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k"}).as_dict(private=False)
    parsed = parse_jwks({"keys": [{**key, "key_ops": ["verify"], "use": "sig"}]})
    assert [k.kid for k in parsed] == ["k"]
    assert parsed[0].is_private is False


def test_jw12_document_that_is_not_a_jwk_set_is_a_503(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver
) -> None:
    idp.faults["jwks"] = lambda: JSONResponse({"keys": "nope"})
    with pytest.raises(IdentityProviderUnavailable) as caught:
        driver.run(jwks.key_for("rsa-1", "RS256"))
    assert caught.value.status == 503 and caught.value.retry_after


# -- JW-13 rotation and refetch limits ----------------------------------------------------


def test_jw13_new_kid_triggers_one_refetch(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver, clock: FakeClock
) -> None:
    driver.run(jwks.warm())
    assert idp.counters["jwks"] == 1
    clock.advance(31)
    new_kid = idp.rotate()
    assert driver.run(jwks.key_for(new_kid, "RS256")).kid == new_kid
    assert idp.counters["jwks"] == 2
    assert driver.run(jwks.key_for(new_kid, "RS256")).kid == new_kid
    assert driver.run(jwks.key_for("rsa-1", "RS256")).kid == "rsa-1"
    assert idp.counters["jwks"] == 2


def test_jw13_forged_kids_refetch_at_most_once_per_cooldown(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver, clock: FakeClock
) -> None:
    driver.run(jwks.warm())
    clock.advance(31)
    for n in range(50):
        with pytest.raises(InvalidToken) as caught:
            driver.run(jwks.key_for(f"forged-{n}", "RS256"))
        assert caught.value.context["reason"] == "unknown_kid"
        clock.advance(0.5)
    assert idp.counters["jwks"] == 2  # the first fetch + one refetch in 25 s
    clock.advance(10)
    with pytest.raises(InvalidToken):
        driver.run(jwks.key_for("forged-again", "RS256"))
    assert idp.counters["jwks"] == 3


def test_jw13_rotation_within_cooldown_waits_for_cooldown(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver, clock: FakeClock
) -> None:
    driver.run(jwks.warm())
    new_kid = idp.rotate()
    with pytest.raises(InvalidToken):
        driver.run(jwks.key_for(new_kid, "RS256"))
    clock.advance(30)
    assert driver.run(jwks.key_for(new_kid, "RS256")).kid == new_kid
    assert idp.counters["jwks"] == 2


def test_jw13_concurrent_refetches_are_single_flight_threads(idp: MiniIdP, jwks: JwksCache) -> None:
    driver = SyncDriver(httpx.Client(timeout=5))
    idp.gate = threading.Event()
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(driver.run(jwks.key_for("rsa-1", "RS256")).kid)
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    while idp.counters["jwks"] == 0:  # the leader's request has reached the provider
        threading.Event().wait(0.005)
    idp.gate.set()
    for thread in threads:
        thread.join(10)
    driver.client.close()
    assert results == ["rsa-1"] * 8
    assert idp.counters["jwks"] == 1


def test_jw13_concurrent_refetches_are_single_flight_async(
    idp: MiniIdP, jwks: JwksCache, server: tuple[str, Dispatcher]
) -> None:
    async def main() -> list[str | None]:
        async with httpx.AsyncClient(timeout=5) as client:
            driver = AsyncDriver(client)
            found: list[str | None] = []

            async def one() -> None:
                found.append((await driver.run(jwks.key_for("ec-1", "ES256"))).kid)

            async with anyio.create_task_group() as group:
                for _ in range(10):
                    group.start_soon(one)
            return found

    assert anyio.run(main) == ["ec-1"] * 10
    assert idp.counters["jwks"] == 1


# -- JW-14 tokens without kid -------------------------------------------------------------


def test_jw14_kid_absent_single_matching_key_used(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver
) -> None:
    assert driver.run(jwks.key_for(None, "ES256")).kid == "ec-1"
    assert kids(driver.run(jwks.candidates(None, "RS256"))) == ["rsa-1"]


def test_jw14_kid_absent_several_keys_are_candidates_bounded(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver
) -> None:
    for n in range(7):
        idp.add_key(f"extra-{n}", ECKey.generate_key("P-256", parameters={"kid": f"extra-{n}"}))
    found = driver.run(jwks.candidates(None, "ES256"))
    assert len(found) == 5
    assert kids(found)[0] == "ec-1"
    with pytest.raises(InvalidToken) as caught:
        driver.run(jwks.key_for(None, "ES256"))
    assert caught.value.context["reason"] == "ambiguous_key"


def test_jw14_kid_absent_no_fitting_key_rejected(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver
) -> None:
    with pytest.raises(InvalidToken):
        driver.run(jwks.key_for(None, "EdDSA"))


# -- outages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        lambda: Response(status_code=503),
        lambda: Response(b"<html>oops</html>", media_type="text/html"),
        lambda: Response(b"x" * (600 * 1024), media_type="application/json"),
        lambda: Response(status_code=404),
    ],
    ids=["503", "html", "too-large", "404"],
)
def test_jwks_unreachable_is_503_not_invalid(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver, fault: object
) -> None:
    idp.faults["jwks"] = fault  # type: ignore[assignment]
    with pytest.raises(IdentityProviderUnavailable) as caught:
        driver.run(jwks.key_for("rsa-1", "RS256"))
    assert caught.value.status == 503
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1


def test_jwks_failure_remembered_briefly(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver, clock: FakeClock
) -> None:
    idp.faults["jwks"] = lambda: Response(status_code=500)
    for _ in range(5):
        with pytest.raises(IdentityProviderUnavailable):
            driver.run(jwks.key_for("rsa-1", "RS256"))
    assert idp.counters["jwks"] == 1
    del idp.faults["jwks"]
    clock.advance(6)
    assert driver.run(jwks.key_for("rsa-1", "RS256")).kid == "rsa-1"


def test_jwks_connection_refused_is_503(clock: FakeClock, driver: SyncDriver) -> None:
    from authrelay.testing.servers import free_port

    cache = JwksCache(f"http://127.0.0.1:{free_port()}/jwks", http=HTTP, clock=clock)
    with pytest.raises(IdentityProviderUnavailable):
        driver.run(cache.key_for("rsa-1", "RS256"))


def test_failed_scheduled_refresh_keeps_previous_keys(
    idp: MiniIdP, jwks: JwksCache, driver: SyncDriver, clock: FakeClock
) -> None:
    driver.run(jwks.warm())
    clock.advance(3601)
    idp.faults["jwks"] = lambda: Response(status_code=502)
    assert driver.run(jwks.key_for("rsa-1", "RS256")).kid == "rsa-1"
    assert idp.counters["jwks"] == 2
    del idp.faults["jwks"]
    new_kid = idp.rotate()
    clock.advance(29)
    assert driver.run(jwks.key_for("rsa-1", "RS256")).kid == "rsa-1"
    assert idp.counters["jwks"] == 2  # no retry inside the cooldown
    clock.advance(2)
    assert driver.run(jwks.key_for("rsa-1", "RS256")).kid == "rsa-1"
    assert idp.counters["jwks"] == 3  # the scheduled refresh is retried after the cooldown
    assert driver.run(jwks.key_for(new_kid, "RS256")).kid == new_kid
    assert idp.counters["jwks"] == 3


def test_jwks_past_max_staleness_is_503_until_refetched(
    idp: MiniIdP, driver: SyncDriver, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    http = HttpSettings(allow_insecure_loopback=True, jwks_max_stale=7200)
    jwks = JwksCache(f"{idp.issuer}/jwks", http=http, clock=clock, refresh_cooldown=30)
    driver.run(jwks.warm())
    idp.faults["jwks"] = lambda: Response(status_code=502)
    clock.advance(3601)
    assert driver.run(jwks.key_for("rsa-1", "RS256")).kid == "rsa-1"  # within the limit
    clock.advance(3580)  # 7181 s after the last good fetch: still kept
    assert driver.run(jwks.key_for("rsa-1", "RS256")).kid == "rsa-1"
    clock.advance(10)
    assert jwks.ready("rsa-1", "RS256") is not None  # inside the cooldown, no fetch
    clock.advance(10)  # 7201 s: the old keys may have been revoked since
    assert jwks.ready("rsa-1", "RS256") is None
    for _ in range(3):
        with pytest.raises(IdentityProviderUnavailable) as caught:
            driver.run(jwks.key_for("rsa-1", "RS256"))
        assert caught.value.status == 503
        clock.advance(40)
    assert "jwks_too_stale" in caplog.text
    del idp.faults["jwks"]
    clock.advance(6)
    assert driver.run(jwks.key_for("rsa-1", "RS256")).kid == "rsa-1"


def test_tr01_plain_http_jwks_refused_without_loopback_opt_in(clock: FakeClock) -> None:
    from authrelay.identity.discovery import UnsafeEndpoint

    with pytest.raises(UnsafeEndpoint):
        JwksCache("http://127.0.0.1:9/jwks", http=HttpSettings(), clock=clock)
    with pytest.raises(UnsafeEndpoint):
        JwksCache("http://idp.example/jwks", http=HTTP, clock=clock)
