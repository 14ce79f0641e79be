"""Revocation at logout (RFC 7009): never holds the logout up; 503s retried afterwards."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import pytest
from connector_helpers import Running, app_settings, run_app

from authrelay import Relay
from authrelay._io import Sleep
from authrelay.connectors.routes import REVOKE_RETRIES, _Revocation
from authrelay.testing import IdentityProvider


def _logout(app: Running) -> httpx.Response:
    return app.client.post(
        f"{app.base}/auth/logout", headers={"origin": app.base, "accept": "application/json"}
    )


def _eventually(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Wait for a background effect (not a timing assertion: the deadline is generous)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_rv02_logout_succeeds_while_revocation_fails_and_retries_in_background(
    idp: IdentityProvider, shell: str
) -> None:
    with run_app(idp, wsgi=shell == "wsgi") as app:
        app.login()
        tokens = idp.issued_refresh_tokens("alice")
        idp.faults.add("revoke", status=503, retry_after=1, count=None)
        out = _logout(app)
        assert out.status_code == 200
        assert out.json()["logged_out"] is True
        assert app.me()["authenticated"] is False  # local state first
        assert not any(idp.is_revoked(t) for t in tokens)  # every attempt so far got 503
        assert app.relay.connectors.background.pending() == 1
        idp.faults.clear()  # the provider recovers
        assert _eventually(lambda: all(idp.is_revoked(t) for t in tokens))
        assert _eventually(lambda: app.relay.connectors.background.pending() == 0)
    assert idp.counters.count(endpoint="revoke", status=200) == 2  # RV-01: refresh, access


def test_rv03_unsupported_token_type_is_logged_at_info_and_not_retried(
    idp: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="authrelay"), run_app(idp) as app:
        app.login()
        idp.faults.add("revoke", error="unsupported_token_type", count=None)
        assert _logout(app).status_code == 200
        assert app.relay.connectors.background.pending() == 0  # nothing scheduled
    unsupported = [r for r in caplog.records if "revocation_unsupported" in r.getMessage()]
    assert [r.levelno for r in unsupported] == [logging.INFO, logging.INFO]
    assert idp.counters.count(endpoint="revoke") == 2


def test_rv02_background_retries_are_bounded_and_follow_retry_after() -> None:
    relay = Relay(app_settings("https://idp.test", "https://app.example"))
    connector = relay.connectors.get("idp")
    assert connector is not None
    revocation = _Revocation(connector, "https://idp.test/revoke", "rt-canary", "refresh_token")
    flow = relay.connectors.routes.revoke_later([(revocation, 1.0)])
    sent: list[httpx.Request] = []
    slept: list[float] = []
    effect = next(flow)
    while True:
        answer: httpx.Response | None = None
        if isinstance(effect, Sleep):
            slept.append(effect.seconds)
        else:
            assert isinstance(effect, httpx.Request)
            sent.append(effect)
            answer = httpx.Response(503, headers={"retry-after": "7"}, request=effect)
        try:
            effect = flow.send(answer)
        except StopIteration:
            break
    assert len(sent) == REVOKE_RETRIES
    assert slept == [1.0] + [7.0] * (REVOKE_RETRIES - 1)
    assert all(b"token_type_hint=refresh_token" in r.content for r in sent)
    relay.close()
