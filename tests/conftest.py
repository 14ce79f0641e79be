"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from authrelay.testing import IdentityProvider

SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["redis", "cluster", "sentinel"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """A Redis deployment's store url: the shared server, a Cluster, or Sentinel."""
    if request.param == "redis":
        return SHARED_REDIS_URL
    url: str = request.getfixturevalue(f"redis_{request.param}").url
    return url


@pytest.fixture
def idp(identity_provider_server: IdentityProvider) -> IdentityProvider:
    """The default test provider served on loopback (folders may define their own)."""
    return identity_provider_server


@pytest.fixture(params=["asgi", "wsgi"])
def shell(request: pytest.FixtureRequest) -> str:
    """Both shells."""
    return str(request.param)
