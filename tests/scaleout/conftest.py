"""Fixtures for the scale-out tests: a key prefix of their own on the shared Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.client
from scale_support import REDIS_URL

from authrelay._crypto import random_token


@pytest.fixture
def prefix() -> Iterator[str]:
    """A namespace of this test's own on 127.0.0.1:6379; removed afterwards."""
    namespace = f"so-{random_token(6)}:"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for name in list(client.scan_iter(match=namespace + "*", count=500)):
            client.delete(name)
    finally:
        client.close()
