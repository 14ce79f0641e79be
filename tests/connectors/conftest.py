"""Fixtures for connector tests: the test provider on loopback, both shells, a clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from connector_helpers import Timed, run_app

from authrelay.testing import IdentityProvider, serve_identity_provider


@pytest.fixture
def idp(identity_provider_server: IdentityProvider) -> IdentityProvider:
    """The test provider on loopback."""
    return identity_provider_server


@pytest.fixture(params=["asgi", "wsgi"])
def shell(request: pytest.FixtureRequest) -> str:
    """Both shells."""
    return str(request.param)


@pytest.fixture
def signed_in(make_identity_provider: Callable[..., IdentityProvider]) -> Iterator[Timed]:
    """Alice signed in over real HTTP, on a clock the test moves (``timed.now[0] += …``)."""
    now = [1_700_000_000.0]
    idp = make_identity_provider(issuer=None, clock=lambda: now[0])
    with serve_identity_provider(idp), run_app(idp, clock=lambda: now[0]) as app:
        app.login()
        yield Timed(idp, now, app)
