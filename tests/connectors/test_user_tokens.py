"""User-delegated tokens: refresh before expiry, rotation, invalid_grant, consent, races."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
from connector_helpers import Running, Timed, app_settings, refresh_count, run_app

from authrelay import ConsentRequired, Principal, ReauthorizationRequired, Relay, UpstreamError
from authrelay.testing import IdentityProvider
from authrelay.tokens import AccessToken

ALICE = Principal(subject="idp|alice", kind="session", connector="idp")


def token(app: Running, *, scopes: tuple[str, ...] = (), force: bool = False) -> AccessToken:
    source = app.relay.connectors.tokens
    return app.relay.sync_driver.run(source.user_token(ALICE, "idp", scopes, force_refresh=force))


def stored_refresh_token(app: Running) -> str | None:
    store = app.relay.connectors.store
    record, _ = app.relay.sync_driver.run(
        store.load_tokens("idp|alice", "idp", app.relay.connectors.get("idp").issuer)
    )  # type: ignore[union-attr]
    return None if record is None else record.refresh_token


def test_rt01_refresh_before_expiry_rotates_and_persists(signed_in: Timed) -> None:
    idp, clock, app = signed_in.idp, signed_in.clock, signed_in.app
    first = token(app)
    assert refresh_count(idp, 0) == 0
    old_rt = stored_refresh_token(app)
    assert old_rt is not None
    clock.advance(250)  # within the 60 s margin of the 300 s lifetime
    second = token(app)
    assert second.value != first.value
    assert refresh_count(idp, 1) == 1
    new_rt = stored_refresh_token(app)
    assert new_rt is not None and new_rt != old_rt
    assert idp.refresh_token_state(old_rt) == "rotated"
    assert idp.refresh_token_state(new_rt) == "active"
    assert token(app).value == second.value  # fresh again: no new request
    assert refresh_count(idp, 1) == 1


def test_rt02_concurrent_refreshes_are_single_flight(signed_in: Timed) -> None:
    idp, clock, app = signed_in.idp, signed_in.clock, signed_in.app
    clock.advance(280)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(token(app).value)
        except BaseException as exc:
            errors.append(exc)

    assert app.relay.sync_driver is app.relay.sync_driver  # made once, before the threads
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(set(results)) == 1
    assert refresh_count(idp, 1) == 1


def test_rt03_invalid_grant_marks_the_link_expired_and_keeps_the_session(signed_in: Timed) -> None:
    idp, clock, app = signed_in.idp, signed_in.clock, signed_in.app
    clock.advance(290)
    idp.faults.add("token", error="invalid_grant", grant_type="refresh_token")
    with pytest.raises(ReauthorizationRequired) as info:
        token(app)
    assert info.value.login_url == "/auth/idp/connect"
    me = app.me()
    assert me["authenticated"] is True
    assert me["connectors"][0]["status"] == "expired"
    assert stored_refresh_token(app) is None
    with pytest.raises(ReauthorizationRequired):
        token(app)
    assert refresh_count(idp, 1) == 1


def test_rt06_invalid_client_never_deletes_user_tokens(signed_in: Timed) -> None:
    idp, clock, app = signed_in.idp, signed_in.clock, signed_in.app
    rt = stored_refresh_token(app)
    clock.advance(290)
    idp.faults.add("token", error="invalid_client", grant_type="refresh_token")
    with pytest.raises(UpstreamError) as info:
        token(app)
    assert info.value.oauth_error == "invalid_client"
    assert stored_refresh_token(app) == rt


def test_rt04_no_retry_after_500_one_retry_after_503(signed_in: Timed) -> None:
    idp, clock, app = signed_in.idp, signed_in.clock, signed_in.app
    clock.advance(290)
    idp.faults.add("token", status=500, grant_type="refresh_token")
    with pytest.raises(UpstreamError):
        token(app)
    assert refresh_count(idp, 1) == 1
    idp.faults.add("token", status=503, retry_after=0, grant_type="refresh_token")
    token(app)
    assert refresh_count(idp, 3) == 3


def test_consent_required_for_scopes_beyond_the_grant(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        app.login()
        with pytest.raises(ConsentRequired) as info:
            token(app, scopes=("orders.write",))
        assert info.value.scopes == ("orders.write",)
        assert info.value.login_url == "/auth/idp/connect?scope=orders.write"
        assert token(app, scopes=("openid",)).value


def test_e_reauth_when_never_connected(idp: IdentityProvider) -> None:
    with run_app(idp) as app, pytest.raises(ReauthorizationRequired) as info:
        token(app)
    assert info.value.connector == "idp"


# -- two processes sharing one SQLite store ---------------------------------------------


def _refresher(issuer: str, db: str, rounds: int, failures: Any) -> None:
    settings = app_settings(issuer, "http://127.0.0.1:1", store={"url": f"sqlite:///{db}"})
    relay = Relay(settings)
    source = relay.connectors.tokens
    for _ in range(rounds):
        try:
            relay.sync_driver.run(source.user_token(ALICE, "idp", (), force_refresh=True))
        except Exception as exc:
            failures.put(type(exc).__name__)
    relay.close()


@pytest.mark.slow
def test_inv4_rotated_refresh_token_is_never_lost_across_processes(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    db = str(tmp_path / "shared.db")
    with run_app(idp, store={"url": f"sqlite:///{db}"}) as app:
        app.login()
        ctx = multiprocessing.get_context("spawn")
        failures = ctx.Queue()
        rounds = 6
        procs = [
            ctx.Process(target=_refresher, args=(idp.issuer, db, rounds, failures))
            for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(120)
            assert proc.exitcode == 0
        seen = []
        while not failures.empty():
            seen.append(failures.get())
        assert seen == []
        final = stored_refresh_token(app)
        assert final is not None
        assert idp.refresh_token_state(final) == "active"  # the family was never revoked
        # a forced refresh that waited on the other process's lease adopts its fresh result
        assert rounds <= refresh_count(idp, 2 * rounds) <= 2 * rounds
        assert token(app, force=True).value
