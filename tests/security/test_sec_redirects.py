"""``next`` handling: an invalid value falls back quietly (RD-03) and is checked at login
and again at the callback (RD-04)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import pytest
from sec_helpers import base_settings, oidc_connector, query_of, serve_app

from authrelay import Settings
from authrelay.redirects import safe_next
from authrelay.testing import IdentityProvider

EVIL = "//evil.example/" + "x" * 300


def _settings(idp: IdentityProvider) -> Callable[[str], Settings]:
    return lambda base: base_settings(base, {"idp": oidc_connector(idp.issuer)})


def _rejections(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("next_rejected")]


def test_rd03_invalid_next_falls_back_without_error_page(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authrelay")
    with serve_app(_settings(idp), shell=shell) as app:
        start = app.client.get(f"{app.base}/auth/idp/login", params={"next": EVIL})
        assert start.status_code == 302  # on to the provider: no error page, no oracle
        done = app.client.get(app.client.get(start.headers["location"]).headers["location"])
        assert done.status_code == 303
        assert done.headers["location"] == "/"
        assert app.me()["authenticated"] is True
    records = _rejections(caplog)
    assert records, "the rejected next was not logged"
    for record in records:
        assert record.levelno == logging.INFO
        assert record.name == "authrelay.redirects"
        logged = record.getMessage()[len("next_rejected value=") :]
        assert len(logged) <= 128
        assert EVIL not in record.getMessage()
        assert logged.lstrip("'").startswith("//evil.example/xxx")


def test_rd03_fallback_is_the_configured_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="authrelay.redirects")
    assert safe_next("https://evil.example/", "/home") == "/home"
    assert safe_next("/ok?x=1", "/home") == "/ok?x=1"
    assert len(_rejections(caplog)) == 1


def test_rd04_next_is_checked_again_at_the_callback(idp: IdentityProvider, shell: str) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        location = app.start_login(next="/fine")
        state = query_of(location)["state"]
        store, driver = app.relay.connectors.store, app.relay.sync_driver
        # Someone with write access to the store swaps the stored next.
        tx = driver.run(store.take_transaction(state, "idp"))
        assert tx is not None and tx.next == "/fine"
        tampered = dataclasses.replace(tx, next="https://evil.example/\r\nx")
        assert driver.run(store.put_transaction(state, tampered, ttl=600))
        done = app.client.get(app.client.get(location).headers["location"])
        assert done.status_code == 303
        assert done.headers["location"] == "/"
        assert app.me()["authenticated"] is True


def test_rd04_next_is_checked_at_login_before_it_is_stored(idp: IdentityProvider) -> None:
    with serve_app(_settings(idp)) as app:
        location = app.start_login(next="/\\evil.example")
        state = query_of(location)["state"]
        store, driver = app.relay.connectors.store, app.relay.sync_driver
        tx = driver.run(store.take_transaction(state, "idp"))
    assert tx is not None
    assert tx.next == "/"  # the default was stored, not the raw value
