"""Helpers for the Redis tests: the shared server's URL, throwaway servers, one contract."""

from __future__ import annotations

from authrelay.stores.base import Backend
from authrelay.testing.redis_servers import RedisServer
from authrelay.testing.servers import free_port

__all__ = ["REDIS_URL", "RedisServer", "check_versioned_contract", "free_port"]

REDIS_URL = "redis://127.0.0.1:6379/0"


def check_versioned_contract(backend: Backend, prefix: str) -> None:
    """Compare-and-set, deletes and versions that never come back, on any topology."""
    key = prefix + "k"
    assert backend.get(key) is None
    v1 = backend.put(key, b"one", expected_version=0)
    assert v1 is not None
    assert backend.put(key, b"dup", expected_version=0) is None
    assert backend.get(key) == (b"one", v1)
    v2 = backend.put(key, b"two", expected_version=v1)
    assert v2 is not None and v2 > v1
    assert backend.put(key, b"stale", expected_version=v1) is None
    assert backend.get(key) == (b"two", v2)
    assert backend.delete(key, expected_version=v1) is False
    assert backend.delete(key, expected_version=v2) is True
    assert backend.delete(key) is False
    assert backend.get(key) is None
    # A writer still holding v1 or v2 can never match again, even though the key is new.
    v3 = backend.put(key, b"again", expected_version=0)
    assert v3 is not None and v3 > v2
    assert backend.put(key, b"late", expected_version=v2) is None
    assert backend.put(key, b"late", expected_version=v1) is None
    assert backend.put(key, b"blind") is not None  # no expectation: last writer wins
