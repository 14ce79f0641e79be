"""Shared fixtures of the identity tests: a small loopback identity provider, a clock, a driver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bearer_idp import Dispatcher, FakeClock, MiniIdP, driver_for_test, fresh_idp, running_server

from authrelay._io import SyncDriver


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Dispatcher]]:
    yield from running_server()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def idp(server: tuple[str, Dispatcher], clock: FakeClock) -> MiniIdP:
    return fresh_idp(server, clock)


@pytest.fixture
def driver() -> Iterator[SyncDriver]:
    yield from driver_for_test()
