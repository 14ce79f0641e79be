"""Fixtures for connector tests (``idp`` and ``shell`` come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from connector_helpers import Timed, run_app

from authrelay.testing import FakeClock, IdentityProvider, serve_identity_provider


@pytest.fixture
def signed_in(make_identity_provider: Callable[..., IdentityProvider]) -> Iterator[Timed]:
    """Alice signed in over real HTTP, on a clock the test moves (``timed.clock.advance(…)``)."""
    clock = FakeClock(1_700_000_000.0)
    idp = make_identity_provider(issuer=None, clock=clock)
    with serve_identity_provider(idp), run_app(idp, clock=clock) as app:
        app.login()
        yield Timed(idp, clock, app)
