"""pytest plugin: fixtures that give each test a fresh, strict identity provider.

Registered through the ``pytest11`` entry point ``authrelay``. Each fixture builds a new
provider (new keys, empty state), so no test can pass because of another test's tokens.

Fixtures:

- ``make_identity_provider(**overrides)``: build a provider from the default configuration
  below with any :class:`IdentityProvider` argument replaced.
- ``identity_provider``: in process, issuer ``https://idp.test``.
- ``identity_provider_server``: the same configuration served on ``http://127.0.0.1:<port>``.
- ``redis_cluster`` / ``redis_sentinel``: a throwaway Redis Cluster (3 masters) or a
  Sentinel-watched master and replica, started once per session on loopback ports
  (``store.url = redis_cluster.url``); they need the ``redis-server`` binaries. A test
  that kills nodes should start its own :mod:`~authrelay.testing.redis_servers` group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .models import OAuthClient, Resource, TestUser
from .provider import IdentityProvider, serve_identity_provider
from .redis_servers import RedisClusterGroup, RedisSentinelGroup

__all__ = [
    "default_provider_config",
    "identity_provider",
    "identity_provider_server",
    "make_identity_provider",
    "redis_cluster",
    "redis_sentinel",
]

TEST_ISSUER = "https://idp.test"


def default_provider_config() -> dict[str, Any]:
    """The fixtures' configuration as :class:`IdentityProvider` keyword arguments."""
    return {
        "clients": [
            OAuthClient(
                "test-client",
                "test-secret",
                redirect_uris=(
                    "http://testserver/auth/idp/callback",
                    "http://127.0.0.1/auth/idp/callback",
                ),
                grant_types=(
                    "authorization_code",
                    "refresh_token",
                    "client_credentials",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer",
                ),
                post_logout_redirect_uris=("http://testserver/", "http://127.0.0.1/"),
                loopback_any_port=True,
            ),
            OAuthClient(
                "public-client",
                redirect_uris=(
                    "http://testserver/auth/idp/callback",
                    "http://127.0.0.1/auth/idp/callback",
                ),
                loopback_any_port=True,
            ),
        ],
        "users": [
            TestUser("alice", "alice", name="Alice Liddell", email="alice@example.test"),
            TestUser("bob", "bob", name="Bob Builder", email="bob@example.test"),
        ],
        "resources": [
            Resource("api://orders", ("orders.read", "orders.write")),
            Resource("https://notes.local", ("notes.read",)),
        ],
        "auto_approve": "alice",
    }


@pytest.fixture
def make_identity_provider() -> Callable[..., IdentityProvider]:
    """A factory: ``make_identity_provider(login_form=True, auto_approve=None)`` etc."""

    def make(**overrides: Any) -> IdentityProvider:
        config = {"issuer": TEST_ISSUER, **default_provider_config(), **overrides}
        return IdentityProvider(**config)

    return make


@pytest.fixture
def identity_provider(make_identity_provider: Callable[..., IdentityProvider]) -> IdentityProvider:
    """An in-process provider with issuer ``https://idp.test`` (use ``idp.transport()``)."""
    return make_identity_provider()


@pytest.fixture
def identity_provider_server(
    make_identity_provider: Callable[..., IdentityProvider],
) -> Iterator[IdentityProvider]:
    """The default provider served over loopback HTTP; ``idp.issuer`` is its URL."""
    idp = make_identity_provider(issuer=None)
    with serve_identity_provider(idp):
        yield idp


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterGroup]:
    """A Redis Cluster of 3 masters for the whole session; ``redis_cluster.url`` names it."""
    with RedisClusterGroup(masters=3, replicas=0) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelGroup]:
    """A master, a replica and a Sentinel for the whole session; ``.url`` names them."""
    with RedisSentinelGroup(replicas=1, sentinels=1) as group:
        yield group
