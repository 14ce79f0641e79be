"""The ``[events]`` webhook: a loopback receiver that fails the first two deliveries."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from authrelay import ConfigurationError, Relay, Settings
from authrelay._io import SyncDriver
from authrelay.connectors.webhook import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    sign,
    verify_signature,
)
from authrelay.testing import FakeClock, serve_asgi

SECRET = "webhook-test-secret-0123456789"
KEY = "events-tests-secret-key-000000000"


@dataclass
class Receiver:
    """Answers 500 to the first ``fail`` deliveries, then 204; keeps what it got."""

    fail: int = 2
    got: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    url: str = ""

    async def hook(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        status = 500 if len(self.got) < self.fail else 204
        self.got.append((dict(request.headers), body, status))
        return PlainTextResponse("", status)

    def accepted(self) -> list[tuple[dict[str, str], bytes, int]]:
        return [item for item in self.got if item[2] == 204]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    app = Starlette(routes=[Route("/hook", found.hook, methods=["POST"])])
    with serve_asgi(app) as base:
        found.url = f"{base}/hook"
        yield found


def _relay(url: str, store: str = "memory://", clock: Any = None, **events: Any) -> Relay:
    settings = Settings.model_validate(
        {
            "secret_keys": [KEY],
            "public_base_url": "http://127.0.0.1:1",
            "http": {"allow_insecure_loopback": True},
            "store": {"url": store, "timeout": 5.0},
            "events": {"url": url, "secret": SECRET, **events},
            "connectors": {
                "idp": {
                    "standard": "oauth2",
                    "authorization_endpoint": "https://idp.example/authorize",
                    "token_endpoint": "https://idp.example/token",
                    "userinfo_endpoint": "https://idp.example/userinfo",
                    "client_id": "c",
                    "client_secret": "s",
                }
            },
        }
    )
    return Relay(settings) if clock is None else Relay(settings, clock=clock)


def _emit(relay: Relay, kind: Any = "rotated") -> None:
    relay.sync_driver.run(relay.connectors.events.emit(kind, "idp", "user-1", "refresh_ahead"))


def test_fails_twice_then_delivers_signed_with_one_delivery_id(receiver: Receiver) -> None:
    clock = FakeClock(1_700_000_000.0)
    relay = _relay(receiver.url, clock=clock, backoff="10s")
    queue = relay.connectors.events.webhook
    assert queue is not None
    sender = SyncDriver(httpx.Client(), relay.backend)
    try:
        _emit(relay)
        assert sender.run(queue.deliver_due()) == 0  # 500
        assert sender.run(queue.deliver_due()) == 0  # not due again yet: no request
        assert len(receiver.got) == 1
        clock.advance(10)
        assert sender.run(queue.deliver_due()) == 0  # 500
        clock.advance(19)
        assert sender.run(queue.deliver_due()) == 0  # the backoff doubled
        assert len(receiver.got) == 2
        clock.advance(1)
        assert sender.run(queue.deliver_due()) == 1
        assert sender.run(queue.pending()) == 0
    finally:
        sender.client.close()
        relay.close()
    assert [status for _, _, status in receiver.got] == [500, 500, 204]
    assert len({headers[DELIVERY_HEADER.lower()] for headers, _, _ in receiver.got}) == 1
    headers, body, _ = receiver.got[-1]
    assert verify_signature(SECRET.encode(), headers[SIGNATURE_HEADER.lower()], body, now=clock())
    assert not verify_signature(b"another-secret-000000", headers[SIGNATURE_HEADER.lower()], body)
    assert not verify_signature(
        SECRET.encode(), headers[SIGNATURE_HEADER.lower()], body + b" ", now=clock()
    )
    event = json.loads(body)
    assert event["type"] == headers[EVENT_HEADER.lower()] == "rotated"
    assert (event["connector"], event["user"], event["reason"]) == (
        "idp",
        "user-1",
        "refresh_ahead",
    )
    assert event["id"] == headers[DELIVERY_HEADER.lower()]


def test_signature_scheme_is_hmac_sha256_of_t_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k" * 16, b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"k" * 16, 1_700_000_000, b"{}") == f"t=1700000000,v1={expected}"
    assert not verify_signature(b"k" * 16, sign(b"k" * 16, 1, b"{}"), b"{}", now=1_700_000_000)


def test_dead_letter_after_max_attempts_is_logged_and_kept(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail = 100
    clock = FakeClock(1_700_000_000.0)
    relay = _relay(receiver.url, clock=clock, max_attempts=2, backoff="1s")
    queue = relay.connectors.events.webhook
    assert queue is not None
    sender = SyncDriver(httpx.Client(), relay.backend)
    try:
        _emit(relay, "refresh_failed")
        with caplog.at_level(logging.WARNING, "authrelay.connectors.webhook"):
            sender.run(queue.deliver_due())
            clock.advance(1)
            sender.run(queue.deliver_due())
            clock.advance(1000)
            sender.run(queue.deliver_due())
        dead = sender.run(queue.dead_letters())
        assert sender.run(queue.pending()) == 0
    finally:
        sender.client.close()
        relay.close()
    assert len(receiver.got) == 2
    assert len(dead) == 1
    assert dead[0]["attempts"] == 2 and dead[0]["last_error"] == "status_500"
    assert dead[0]["event"]["type"] == "refresh_failed"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(" ")[0] for r in errors] == ["event_dead_letter"]


def test_events_url_must_be_https_or_loopback_and_the_secret_long() -> None:
    with pytest.raises(ConfigurationError) as info:
        _relay("http://hooks.example/x")
    assert "events.url" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        Settings.model_validate({"events": {"url": "https://hooks.example/x", "secret": "short"}})
    assert "events.secret" in str(info.value)
    assert "short" not in str(info.value)


def _wait(condition: Any, what: str) -> None:
    for _ in range(3000):
        if condition():
            return
        threading.Event().wait(0.01)
    pytest.fail(f"timed out waiting for {what}")


def test_a_restarted_sender_on_the_same_store_delivers_the_queued_event(
    receiver: Receiver, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'events.db'}"
    # A long first backoff: the first sender stops before it retries.
    first = _relay(receiver.url, store, backoff="2s", poll_interval="0.1s")
    assert first.start_background()  # the WSGI mode: a daemon thread
    _emit(first)
    _wait(lambda: len(receiver.got) >= 1, "the first delivery")
    first.close()  # the process stops with the event still queued
    assert not first.connectors.maintenance.running
    assert len(receiver.got) == 1

    second = _relay(receiver.url, store, backoff="0.2s", poll_interval="0.1s")
    try:
        assert second.sync_driver.run(second.connectors.events.webhook.pending()) == 1  # type: ignore[union-attr]
        second.start_background()
        _wait(lambda: receiver.accepted(), "a delivery the receiver accepts")
    finally:
        second.close()
    assert [status for _, _, status in receiver.got] == [500, 500, 204]
    ids = {headers[DELIVERY_HEADER.lower()] for headers, _, _ in receiver.got}
    assert len(ids) == 1
    headers, body, _ = receiver.accepted()[0]
    assert verify_signature(SECRET.encode(), headers[SIGNATURE_HEADER.lower()], body)
    assert json.loads(body)["type"] == "rotated"
