"""Refresh MUSTs: rotation by another worker (RT-03), a failed write after refresh (ST-09),
a foreign ID token in a refresh response (RT-05), configuration errors (RT-06)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from connector_helpers import Intercept, Running, refresh_count, run_app

from authrelay import Principal, UpstreamError
from authrelay.stores import sqlite as sqlite_store
from authrelay.stores.tokens import StoredTokens
from authrelay.testing import IdentityProvider, serve_identity_provider
from authrelay.tokens import AccessToken

ALICE = Principal(subject="idp|alice", kind="session", connector="idp")


@pytest.fixture
def clock() -> list[float]:
    return [1_700_000_000.0]


@pytest.fixture
def timed_idp(
    make_identity_provider: Callable[..., IdentityProvider], clock: list[float]
) -> Iterator[IdentityProvider]:
    idp = make_identity_provider(issuer=None, clock=lambda: clock[0])
    with serve_identity_provider(idp):
        yield idp


def token(app: Running) -> AccessToken:
    source = app.relay.connectors.tokens
    return app.relay.sync_driver.run(source.user_token(ALICE, "idp", (), force_refresh=False))


def stored(app: Running) -> StoredTokens | None:
    store = app.relay.connectors.store
    record, _ = app.relay.sync_driver.run(store.load_tokens("idp|alice", "idp", _issuer(app)))
    return record


def _issuer(app: Running) -> str | None:
    connector = app.relay.connectors.get("idp")
    assert connector is not None
    return connector.issuer


def _eventually(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- RT-03 ------------------------------------------------------------------------------


def test_rt03_invalid_grant_after_another_worker_rotated_retries_with_the_stored_token(
    timed_idp: IdentityProvider, clock: list[float]
) -> None:
    idp = timed_idp
    box: dict[str, Running] = {}

    def other_worker_rotates_first(request: httpx.Request, n: int) -> None:
        if n != 1:
            return
        app = box["app"]
        record = stored(app)
        assert record is not None and record.refresh_token is not None
        with httpx.Client(base_url=idp.issuer) as client:
            fresh = client.post(
                "/token",
                data={"grant_type": "refresh_token", "refresh_token": record.refresh_token},
                auth=("test-client", "test-secret"),
            ).json()
        store, driver = app.relay.connectors.store, app.relay.sync_driver
        _, version = driver.run(store.load_tokens("idp|alice", "idp", _issuer(app)))
        rotated = replace(
            record,
            access_token=fresh["access_token"],
            refresh_token=fresh["refresh_token"],
            expires_at=clock[0] + fresh["expires_in"],
            updated_at=clock[0],
        )
        assert driver.run(store.save_tokens("idp|alice", rotated, expected_version=version))
        box["rotated"] = rotated  # type: ignore[assignment]
        # The refresh token this request carries is spent now: the provider says so.
        idp.faults.add("token", grant_type="refresh_token", error="invalid_grant")

    with run_app(
        idp, clock=lambda: clock[0], transport=Intercept(before=other_worker_rotates_first)
    ) as app:
        box["app"] = app
        app.login()
        clock[0] += 290
        got = token(app)
        other: StoredTokens = box["rotated"]  # type: ignore[assignment]
        assert got.value != other.access_token  # refreshed once more with the stored token
        final = stored(app)
        assert final is not None and final.status == "active"
        assert final.refresh_token not in (None, other.refresh_token)
        assert idp.refresh_token_state(other.refresh_token or "") == "rotated"
        assert idp.refresh_token_state(final.refresh_token or "") == "active"
        assert refresh_count(idp, 3) == 3  # the other worker's, the refused one, the retry
        metrics = app.relay.metrics  # what /auth/stats and /metrics report of it
        refreshes = {"target": "idp", "flow": "connector", "grant": "refresh_token"}
        assert metrics.count("token_requests", **refreshes, outcome="invalid_grant") == 1
        assert metrics.count("token_requests", **refreshes, outcome="success") == 1
        assert metrics.count("invalid_grant", target="idp") == 1
        assert metrics.count("rotations", target="idp") == 1
        assert metrics.count("sessions_created") == 1


# -- ST-09 ------------------------------------------------------------------------------


def test_st09_failed_write_after_refresh_keeps_the_set_pinned_until_persisted(
    timed_idp: IdentityProvider,
    clock: list[float],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    idp = timed_idp
    db = tmp_path / "store.db"
    monkeypatch.setattr(sqlite_store, "_BUSY_TIMEOUT_MS", 100)  # fail fast while locked
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def store_goes_read_only(request: httpx.Request, n: int) -> None:
        if n == 1:
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    try:
        with run_app(
            idp,
            clock=lambda: clock[0],
            transport=Intercept(before=store_goes_read_only),
            store={"url": f"sqlite:///{db}"},
        ) as app:
            app.login()
            before = stored(app)
            assert before is not None
            clock[0] += 290
            first = token(app)  # the request succeeds although the write failed
            assert first.value != before.access_token
            assert len(app.relay.connectors.tokens.pins) == 1
            unchanged = stored(app)
            assert unchanged is not None and unchanged.refresh_token == before.refresh_token
            assert token(app).value == first.value  # served from the pin: no second refresh
            assert refresh_count(idp, 1) == 1
            holder.execute("ROLLBACK")  # the store recovers
            assert _eventually(lambda: len(app.relay.connectors.tokens.pins) == 0)
            after = stored(app)
            assert after is not None and after.access_token == first.value
            assert idp.refresh_token_state(after.refresh_token or "") == "active"  # INV-4
            assert idp.refresh_token_state(before.refresh_token or "") == "rotated"
            assert _eventually(lambda: app.relay.connectors.background.pending() == 0)
    finally:
        holder.close()


# -- RT-05 ------------------------------------------------------------------------------

FOREIGN_ID_TOKENS: dict[str, dict[str, Any]] = {
    "sub": {"sub": "bob"},
    "iss": {"claims": {"iss": "https://other.example"}},
    "aud": {"audience": ["test-client", "api://extra"], "claims": {"azp": "test-client"}},
    "azp": {"claims": {"azp": "other-client"}},
}


@pytest.mark.parametrize("claim", sorted(FOREIGN_ID_TOKENS))
def test_rt05_refreshed_id_token_for_another_identity_discards_the_response(
    timed_idp: IdentityProvider, clock: list[float], claim: str
) -> None:
    idp = timed_idp

    def foreign_id_token(
        request: httpx.Request, response: httpx.Response, n: int
    ) -> httpx.Response:
        body = response.json()
        assert "id_token" in body
        body["id_token"] = idp.mint_id_token(**FOREIGN_ID_TOKENS[claim])
        return httpx.Response(200, json=body, headers={"cache-control": "no-store"})

    with run_app(
        idp,
        clock=lambda: clock[0],
        transport=Intercept(after=foreign_id_token),
        connector={"trusted_audiences": ["api://extra"]},
    ) as app:
        app.login()
        before = stored(app)
        clock[0] += 290
        with pytest.raises(UpstreamError) as info:
            token(app)
        assert type(info.value) is UpstreamError  # E-UPSTREAM, 502
        assert info.value.connector == "idp"
        after = stored(app)
        assert after is not None and before is not None
        assert (after.access_token, after.refresh_token) == (
            before.access_token,
            before.refresh_token,
        )
        assert after.status == "active"


# -- RT-06 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", ["invalid_client", "unauthorized_client", "unsupported_grant_type"]
)
def test_rt06_configuration_errors_never_delete_user_tokens(
    timed_idp: IdentityProvider,
    clock: list[float],
    error: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp = timed_idp
    with run_app(idp, clock=lambda: clock[0]) as app:
        app.login()
        before = stored(app)
        clock[0] += 290
        idp.faults.add("token", error=error, grant_type="refresh_token")
        with pytest.raises(UpstreamError) as info:
            token(app)
        assert info.value.oauth_error == error
        after = stored(app)
        assert after is not None and before is not None
        assert after.status == "active"
        assert after.refresh_token == before.refresh_token
        assert token(app).value  # the next request refreshes with the same token
    assert any(
        r.levelname == "ERROR" and "refresh_config_error" in r.getMessage() for r in caplog.records
    )
    assert (
        json.dumps([r.getMessage() for r in caplog.records]).count(before.refresh_token or "x") == 0
    )
