"""Sealed records: encryption at rest, rotation, corrupt entries, links, transactions, locks."""

from __future__ import annotations

import logging

import httpx
import pytest

from authrelay._crypto import KeyRing
from authrelay._io import SyncDriver
from authrelay.stores.locks import acquire_lock, release_lock
from authrelay.stores.memory import MemoryBackend
from authrelay.stores.tokens import StoredTokens, TokenStore, Transaction

OLD, NEW = b"o" * 32, b"n" * 32


def make(secrets: list[bytes], backend: MemoryBackend) -> tuple[TokenStore, SyncDriver]:
    return TokenStore(KeyRing(secrets, "authrelay-store-v1")), SyncDriver(httpx.Client(), backend)


def tokens(**kw: object) -> StoredTokens:
    base: dict[str, object] = {
        "connector": "github",
        "target": "github",
        "access_token": "AT-canary",
        "refresh_token": "RT-canary",
    }
    base.update(kw)
    return StoredTokens(**base)  # type: ignore[arg-type]


def test_st01_tokens_are_sealed_and_bound_to_user_and_connector() -> None:
    backend = MemoryBackend()
    store, run = make([OLD], backend)
    assert run.run(store.save_tokens("alice", tokens(), expected_version=0)) == 1
    raw = backend.get(store.tokens_key("alice", "github"))
    assert raw is not None
    assert b"AT-canary" not in raw[0] and b"RT-canary" not in raw[0]
    assert "alice" not in store.tokens_key("alice", "github")  # ST-06
    # cut-and-paste: bob's key holding alice's ciphertext does not open
    backend.put(store.tokens_key("bob", "github"), raw[0])
    record, version = run.run(store.load_tokens("bob", "github", None))
    assert record is None and version == 1
    record, _ = run.run(store.load_tokens("alice", "github", None))
    assert record is not None and record.refresh_token == "RT-canary"
    assert "RT-canary" not in repr(record)


def test_st03_rotation_opens_old_and_reseals_with_first_key() -> None:
    backend = MemoryBackend()
    old_store, run = make([OLD], backend)
    run.run(old_store.save_tokens("alice", tokens(), expected_version=0))
    ring = KeyRing([NEW, OLD], "authrelay-store-v1")
    new_store = TokenStore(ring)
    record, version = run.run(new_store.load_tokens("alice", "github", None))
    assert record is not None and record.access_token == "AT-canary"
    assert version == 2  # re-sealed lazily
    raw = backend.get(new_store.tokens_key("alice", "github"))
    assert raw is not None and ring.is_primary(raw[0])


def test_st05_corrupt_record_is_reported_treated_as_missing_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryBackend()
    store, run = make([OLD], backend)
    key = store.tokens_key("alice", "github")
    backend.put(key, b"\x01garbage-that-is-not-a-sealed-value-at-all")
    with caplog.at_level(logging.WARNING, "authrelay.store"):
        record, version = run.run(store.load_tokens("alice", "github", None))
    assert record is None and version == 1
    assert "store_decrypt_failed" in caplog.text
    assert backend.get(key) is not None  # not deleted
    # a foreign key (misconfigured node) also reads as a miss and deletes nothing
    other, _ = make([NEW], backend)
    run.run(store.save_tokens("bob", tokens(), expected_version=0))
    assert run.run(other.load_tokens("bob", "github", None))[0] is None
    assert backend.get(store.tokens_key("bob", "github")) is not None


def test_links_first_writer_wins_and_profiles_follow_sync_profile() -> None:
    store, run = make([OLD], MemoryBackend())
    assert run.run(store.find_link("github", "42")) is None
    link = run.run(store.create_link("github", "42", "user-1", "github"))
    assert link.user == "user-1"
    again = run.run(store.create_link("github", "42", "user-2", "github"))
    assert again.user == "user-1"
    assert run.run(store.save_profile("user-1", {"name": "A"}, sync=False))
    assert not run.run(store.save_profile("user-1", {"name": "B"}, sync=False))
    assert run.run(store.load_profile("user-1")) == {"name": "A"}
    assert run.run(store.save_profile("user-1", {"name": "C"}, sync=True))
    assert run.run(store.load_profile("user-1")) == {"name": "C"}


def test_ac04_transaction_is_single_use_and_bound_to_connector() -> None:
    store, run = make([OLD], MemoryBackend())
    tx = Transaction(
        connector="idp",
        mode="login",
        issuer="https://idp",
        redirect_uri="https://app/auth/idp/callback",
        nonce="n",
        code_verifier="v" * 43,
        next="/",
        binding="b",
        created_at=0.0,
    )
    assert run.run(store.put_transaction("state-1", tx, ttl=600))
    assert not run.run(store.put_transaction("state-1", tx, ttl=600))
    assert run.run(store.take_transaction("state-1", "idp")) == tx
    assert run.run(store.take_transaction("state-1", "idp")) is None
    run.run(store.put_transaction("state-2", tx, ttl=600))
    assert run.run(store.take_transaction("state-2", "other")) is None  # MU-03


def test_rt02_refresh_lock_is_exclusive_per_user_and_connector_until_released() -> None:
    store, run = make([OLD], MemoryBackend())
    alice = store.lock_key("alice", "github")
    assert "alice" not in alice  # ST-06: a digest, not the user id
    held = run.run(acquire_lock(alice, 30))
    assert held is not None
    assert run.run(acquire_lock(alice, 30)) is None
    assert run.run(acquire_lock(store.lock_key("bob", "github"), 30)) is not None
    assert run.run(acquire_lock(store.lock_key("alice", "google"), 30)) is not None
    run.run(release_lock(held))
    assert run.run(acquire_lock(alice, 30)) is not None
