"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["redis", "cluster", "sentinel"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """A Redis deployment's store url: the shared server, a Cluster, or Sentinel."""
    if request.param == "redis":
        return SHARED_REDIS_URL
    url: str = request.getfixturevalue(f"redis_{request.param}").url
    return url
