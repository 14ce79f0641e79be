"""Fixtures for the scale-out tests: a key prefix of their own, and each Redis topology."""

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


@pytest.fixture(params=["redis", "cluster", "sentinel"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """A Redis deployment's store url: the shared server, a Cluster, or Sentinel."""
    if request.param == "redis":
        return REDIS_URL
    url: str = request.getfixturevalue(f"redis_{request.param}").url
    return url
