"""``retry_idempotent``: idempotent downstream requests retried after 429/502/503/504.

A real downstream on loopback answers from a script and records when each request came,
so the tests see exactly how many requests were sent and how long the client waited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from authrelay.principal import ANONYMOUS, NO_CREDENTIALS
from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.servers import serve_asgi


class Flaky:
    """Answers each request with the next scripted ``(status, headers)``, then 200."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.seen: list[tuple[str, float, bool]] = []
        methods = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH"]
        self.app = Starlette(routes=[Route("/flaky", self.answer, methods=methods)])

    async def answer(self, request: Request) -> PlainTextResponse:
        authorized = request.headers.get("authorization", "").startswith("Bearer ")
        self.seen.append((request.method, time.monotonic(), authorized))
        status, headers = self.script.pop(0) if self.script else (200, {})
        return PlainTextResponse("busy" if status != 200 else "ok", status, headers=headers)


@pytest.fixture(scope="module")
def flaky_server() -> Iterator[tuple[Flaky, str]]:
    flaky = Flaky()
    with serve_asgi(flaky.app) as url:
        yield flaky, url


@pytest.fixture
def flaky(flaky_server: tuple[Flaky, str]) -> Flaky:
    flaky_server[0].script.clear()
    flaky_server[0].seen.clear()
    return flaky_server[0]


@pytest.fixture
def relay(
    make_relay: Callable[..., tuple[Relay, FakeClock]], flaky_server: tuple[Flaky, str]
) -> Relay:
    changes = {"base_url": flaky_server[1], "retry_idempotent": True}
    return make_relay(services={"billing": changes, "keyed": changes})[0]


def _get(relay: Relay, method: str = "GET", service: str = "billing") -> int:
    client = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=False)[service]
    return int(client.request(method, "/flaky").status_code)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_idempotent_request_is_retried_until_it_succeeds(
    relay: Relay, flaky: Flaky, status: int
) -> None:
    flaky.script[:] = [(status, {}), (status, {})]
    assert _get(relay) == 200
    assert [method for method, _, _ in flaky.seen] == ["GET"] * 3
    assert all(authorized for _, _, authorized in flaky.seen)  # every attempt authorized


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PUT", "DELETE"])
def test_every_idempotent_method_is_retried(relay: Relay, flaky: Flaky, method: str) -> None:
    flaky.script[:] = [(503, {})]
    assert _get(relay, method) == 200
    assert len(flaky.seen) == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_requests_are_never_repeated(
    relay: Relay, flaky: Flaky, method: str
) -> None:
    flaky.script[:] = [(503, {})]
    assert _get(relay, method) == 503
    assert len(flaky.seen) == 1


def test_retries_are_bounded(relay: Relay, flaky: Flaky) -> None:
    flaky.script[:] = [(503, {})] * 5
    assert _get(relay) == 503
    assert len(flaky.seen) == 3  # the request and two retries


def test_retry_after_seconds_are_waited_for(relay: Relay, flaky: Flaky) -> None:
    flaky.script[:] = [(503, {"retry-after": "1"})]
    assert _get(relay) == 200
    first, second = (at for _, at, _ in flaky.seen)
    assert second - first >= 1.0  # asked for 1 s: not sooner


def test_retry_after_as_an_http_date_is_waited_for(relay: Relay, flaky: Flaky) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    flaky.script[:] = [(429, {"retry-after": when})]
    assert _get(relay) == 200
    first, second = (at for _, at, _ in flaky.seen)
    assert second - first >= 1.5  # about 3 s away, at the date's one-second resolution


def test_a_retry_after_of_look_alike_digits_falls_back_to_the_backoff(
    relay: Relay, flaky: Flaky
) -> None:
    flaky.script[:] = [(503, {"retry-after": "\u00b2"})]  # "²": str.isdigit, but not a number
    assert _get(relay) == 200
    assert len(flaky.seen) == 2


def test_a_retry_after_beyond_the_limit_returns_the_answer(relay: Relay, flaky: Flaky) -> None:
    flaky.script[:] = [(503, {"retry-after": "120"})]
    assert _get(relay) == 503
    assert len(flaky.seen) == 1


def test_off_by_default(
    make_relay: Callable[..., tuple[Relay, FakeClock]],
    flaky_server: tuple[Flaky, str],
    flaky: Flaky,
) -> None:
    relay, _ = make_relay(services={"billing": {"base_url": flaky_server[1]}})
    flaky.script[:] = [(503, {})]
    assert _get(relay) == 503
    assert len(flaky.seen) == 1


def test_async_client_retries_too(relay: Relay, flaky: Flaky) -> None:
    flaky.script[:] = [(502, {}), (504, {})]

    async def scenario() -> Any:
        client = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=True)
        response = await client["keyed"].get("/flaky")
        await relay.aclose()
        return response.status_code

    assert anyio.run(scenario) == 200
    assert len(flaky.seen) == 3
