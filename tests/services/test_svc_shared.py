"""Service tokens shared through the store (one process here; many in tests/scaleout)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from svc_support import caller_token

from authrelay.errors import TokenStoreUnavailable
from authrelay.principal import Credentials, Principal
from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider

MakeRelay = Callable[..., tuple[Relay, FakeClock]]
KEY = "shared-service-tests-secret-key-000"
CC = "client_credentials"


def _sqlite(make_relay: MakeRelay, tmp_path: Path) -> tuple[Relay, FakeClock]:
    return make_relay(secret_keys=[KEY], store={"url": f"sqlite:///{tmp_path / 'authrelay.db'}"})


def test_memory_store_keeps_tokens_in_the_process(make_relay: MakeRelay) -> None:
    relay, _ = make_relay()
    assert relay.services.shared is None


def test_cl01_second_relay_on_the_same_file_reads_the_token_without_a_request(
    make_relay: MakeRelay, clean_idp: IdentityProvider, tmp_path: Path
) -> None:
    first, _ = _sqlite(make_relay, tmp_path)
    second, _ = _sqlite(make_relay, tmp_path)
    one = first.services.client("billing", Principal(), Credentials(), asynchronous=False)
    two = second.services.client("billing", Principal(), Credentials(), asynchronous=False)
    assert one.authorization_header() == two.authorization_header()
    assert clean_idp.counters.count(endpoint="token", grant_type=CC) == 1
    assert second.metrics.count("store_hits", target="billing") == 1


def test_tx03_st06_exchange_records_are_per_subject_token_and_hold_no_token(
    make_relay: MakeRelay, clean_idp: IdentityProvider, tmp_path: Path
) -> None:
    relay, _ = _sqlite(make_relay, tmp_path)
    alice, bob = caller_token(clean_idp, "alice"), caller_token(clean_idp, "bob")
    headers = []
    for sub, token in (("alice", alice), ("bob", bob)):
        principal = Principal(subject=sub, kind="bearer", issuer=clean_idp.issuer)
        client = relay.services.client(
            "orders", principal, Credentials(token=token), asynchronous=False
        )
        headers.append(client.authorization_header())
    assert headers[0] != headers[1]
    keys = relay.backend.keys(relay.settings.store.key_prefix + "svc:")
    assert len(keys) == 2
    for key in keys:
        assert alice not in key and bob not in key and "alice" not in key
        stored = relay.backend.get(key)
        assert stored is not None
        assert all(h.split(" ", 1)[1].encode() not in stored[0] for h in headers)


def test_st04_store_down_serves_a_live_cached_token_then_503(
    make_relay: MakeRelay, clean_idp: IdentityProvider, tmp_path: Path
) -> None:
    relay, clock = _sqlite(make_relay, tmp_path)
    client = relay.services.client("billing", Principal(), Credentials(), asynchronous=False)
    header = client.authorization_header()
    relay.backend.close()  # every store operation now fails
    clock.advance(250)  # past use-until (expiry - 60 s), before expiry (300 s)
    assert client.authorization_header() == header  # still valid: served, not a 503
    clock.advance(60)  # past expiry: nothing usable in the process
    with pytest.raises(TokenStoreUnavailable) as caught:
        client.authorization_header()
    assert caught.value.status == 503 and caught.value.retry_after
    assert clean_idp.counters.count(endpoint="token", grant_type=CC) == 1
    assert relay.metrics.count("failures", target="billing", flow="temporarily_unavailable") == 2


def test_refused_token_is_deleted_from_the_store_and_forget_drops_copies(
    make_relay: MakeRelay, clean_idp: IdentityProvider, tmp_path: Path
) -> None:
    relay, _ = _sqlite(make_relay, tmp_path)
    other, _ = _sqlite(make_relay, tmp_path)
    client = relay.services.client("billing", Principal(), Credentials(), asynchronous=False)
    peer = other.services.client("billing", Principal(), Credentials(), asynchronous=False)
    old = client.authorization_header()
    assert peer.authorization_header() == old
    (record,) = relay.backend.keys(relay.settings.store.key_prefix + "svc:")

    fresh = client._header(old)  # what a downstream 401 triggers
    assert fresh != old
    assert clean_idp.counters.count(endpoint="token", grant_type=CC) == 2
    assert peer.authorization_header() == old  # SQLite: no pub/sub, bounded by its TTL
    other.services.forget("unrelated:key")
    assert peer.authorization_header() == old
    other.services.forget(record)  # what the Redis listener does on a change
    assert peer.authorization_header() == fresh  # read from the store, no request
    other.services.forget(None)
    assert len(other.services.runtimes["billing"].cache) == 0
    assert clean_idp.counters.count(endpoint="token", grant_type=CC) == 2


def test_token_indexes_at_their_cap_drop_keys_that_left_the_cache(make_relay: MakeRelay) -> None:
    relay, _ = make_relay()
    registry = relay.services
    runtime = next(iter(registry.runtimes.values()))
    registry._origins_cap = 2
    registry.remember("record-a", runtime, ("gone", "a"))
    registry.remember("record-b", runtime, ("gone", "b"))
    registry.remember("record-c", runtime, ("gone", "c"))  # at the cap: a and b are pruned
    assert list(registry._origins) == ["record-c"]
    registry.note_session_entry(runtime, ("svc", ("session", "s1")))
    registry.note_session_entry(runtime, ("svc", ("session", "s2")))
    registry.note_session_entry(runtime, ("svc", ("session", "s3")))
    assert list(registry._by_session) == ["s3"]
