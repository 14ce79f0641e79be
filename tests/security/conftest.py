"""Fixtures for the security-requirement tests: the strict test provider on loopback."""

from __future__ import annotations

import pytest

from authrelay.testing import IdentityProvider


@pytest.fixture
def idp(identity_provider_server: IdentityProvider) -> IdentityProvider:
    """The default test provider served on loopback."""
    return identity_provider_server


@pytest.fixture(params=["asgi", "wsgi"])
def shell(request: pytest.FixtureRequest) -> str:
    """Both shells."""
    return str(request.param)
