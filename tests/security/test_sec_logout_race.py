"""ST-10: a refresh that finishes after logout (or after another deletion) never brings the
user's tokens back; writes are conditional on the version read, on every backend."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sec_helpers import App, Recorder, base_settings, oidc_connector, serve_app

from authrelay import Principal, ReauthorizationRequired
from authrelay._crypto import KeyRing, random_token
from authrelay._io import SyncDriver
from authrelay.settings import Settings
from authrelay.stores import open_backends
from authrelay.stores.tokens import StoredTokens, TokenStore
from authrelay.testing import FakeClock, IdentityProvider

REDIS_URL = "redis://127.0.0.1:6379/0"
REFRESH = b"grant_type=refresh_token"


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Each backend; Redis under a key prefix of this test's own, removed afterwards."""
    kind = request.param
    if kind == "memory":
        yield {"url": "memory://"}
    elif kind == "sqlite":
        yield {"url": f"sqlite:///{tmp_path / 'store.db'}"}
    else:
        prefix = f"sec-{random_token(6)}:"
        yield {"url": REDIS_URL, "key_prefix": prefix}
        raw = redis.Redis.from_url(REDIS_URL)
        for name in list(raw.scan_iter(match=prefix + "*", count=500)):
            raw.delete(name)
        raw.close()


def _stored(app: App, subject: str) -> StoredTokens | None:
    store = app.relay.connectors.store
    issuer = app.relay.connectors.get("idp").issuer  # type: ignore[union-attr]
    record, _ = app.relay.sync_driver.run(store.load_tokens(subject, "idp", issuer))
    return record


def test_st10_refresh_finishing_after_logout_does_not_resurrect_tokens(
    idp: IdentityProvider, store_url: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authrelay")
    clock = FakeClock(time.time())
    recorder = Recorder()
    logged_out: list[httpx.Response] = []
    holder: list[App] = []

    def logout_while_refreshing(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        # The provider has answered the refresh; before the relay writes the new set,
        # the user logs out in another request.
        if REFRESH in request.content and not logged_out:
            assert response.status_code == 200
            logged_out.append(holder[0].logout())
        return response

    recorder.rewrite = logout_while_refreshing

    def settings(base: str) -> Settings:
        return base_settings(base, {"idp": oidc_connector(idp.issuer)}, store=store_url)

    with serve_app(settings, clock=clock, recorder=recorder) as app:
        holder.append(app)
        assert app.login().status_code == 303
        subject = app.me()["subject"]
        before = _stored(app, subject)
        assert before is not None and before.refresh_token is not None
        principal = Principal(subject=subject, kind="session", connector="idp")
        source = app.relay.connectors.tokens
        clock.advance(250)  # inside the refresh margin of the 300 s token
        in_flight = app.relay.sync_driver.run(
            source.user_token(principal, "idp", (), force_refresh=False)
        )
        # The request that was already running finishes with the token it got...
        assert in_flight.value != before.access_token
        assert logged_out and logged_out[0].status_code == 200
        # ...but nothing of it is written back: the logout's deletion wins.
        assert _stored(app, subject) is None
        assert len(source.pins) == 0
        assert app.me()["authenticated"] is False
        with pytest.raises(ReauthorizationRequired):
            app.relay.sync_driver.run(source.user_token(principal, "idp", (), force_refresh=True))
    assert len(recorder.token_requests("refresh_token")) == 1
    assert any(r.getMessage().startswith("refresh_write_conflict") for r in caplog.records)


def test_st10_conditional_write_fails_after_a_deletion(store_url: dict[str, str]) -> None:
    settings = Settings.model_validate({"secret_keys": ["k" * 32], "store": store_url})
    backend, _ = open_backends(settings.store)
    store = TokenStore(KeyRing([b"k" * 32], "authrelay-store-v1"), prefix=settings.store.key_prefix)
    driver = SyncDriver(httpx.Client(), backend)
    try:
        record = StoredTokens(
            connector="idp",
            target="idp",
            issuer="https://idp",
            access_token="at-1",
            refresh_token="rt-1",
        )
        assert driver.run(store.save_tokens("u", record, expected_version=0))
        _, version = driver.run(store.load_tokens("u", "idp", "https://idp"))
        assert version >= 1
        # Logout deletes while a refresh that read `version` is in flight.
        assert driver.run(store.delete_tokens("u", "idp"))
        late = StoredTokens(
            connector="idp",
            target="idp",
            issuer="https://idp",
            access_token="at-2",
            refresh_token="rt-2",
        )
        assert driver.run(store.save_tokens("u", late, expected_version=version)) is None
        found, _ = driver.run(store.load_tokens("u", "idp", "https://idp"))
        assert found is None
        # A delete-and-recreate in between does not make the stale version match again.
        assert driver.run(store.save_tokens("u", record, expected_version=0))
        assert driver.run(store.save_tokens("u", late, expected_version=version)) is None
    finally:
        driver.client.close()
        backend.close()
