"""The cross-process refresh lock: a dead holder costs one slow request, never a 502."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from connector_helpers import Running, Timed, refresh_count

from authrelay import Principal, TokenStoreUnavailable
from authrelay._io import Effect, Sleep, SyncDriver
from authrelay.connectors.usertokens import LOCK_MARGIN, lock_ttl
from authrelay.responses import error_response
from authrelay.settings import HttpSettings
from authrelay.stores.locks import acquire_lock
from authrelay.testing import FakeClock
from authrelay.tokens import AccessToken

ALICE = Principal(subject="idp|alice", kind="session", connector="idp")


class FastForward(SyncDriver):
    """The WSGI driver, except that a ``Sleep`` moves the injected clock instead of waiting."""

    def __init__(self, app: Running, clock: FakeClock) -> None:
        super().__init__(httpx.Client(timeout=10), app.relay.backend)
        self.clock = clock
        self.slept = 0.0

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Sleep):
            self.clock.advance(effect.seconds)
            self.slept += effect.seconds
            return None
        return super()._perform(effect)


def _take_lock_and_vanish(app: Running, ttl: float) -> None:
    """What a worker that crashed in the middle of a refresh leaves behind."""
    key = app.relay.connectors.store.lock_key("idp|alice", "idp")
    assert app.relay.sync_driver.run(acquire_lock(key, ttl)) is not None


def _token(driver: SyncDriver, app: Running) -> AccessToken:
    source = app.relay.connectors.tokens
    return driver.run(source.user_token(ALICE, "idp", (), force_refresh=False))


def test_rt02_lock_outlives_the_token_timeout_and_waiters_outwait_the_lock() -> None:
    http = HttpSettings()
    assert lock_ttl(http) >= 2 * http.token_timeout + LOCK_MARGIN
    slow = HttpSettings(token_timeout=40.0)
    assert lock_ttl(slow) > lock_ttl(http) + 2 * 30.0 - 1


def test_rt02_dead_lock_holder_costs_one_wait_then_one_refresh(signed_in: Timed) -> None:
    idp, clock, app = signed_in.idp, signed_in.clock, signed_in.app
    ttl = app.relay.connectors.tokens.lock_ttl
    clock.advance(290)  # the access token is due for refresh
    _take_lock_and_vanish(app, ttl)
    driver = FastForward(app, clock)
    try:
        token = _token(driver, app)
    finally:
        driver.client.close()
    assert token.value
    assert ttl <= driver.slept <= ttl + LOCK_MARGIN  # waited for the lock's TTL, not less
    assert refresh_count(idp, 1) == 1


def test_rt02_lock_held_past_the_wait_budget_is_a_503_with_retry_after(signed_in: Timed) -> None:
    idp, clock, app = signed_in.idp, signed_in.clock, signed_in.app
    clock.advance(290)
    _take_lock_and_vanish(app, 100 * app.relay.connectors.tokens.lock_ttl)
    driver = FastForward(app, clock)
    try:
        with pytest.raises(TokenStoreUnavailable) as info:
            _token(driver, app)
    finally:
        driver.client.close()
    assert info.value.connector == "idp"
    response = error_response(info.value, accept="application/json")
    assert response.status == 503
    assert int(dict(response.headers)["retry-after"]) >= 1
    assert refresh_count(idp, 0) == 0
