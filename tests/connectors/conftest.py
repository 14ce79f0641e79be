"""Fixtures for connector tests: the test provider on loopback, both shells."""

from __future__ import annotations

import pytest

from authrelay.testing import IdentityProvider


@pytest.fixture
def idp(identity_provider_server: IdentityProvider) -> IdentityProvider:
    """The test provider on loopback."""
    return identity_provider_server


@pytest.fixture(params=["asgi", "wsgi"])
def shell(request: pytest.FixtureRequest) -> str:
    """Both shells."""
    return str(request.param)
