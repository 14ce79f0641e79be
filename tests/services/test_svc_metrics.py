"""Acquisition counters: hits, misses, token-endpoint calls, refreshes, failures, latency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from svc_apps import serve
from svc_support import Downstream, caller_token

from authrelay.errors import ReauthorizationRequired, UpstreamError
from authrelay.principal import Credentials, Principal
from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider

MakeRelay = Callable[..., tuple[Relay, FakeClock]]
ANONYMOUS = Principal()


def _counters(relay: Relay, target: str) -> dict[tuple[str, str], int]:
    return {
        (c["name"], c["flow"]): c["value"]
        for c in relay.stats()["counters"]
        if c["target"] == target
    }


def _acquisitions(relay: Relay, target: str) -> int:
    return sum(
        entry["count"]
        for entry in relay.stats()["latency"]
        if entry["name"] == "acquire" and entry["target"] == target
    )


def test_cl01_miss_then_hits_then_refresh_after_expiry(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, clock = make_relay()
    client = relay.services.client("billing", ANONYMOUS, Credentials(), asynchronous=False)

    first = client.authorization_header()
    assert _counters(relay, "billing") == {
        ("cache_misses", "client_credentials"): 1,
        ("token_endpoint_calls", "client_credentials"): 1,
        ("token_requests", "client_credentials"): 1,
    }
    assert _acquisitions(relay, "billing") == 1

    for _ in range(3):
        assert client.authorization_header() == first
    # A fresh client per request takes the same hot path.
    fresh = relay.services.client("billing", ANONYMOUS, Credentials(), asynchronous=False)
    assert fresh.authorization_header() == first
    assert _counters(relay, "billing")[("cache_hits", "client_credentials")] == 4
    assert clean_idp.counters.count(endpoint="token", grant_type="client_credentials") == 1

    clock.advance(301)  # past the cached token's use-until
    assert client.authorization_header() != first
    counters = _counters(relay, "billing")
    assert counters[("cache_misses", "client_credentials")] == 2
    assert counters[("token_endpoint_calls", "client_credentials")] == 2
    assert counters[("refreshes", "client_credentials")] == 1
    assert _acquisitions(relay, "billing") == 2


def test_refresh_after_downstream_401_is_counted(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    client = relay.services.client("billing", ANONYMOUS, Credentials(), asynchronous=False)
    assert client.get("/whoami").status_code == 200
    downstream.reject_next = 1
    assert client.get("/whoami").status_code == 200  # dropped, acquired again, retried once
    counters = _counters(relay, "billing")
    assert counters[("refreshes", "client_credentials")] == 1
    assert counters[("token_endpoint_calls", "client_credentials")] == 2


def test_failures_are_labelled_by_error_code(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay(services={"billing": {"token_retries": 0, "negative_cache_ttl": 0}})
    client = relay.services.client("billing", ANONYMOUS, Credentials(), asynchronous=False)
    clean_idp.faults.add("token", status=503, retry_after=1, count=1)
    with pytest.raises(UpstreamError):
        client.authorization_header()
    # An on-behalf-of assertion not addressed to this app: invalid_grant.
    foreign = clean_idp.mint_access_token(sub="alice", audience="api://billing")
    bearer = Principal(subject="alice", kind="bearer", issuer=clean_idp.issuer)
    obo = relay.services.client("obo", bearer, Credentials(token=foreign), asynchronous=False)
    with pytest.raises((UpstreamError, ReauthorizationRequired)):
        obo.authorization_header()
    assert _counters(relay, "billing")[("failures", "temporarily_unavailable")] == 1
    assert _counters(relay, "obo")[("failures", "invalid_grant")] == 1
    assert _acquisitions(relay, "obo") == 1


def test_stats_route_shows_the_service_counters(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay(routes={"stats": True})
    token = caller_token(clean_idp, "alice")
    with serve("asgi", relay) as url:
        for _ in range(3):
            answer = httpx.get(
                f"{url}/header/orders", headers={"authorization": f"Bearer {token}"}, timeout=30
            )
            assert answer.status_code == 200
        stats = httpx.get(f"{url}/auth/stats", timeout=30)
    assert stats.status_code == 200
    body: dict[str, Any] = stats.json()
    seen = {(c["name"], c["target"], c["flow"]): c["value"] for c in body["counters"]}
    assert seen[("cache_misses", "orders", "token_exchange")] == 1
    assert seen[("token_endpoint_calls", "orders", "token_exchange")] == 1
    assert seen[("cache_hits", "orders", "token_exchange")] == 2
    assert any(e["name"] == "acquire" and e["target"] == "orders" for e in body["latency"])
    assert token not in stats.text and "alice" not in stats.text


def test_reset_starts_the_lock_free_hit_counter_from_zero(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay()
    client = relay.services.client("billing", ANONYMOUS, Credentials(), asynchronous=False)
    client.authorization_header()
    client.authorization_header()
    relay.metrics.reset()
    assert relay.metrics.count("cache_hits", target="billing") == 0
    client.authorization_header()
    assert relay.metrics.count("cache_hits", target="billing") == 1
