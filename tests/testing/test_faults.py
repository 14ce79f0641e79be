"""Fault switches and counters, over loopback HTTP and in process; concurrency."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from authrelay.testing import IdentityProvider, serve_identity_provider
from authrelay.testing.pytest_plugin import default_provider_config

BASIC = ("test-client", "test-secret")
CC = {"grant_type": "client_credentials", "resource": "api://orders"}
# Opaque tokens: the load tests measure the provider, not RSA signing.
CC_OPAQUE = {"grant_type": "client_credentials"}


def test_status_fault_with_retry_after_then_recovers(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    idp = identity_provider_server
    idp.faults.add("token", status=503, retry_after=7)
    down = http_client.post("/token", data=CC, auth=BASIC)
    assert down.status_code == 503
    assert down.headers["retry-after"] == "7"
    assert down.json()["error"] == "temporarily_unavailable"
    assert http_client.post("/token", data=CC, auth=BASIC).status_code == 200
    assert idp.counters.count(endpoint="token", status=503) == 1
    assert idp.counters.count(endpoint="token", client_id="test-client") == 2


def test_error_fault_is_rfc6749_json(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    identity_provider_server.faults.add("token", error="invalid_grant", grant_type="refresh_token")
    # A different grant type is not affected.
    assert http_client.post("/token", data=CC, auth=BASIC).status_code == 200
    response = http_client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": "x"}, auth=BASIC
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.headers["cache-control"] == "no-store"


def test_malformed_fault(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    identity_provider_server.faults.add("jwks", malformed=True, count=None)
    for _ in range(2):
        response = http_client.get("/jwks")
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
    identity_provider_server.faults.clear()
    assert "keys" in http_client.get("/jwks").json()


def test_drop_fault_over_http_is_a_remote_protocol_error(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    identity_provider_server.faults.add("token", drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        http_client.post("/token", data=CC, auth=BASIC)
    assert http_client.post("/token", data=CC, auth=BASIC).status_code == 200
    assert identity_provider_server.counters.count(endpoint="token", status=0) == 1


def test_drop_fault_in_process(identity_provider: IdentityProvider) -> None:
    identity_provider.faults.add("introspect", drop=True)
    with (
        httpx.Client(
            transport=identity_provider.sync_transport(), base_url=identity_provider.issuer
        ) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.post("/introspect", data={"token": "x"}, auth=BASIC)


def test_delay_fault_serves_the_real_answer_after_sleeping(
    identity_provider: IdentityProvider,
) -> None:
    identity_provider.faults.add("token", delay=0.05)

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=identity_provider.transport(), base_url=identity_provider.issuer
        ) as client:
            return await client.post("/token", data=CC, auth=BASIC)

    assert asyncio.run(run()).status_code == 200


def test_delay_fault_times_out_a_client(
    http_client: httpx.Client, identity_provider_server: IdentityProvider
) -> None:
    identity_provider_server.faults.add("token", delay=1.0)
    with pytest.raises(httpx.ReadTimeout):
        http_client.post("/token", data=CC, auth=BASIC, timeout=0.2)


def test_unknown_endpoint_name_rejected(identity_provider: IdentityProvider) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        identity_provider.faults.add("tokens")


def test_counters_reset(idp_client: httpx.Client, identity_provider: IdentityProvider) -> None:
    idp_client.get("/jwks")
    assert identity_provider.counters.count(endpoint="jwks") == 1
    identity_provider.counters.reset()
    assert identity_provider.counters.count() == 0


def test_500_concurrent_async_token_requests(identity_provider: IdentityProvider) -> None:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            transport=identity_provider.transport(), base_url=identity_provider.issuer
        ) as client:
            return await asyncio.gather(
                *(client.post("/token", data=CC_OPAQUE, auth=BASIC) for _ in range(500))
            )

    responses = asyncio.run(run())
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["access_token"] for r in responses}) == 500
    assert identity_provider.counters.count(endpoint="token", status=200) == 500


@pytest.mark.slow
def test_1000_concurrent_token_requests_in_process(identity_provider: IdentityProvider) -> None:
    async def run() -> list[int]:
        async with httpx.AsyncClient(
            transport=identity_provider.transport(), base_url=identity_provider.issuer
        ) as client:
            responses = await asyncio.gather(
                *(client.post("/token", data=CC_OPAQUE, auth=BASIC) for _ in range(1000))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(run()) == [200] * 1000
    assert identity_provider.counters.count(endpoint="token") == 1000


def test_100_concurrent_token_requests_over_http() -> None:
    idp = IdentityProvider(**default_provider_config())
    with serve_identity_provider(idp) as url:

        async def run() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                responses = await asyncio.gather(
                    *(client.post("/token", data=CC_OPAQUE, auth=BASIC) for _ in range(100))
                )
            return [r.status_code for r in responses]

        statuses = asyncio.run(run())
    assert statuses == [200] * 100
    assert idp.counters.count(endpoint="token") == 100


def test_threads_share_one_refresh_family_safely(identity_provider: IdentityProvider) -> None:
    from _idp_helpers import code_flow

    with httpx.Client(
        transport=identity_provider.sync_transport(), base_url=identity_provider.issuer
    ) as client:
        rt = str(code_flow(client)["refresh_token"])

        def refresh(_: int) -> int:
            data = {"grant_type": "refresh_token", "refresh_token": rt}
            return client.post("/token", data=data, auth=BASIC).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(refresh, range(16)))
    # Exactly one rotation wins; every replay after it is refused.
    assert statuses.count(200) == 1
    assert statuses.count(400) == 15
