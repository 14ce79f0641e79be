"""Shared helpers for the identity provider tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from authrelay.testing import FakeClock, IdentityProvider


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def idp_client(identity_provider: IdentityProvider) -> Iterator[httpx.Client]:
    """A sync in-process client for the default provider."""
    with httpx.Client(
        transport=identity_provider.sync_transport(), base_url=identity_provider.issuer
    ) as client:
        yield client


@pytest.fixture
def http_client(identity_provider_server: IdentityProvider) -> Iterator[httpx.Client]:
    """A client over real loopback HTTP for the served default provider."""
    with httpx.Client(base_url=identity_provider_server.issuer, timeout=10) as client:
        yield client
