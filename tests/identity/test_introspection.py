"""RFC 7662 introspection of opaque tokens (IN-01 … IN-05) through the bearer verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any

import anyio
import pytest
from bearer_idp import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    Dispatcher,
    FakeClock,
    MiniIdP,
)
from starlette.responses import JSONResponse, Response

from authrelay._io import SyncDriver
from authrelay.errors import ConfigurationError, IdentityProviderUnavailable, InvalidToken
from authrelay.identity.bearer import BearerVerifier
from authrelay.identity.introspection import Introspector, basic_authorization
from authrelay.settings import ClientSettings, HttpSettings, Settings

TOKEN = "opaque-Token_value~canary.1234"


def settings_for(
    idp: MiniIdP, *, auth: str = "client_secret_basic", timeout: float = 5.0, **bearer: Any
) -> Settings:
    return Settings(
        dev_mode=True,
        bearer={
            "issuer": idp.issuer,
            "audience": AUDIENCE,
            "introspection_endpoint": f"{idp.issuer}/introspect",
            **bearer,
        },
        client={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "token_endpoint_auth_method": auth,
        },
        http={"allow_insecure_loopback": True, "metadata_timeout": timeout},
    )


@pytest.fixture
def verifier(idp: MiniIdP, clock: FakeClock) -> BearerVerifier:
    return BearerVerifier(settings_for(idp), clock=clock)


def active(idp: MiniIdP, **overrides: Any) -> dict[str, Any]:
    now = int(idp.clock.now)
    answer: dict[str, Any] = {
        "active": True,
        "sub": "user-7",
        "client_id": "web-app",
        "iss": idp.issuer,
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "scope": "orders.read orders.write",
        "token_type": "Bearer",
    }
    answer.update(overrides)
    return {k: v for k, v in answer.items() if v is not ...}


def invalid(driver: SyncDriver, verifier: BearerVerifier, token: str = TOKEN) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        driver.run(verifier.verify(token))
    assert token not in caught.value.description
    return caught.value


def unavailable(driver: SyncDriver, verifier: BearerVerifier) -> IdentityProviderUnavailable:
    with pytest.raises(IdentityProviderUnavailable) as caught:
        driver.run(verifier.verify(TOKEN))
    assert caught.value.status == 503 and caught.value.retry_after
    return caught.value


# -- IN-01 request ------------------------------------------------------------------------


def test_in01_active_token_gives_principal(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    idp.introspection[TOKEN] = active(idp)
    principal, credentials = driver.run(verifier.verify(TOKEN))
    assert (principal.subject, principal.kind, principal.issuer) == ("user-7", "bearer", idp.issuer)
    assert credentials.scopes == {"orders.read", "orders.write"}
    assert credentials.token == TOKEN
    assert credentials.expires_at == idp.clock.now + 600
    _, form = idp.introspection_requests[-1]
    assert form["token"] == TOKEN
    assert form["token_type_hint"] == "access_token"
    assert "client_secret" not in form


def test_in01_basic_auth_form_urlencodes_before_base64(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    idp.introspection[TOKEN] = active(idp)
    driver.run(verifier.verify(TOKEN))
    headers, _ = idp.introspection_requests[-1]
    raw = base64.b64decode(headers["authorization"].removeprefix("Basic ")).decode()
    assert raw == "orders-api:s3cr%3Aet%25%2B+x"
    assert basic_authorization("a b", "c:d") == "Basic " + base64.b64encode(b"a+b:c%3Ad").decode()


def test_in01_client_secret_post(idp: MiniIdP, clock: FakeClock, driver: SyncDriver) -> None:
    verifier = BearerVerifier(settings_for(idp, auth="client_secret_post"), clock=clock)
    idp.introspection[TOKEN] = active(idp)
    assert driver.run(verifier.verify(TOKEN))[0].subject == "user-7"
    headers, form = idp.introspection_requests[-1]
    assert "authorization" not in headers
    assert (form["client_id"], form["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)


def test_in01_introspection_needs_client_credentials(idp: MiniIdP) -> None:
    settings = Settings(
        dev_mode=True,
        bearer={
            "issuer": idp.issuer,
            "audience": AUDIENCE,
            "introspection_endpoint": f"{idp.issuer}/introspect",
        },
        http={"allow_insecure_loopback": True},
    )
    with pytest.raises(ConfigurationError):
        BearerVerifier(settings)


def test_tr01_introspection_endpoint_must_be_https() -> None:
    client = ClientSettings(client_id="c", client_secret="s")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Introspector("http://idp.example/introspect", client=client, http=HttpSettings())


# -- IN-02 active means JSON true ---------------------------------------------------------


@pytest.mark.parametrize("value", ["true", 1, None, ..., "yes", [True], {"v": True}])
def test_in02_active_must_be_json_true(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, value: object
) -> None:
    idp.introspection[TOKEN] = active(idp, active=value)
    assert invalid(driver, verifier).context["reason"] == "inactive"


def test_in02_unknown_token_inactive(verifier: BearerVerifier, driver: SyncDriver) -> None:
    assert invalid(driver, verifier, "never-issued").context["reason"] == "inactive"


# -- IN-03 claims even when active --------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": 1_800_000_000 - 31}, "expired"),
        ({"exp": "tomorrow"}, "time_claim"),
        ({"exp": True}, "time_claim"),
        ({"nbf": 1_800_000_000 + 120}, "not_yet_valid"),
        ({"aud": "api://billing"}, "audience"),
        ({"aud": [""]}, "audience"),
        ({"aud": ...}, "audience"),
        ({"iss": "https://other.example"}, "issuer"),
        ({"token_type": "refresh_token"}, "token_type"),
        ({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, "token_type"),
        ({"sub": ..., "client_id": ...}, "subject"),
    ],
)
def test_in03_active_but_unacceptable_rejected(
    idp: MiniIdP,
    verifier: BearerVerifier,
    driver: SyncDriver,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    idp.introspection[TOKEN] = active(idp, **overrides)
    assert invalid(driver, verifier).context["reason"] == reason


def test_in03_absent_optional_claims_accepted(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    idp.introspection[TOKEN] = active(idp, exp=..., iss=..., token_type=..., scope=...)
    principal, credentials = driver.run(verifier.verify(TOKEN))
    assert principal.subject == "user-7" and principal.issuer == idp.issuer
    assert credentials.expires_at is None and credentials.scopes == frozenset()


# -- IN-04 endpoint trouble is 503, never cached ------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        lambda: Response(status_code=500),
        lambda: Response(status_code=503),
        lambda: Response(b"<html>", media_type="text/html"),
        lambda: JSONResponse([{"active": True}]),
        lambda: Response(b"{" + b" " * (70 * 1024) + b"}", media_type="application/json"),
        lambda: Response(status_code=302, headers={"location": "/introspect"}),
    ],
    ids=["500", "503", "html", "array", "too-large", "redirect"],
)
def test_in04_endpoint_failure_is_503_not_cached(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, fault: object
) -> None:
    idp.introspection[TOKEN] = active(idp)
    idp.faults["introspect"] = fault  # type: ignore[assignment]
    unavailable(driver, verifier)
    assert verifier.cached(TOKEN) is None
    del idp.faults["introspect"]
    assert driver.run(verifier.verify(TOKEN))[0].subject == "user-7"


@pytest.mark.parametrize("status", [401, 403])
def test_in04_our_credentials_refused_is_503_with_error_log(
    idp: MiniIdP,
    verifier: BearerVerifier,
    driver: SyncDriver,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    idp.faults["introspect"] = lambda: JSONResponse({"error": "invalid_client"}, status)
    with caplog.at_level(logging.DEBUG, logger="authrelay"):
        unavailable(driver, verifier)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("introspection_auth_failed" in r.getMessage() for r in errors)


def test_in04_auth_failure_errors_are_rate_limited_per_endpoint(
    idp: MiniIdP,
    verifier: BearerVerifier,
    driver: SyncDriver,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp.faults["introspect"] = lambda: JSONResponse({"error": "invalid_client"}, 401)

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]

    with caplog.at_level(logging.DEBUG, logger="authrelay"):
        for token in ("opaque-a", "opaque-b", "opaque-c", "opaque-d"):
            with pytest.raises(IdentityProviderUnavailable):
                driver.run(verifier.verify(token))
            clock.advance(10)
        assert len(errors()) == 1 and "suppressed=0" in errors()[0]
        clock.advance(25)  # 65 s after the first ERROR
        with pytest.raises(IdentityProviderUnavailable):
            driver.run(verifier.verify("opaque-e"))
    assert len(errors()) == 2
    assert "suppressed=3" in errors()[1]  # b, c and d were counted, not logged

    assert all(
        TOKEN not in r.getMessage() and CLIENT_SECRET not in r.getMessage() for r in caplog.records
    )


def test_in04_wrong_secret_is_503(idp: MiniIdP, clock: FakeClock, driver: SyncDriver) -> None:
    settings = settings_for(idp)
    wrong = settings.model_copy(
        update={"client": ClientSettings(client_id=CLIENT_ID, client_secret="nope")}  # type: ignore[arg-type]
    )
    verifier = BearerVerifier(wrong, clock=clock)
    unavailable(driver, verifier)


def test_tr03_introspection_answer_capped_at_64_kib(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver
) -> None:
    base = len(json.dumps(active(idp, pad="")))
    idp.introspection["fits"] = active(idp, pad="x" * (64 * 1024 - base - 64))
    assert driver.run(verifier.verify("fits"))[0].subject == "user-7"
    idp.introspection[TOKEN] = active(idp, pad="x" * (64 * 1024 - base + 64))
    unavailable(driver, verifier)  # a few bytes over the cap: 503, not a verdict


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_in04_timeout_is_503(idp: MiniIdP, clock: FakeClock, shell: str) -> None:
    import threading

    import httpx

    from authrelay._io import AsyncDriver

    verifier = BearerVerifier(settings_for(idp, timeout=0.5), clock=clock)

    async def main() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await AsyncDriver(client).run(verifier.verify(TOKEN))

    def run() -> None:
        if shell == "asgi":
            anyio.run(main)
        else:
            with httpx.Client(timeout=30) as client:
                SyncDriver(client).run(verifier.verify(TOKEN))

    idp.introspection[TOKEN] = active(idp)
    idp.gate = threading.Event()  # held: the endpoint stalls past the 0.5 s total timeout
    try:
        with pytest.raises(IdentityProviderUnavailable) as caught:
            run()
    finally:
        idp.gate.set()
    assert caught.value.status == 503 and caught.value.retry_after
    assert verifier.cached(TOKEN) is None
    # not cached: once the endpoint answers, the same token is accepted
    assert driver_for(shell, verifier) == "user-7"


def driver_for(shell: str, verifier: BearerVerifier) -> str:
    import httpx

    from authrelay._io import AsyncDriver

    async def main() -> str:
        async with httpx.AsyncClient(timeout=30) as client:
            return (await AsyncDriver(client).run(verifier.verify(TOKEN)))[0].subject

    if shell == "asgi":
        return str(anyio.run(main))
    with httpx.Client(timeout=30) as client:
        return str(SyncDriver(client).run(verifier.verify(TOKEN))[0].subject)


def test_in04_connection_refused_is_503(clock: FakeClock, driver: SyncDriver) -> None:
    from authrelay.testing.servers import free_port

    client = ClientSettings(client_id="c", client_secret="s")  # type: ignore[arg-type]
    introspector = Introspector(
        f"http://127.0.0.1:{free_port()}/introspect",
        client=client,
        http=HttpSettings(allow_insecure_loopback=True),
        clock=clock,
    )
    with pytest.raises(IdentityProviderUnavailable):
        driver.run(introspector.introspect(TOKEN))


# -- IN-05 caching ------------------------------------------------------------------------


def test_in05_positive_result_cached_for_configured_max(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, clock: FakeClock
) -> None:
    idp.introspection[TOKEN] = active(idp)
    driver.run(verifier.verify(TOKEN))
    clock.advance(59)
    assert verifier.cached(TOKEN) is not None
    driver.run(verifier.verify(TOKEN))
    assert idp.counters["introspect"] == 1
    clock.advance(1)
    assert verifier.cached(TOKEN) is None
    driver.run(verifier.verify(TOKEN))
    assert idp.counters["introspect"] == 2


def test_in05_positive_result_never_outlives_exp(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, clock: FakeClock
) -> None:
    idp.introspection[TOKEN] = active(idp, exp=int(clock.now) + 20)
    driver.run(verifier.verify(TOKEN))
    clock.advance(19.5)
    assert verifier.cached(TOKEN) is not None
    clock.advance(0.5)
    assert verifier.cached(TOKEN) is None


def test_in05_negative_result_cached_at_most_ten_seconds(
    idp: MiniIdP, verifier: BearerVerifier, driver: SyncDriver, clock: FakeClock
) -> None:
    invalid(driver, verifier)
    with pytest.raises(InvalidToken):
        verifier.cached(TOKEN)
    invalid(driver, verifier)
    assert idp.counters["introspect"] == 1
    idp.introspection[TOKEN] = active(idp)
    clock.advance(10)
    assert verifier.cached(TOKEN) is None
    assert driver.run(verifier.verify(TOKEN))[0].subject == "user-7"
    assert idp.counters["introspect"] == 2


def test_in05_cache_ttl_zero_disables_positive_cache(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    verifier = BearerVerifier(settings_for(idp, introspection_cache_ttl=0), clock=clock)
    idp.introspection[TOKEN] = active(idp)
    driver.run(verifier.verify(TOKEN))
    driver.run(verifier.verify(TOKEN))
    assert idp.counters["introspect"] == 2


def test_in05_cache_keyed_by_sha256_and_bounded(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    verifier = BearerVerifier(settings_for(idp, cache_size=3), clock=clock)
    tokens = [f"opaque-{n}" for n in range(6)]
    for token in tokens:
        idp.introspection[token] = active(idp)
        driver.run(verifier.verify(token))
    entries = verifier._entries
    assert len(entries) == 3
    assert set(entries) == {hashlib.sha256(t.encode()).digest() for t in tokens[3:]}
    assert verifier.cached(tokens[0]) is None and verifier.cached(tokens[5]) is not None
    assert all(t not in repr(verifier) for t in tokens)


def test_in05_concurrent_first_sight_async(
    idp: MiniIdP, verifier: BearerVerifier, server: tuple[str, Dispatcher]
) -> None:
    import httpx

    from authrelay._io import AsyncDriver

    idp.introspection[TOKEN] = active(idp)

    async def main() -> list[str | None]:
        async with httpx.AsyncClient(timeout=5) as client:
            driver = AsyncDriver(client)
            subjects: list[str | None] = []

            async def one() -> None:
                subjects.append((await driver.run(verifier.verify(TOKEN)))[0].subject)

            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(one)
            return subjects

    assert anyio.run(main) == ["user-7"] * 5
