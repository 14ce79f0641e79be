"""Proactive refresh (``refresh_ahead``, ``keep_alive``) and ``on_token_event``, on the
injected clock; the refreshes go over real HTTP to the loopback test provider."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from connector_helpers import Running, echo_app, refresh_count, run_app

from authrelay import AuthRelayMiddleware, Principal, Relay, Settings
from authrelay.connectors.events import TokenEvent
from authrelay.testing import FakeClock, IdentityProvider, serve_asgi, serve_identity_provider

USER = "idp|alice"
ALICE = Principal(subject=USER, kind="session", connector="idp")


@dataclass
class Setup:
    idp: IdentityProvider
    clock: FakeClock
    app: Running
    events: list[TokenEvent]

    def due(self) -> list[tuple[str, str]]:
        return self.app.relay.sync_driver.run(self.app.relay.connectors.refresher.due())

    def refresh_one(self, name: str, key: str) -> str:
        refresher = self.app.relay.connectors.refresher
        return self.app.relay.sync_driver.run(refresher.refresh_one(name, key))

    def record(self) -> Any:
        registry = self.app.relay.connectors
        record, _ = self.app.relay.sync_driver.run(
            registry.store.load_tokens(USER, "idp", registry.get("idp").issuer)  # type: ignore[union-attr]
        )
        return record

    def hooked(self, kinds: int) -> list[TokenEvent]:
        """The events the hook saw, once there are ``kinds`` (it runs in the background)."""
        for _ in range(500):
            if len(self.events) >= kinds:
                break
            threading.Event().wait(0.01)
        return list(self.events)


@pytest.fixture
def make_setup(
    make_identity_provider: Callable[..., IdentityProvider],
) -> Iterator[Callable[..., Setup]]:
    stack: list[Any] = []

    def build(**connector: Any) -> Setup:
        clock = FakeClock(1_700_000_000.0)
        idp = make_identity_provider(issuer=None, clock=clock)
        serving = serve_identity_provider(idp)
        serving.__enter__()
        stack.append(serving)
        running = run_app(idp, clock=clock, connector=connector)
        app = running.__enter__()
        stack.append(running)
        events: list[TokenEvent] = []
        app.relay.connectors.set_token_event_hook(events.append)
        app.login()
        return Setup(idp, clock, app, events)

    yield build
    for context in reversed(stack):
        context.__exit__(None, None, None)


def test_refresh_ahead_refreshes_a_due_token_once_and_reindexes_it(
    make_setup: Callable[..., Setup],
) -> None:
    setup = make_setup(refresh_ahead="2m")
    before = setup.record()
    assert setup.due() == []  # 300 s token: due 120 s before expiry
    setup.clock.advance(179)
    assert setup.due() == []
    setup.clock.advance(2)
    due = setup.due()
    assert len(due) == 1
    assert setup.refresh_one(*due[0]) == "refreshed"
    assert refresh_count(setup.idp, 1) == 1
    after = setup.record()
    assert after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token  # the provider rotates
    assert setup.idp.refresh_token_state(before.refresh_token) == "rotated"
    assert setup.refresh_one(*due[0]) == "gone"  # a second worker with the same entry
    assert setup.due() == []
    setup.clock.advance(181)  # the new token is due in its turn
    assert len(setup.due()) == 1
    assert refresh_count(setup.idp, 1) == 1
    events = setup.hooked(1)
    assert [(e.kind, e.connector, e.user, e.reason) for e in events] == [
        ("rotated", "idp", USER, "refresh_ahead")
    ]


def test_refresh_ahead_longer_than_the_lifetime_waits_for_half_of_it(
    make_setup: Callable[..., Setup],
) -> None:
    setup = make_setup(refresh_ahead="1h")
    setup.clock.advance(149)
    assert setup.due() == []
    setup.clock.advance(2)
    assert len(setup.due()) == 1


def test_a_request_refresh_leaves_a_stale_entry_that_costs_no_refresh(
    make_setup: Callable[..., Setup],
) -> None:
    setup = make_setup(refresh_ahead="2m")
    setup.clock.advance(100)
    tokens = setup.app.relay.connectors.tokens
    setup.app.relay.sync_driver.run(tokens.user_token(ALICE, "idp", (), force_refresh=True))
    assert refresh_count(setup.idp, 1) == 1
    setup.clock.advance(85)  # the first entry's time; the record's is later now
    due = setup.due()
    assert len(due) == 1
    assert setup.refresh_one(*due[0]) == "stale"
    assert setup.due() == []
    assert refresh_count(setup.idp, 1) == 1


def test_keep_alive_refreshes_an_idle_refresh_token(make_setup: Callable[..., Setup]) -> None:
    # The provider's refresh tokens die after a day; the access token after 5 minutes.
    setup = make_setup(keep_alive=True, keep_alive_after="1h")
    setup.clock.advance(3599)
    assert setup.due() == []
    setup.clock.advance(2)
    due = setup.due()
    assert len(due) == 1
    assert setup.refresh_one(*due[0]) == "refreshed"
    assert refresh_count(setup.idp, 1) == 1
    assert [(e.kind, e.reason) for e in setup.hooked(1)] == [("rotated", "keep_alive")]


def test_invalid_grant_fires_reauthorization_required_and_drops_the_entry(
    make_setup: Callable[..., Setup],
) -> None:
    setup = make_setup(refresh_ahead="2m")
    setup.idp.faults.add("token", error="invalid_grant", grant_type="refresh_token")
    setup.clock.advance(200)
    due = setup.due()
    assert setup.refresh_one(*due[0]) == "reauthorization_required"
    assert setup.record().status == "expired"
    assert setup.due() == []
    setup.clock.advance(10_000)
    assert setup.due() == []
    events = setup.hooked(1)
    assert [(e.kind, e.reason) for e in events] == [("reauthorization_required", "invalid_grant")]


def test_a_failed_refresh_fires_refresh_failed_and_is_retried_after_a_backoff(
    make_setup: Callable[..., Setup],
) -> None:
    setup = make_setup(refresh_ahead="2m")
    setup.idp.faults.add("token", status=500, grant_type="refresh_token")
    setup.clock.advance(200)
    assert setup.refresh_one(*setup.due()[0]) == "failed"
    assert setup.due() == []  # not hammered by the next pass
    setup.clock.advance(61)
    due = setup.due()
    assert len(due) == 1
    assert setup.refresh_one(*due[0]) == "refreshed"
    assert refresh_count(setup.idp, 2) == 2
    kinds = [(e.kind, e.reason) for e in setup.hooked(2)]
    assert kinds[0][0] == "refresh_failed" and kinds[0][1]
    assert kinds[1] == ("rotated", "refresh_ahead")


def test_events_carry_no_token_material(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(refresh_ahead="2m")
    before = setup.record()
    setup.clock.advance(200)
    setup.refresh_one(*setup.due()[0])
    after = setup.record()
    event = setup.hooked(1)[0]
    text = json.dumps(event.to_dict()) + repr(event)
    for secret in (
        before.access_token,
        before.refresh_token,
        after.access_token,
        after.refresh_token,
    ):
        assert secret not in text
    assert set(event.to_dict()) == {"id", "type", "connector", "user", "reason", "occurred_at"}


def test_logout_fires_revoked(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup()
    response = setup.app.client.post(
        f"{setup.app.base}/auth/logout", headers={"origin": setup.app.base}
    )
    assert response.status_code in (200, 303), response.text
    assert [(e.kind, e.user, e.reason) for e in setup.hooked(1)] == [("revoked", USER, "logout")]


# -- the hook under each shell ---------------------------------------------------------


def _event() -> TokenEvent:
    return TokenEvent("refreshed", "idp", USER, "refresh_ahead", 1.0, "id-1")


def _relay(**extra: Any) -> Relay:
    settings = Settings.model_validate(
        {
            "dev_mode": True,
            "public_base_url": "http://127.0.0.1:1",
            "http": {"allow_insecure_loopback": True},
            "connectors": {
                "idp": {
                    "standard": "oauth2",
                    "authorization_endpoint": "https://idp.example/authorize",
                    "token_endpoint": "https://idp.example/token",
                    "userinfo_endpoint": "https://idp.example/userinfo",
                    "client_id": "c",
                    "client_secret": "s",
                    **extra,
                }
            },
        }
    )
    return Relay(settings)


def test_under_asgi_a_sync_hook_runs_in_a_worker_thread_and_an_async_one_on_the_loop() -> None:
    relay = _relay()
    events = relay.connectors.events
    seen: list[tuple[str, int]] = []

    def sync_hook(event: TokenEvent) -> None:
        seen.append(("sync", threading.get_ident()))

    async def async_hook(event: TokenEvent) -> None:
        seen.append(("async", threading.get_ident()))

    async def main() -> int:
        events.hook = sync_hook
        await relay.async_driver.run(events._run_hook(_event()))
        events.hook = async_hook
        await relay.async_driver.run(events._run_hook(_event()))
        await relay.aclose()
        return threading.get_ident()

    loop_thread = anyio.run(main)
    assert seen[0][0] == "sync" and seen[0][1] != loop_thread
    assert seen[1] == ("async", loop_thread)


def test_under_wsgi_an_async_hook_is_refused_with_a_clear_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = _relay()
    called: list[TokenEvent] = []

    async def async_hook(event: TokenEvent) -> None:
        called.append(event)

    relay.connectors.set_token_event_hook(async_hook)
    with caplog.at_level(logging.ERROR, "authrelay.connectors.events"):
        relay.sync_driver.run(relay.connectors.events._run_hook(_event()))
    relay.close()
    assert called == []
    assert "on_token_event_async_under_wsgi" in caplog.text


def test_a_failing_hook_is_logged_by_type(caplog: pytest.LogCaptureFixture) -> None:
    relay = _relay()

    def broken(event: TokenEvent) -> None:
        raise RuntimeError("secret-ish detail")

    relay.connectors.set_token_event_hook(broken)
    with caplog.at_level(logging.ERROR, "authrelay.connectors.events"):
        relay.sync_driver.run(relay.connectors.events._run_hook(_event()))
    relay.close()
    assert "on_token_event_failed type=refreshed connector=idp error=RuntimeError" in caplog.text
    assert "secret-ish detail" not in caplog.text


def test_settings_take_durations_and_refuse_bad_ones() -> None:
    relay = _relay(refresh_ahead="10m", keep_alive=True, keep_alive_after="2h")
    config = relay.connectors.get("idp").settings  # type: ignore[union-attr]
    assert (config.refresh_ahead, config.keep_alive_after) == (600.0, 7200.0)
    relay.close()
    from authrelay import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        _relay(refresh_ahead="soon")
    assert "connectors.idp.refresh_ahead" in str(info.value)
    assert "'10m'" in str(info.value)


# -- the background loop starts and stops with the relay -------------------------------


def test_wsgi_background_thread_starts_on_demand_and_stops_at_close() -> None:
    relay = _relay(refresh_ahead="10m")
    assert relay.start_background() is True
    assert relay.start_background() is False  # already running
    maintenance = relay.connectors.maintenance
    assert maintenance.running
    thread = maintenance._thread
    assert thread is not None and thread.daemon
    relay.close()
    assert not maintenance.running
    assert not thread.is_alive()


def test_nothing_starts_without_refresh_ahead_or_events() -> None:
    relay = _relay()
    assert relay.start_background() is False
    assert not relay.connectors.maintenance.running
    relay.close()


def test_asgi_lifespan_starts_the_task_and_shutdown_stops_it() -> None:
    relay = _relay(refresh_ahead="10m")
    maintenance = relay.connectors.maintenance
    with serve_asgi(AuthRelayMiddleware(echo_app, relay=relay)):
        for _ in range(500):
            if maintenance.running:
                break
            threading.Event().wait(0.01)
        assert maintenance.running
        task = maintenance._task
        assert isinstance(task, asyncio.Task)
    assert task.done()
    assert not maintenance.running
    relay.close()


def test_the_wsgi_middleware_starts_the_loop_with_the_first_request() -> None:
    from connector_helpers import wsgi_echo_app

    from authrelay.wsgi import AuthRelayWSGIMiddleware

    relay = _relay(refresh_ahead="10m")
    middleware = AuthRelayWSGIMiddleware(wsgi_echo_app, relay=relay)
    assert not relay.connectors.maintenance.running  # nothing at import (pre-fork servers)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    middleware(environ, lambda status, headers, exc_info=None: None)
    assert relay.connectors.maintenance.running
    relay.close()
    assert not relay.connectors.maintenance.running
