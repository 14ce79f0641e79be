"""``FakeClock`` and ``FlowStepper`` / ``run_flow``: the helpers for driving time and flows."""

from __future__ import annotations

import threading

import httpx
import pytest

from authrelay._io import Flow, Sleep, TransportFailure
from authrelay.testing import FakeClock, FlowStepper, run_flow


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(1_000.0)
    assert clock() == clock.now == 1_000.0
    assert clock.advance(2.5) == 1_002.5
    clock.set(5_000.0)
    assert clock() == 5_000.0
    clock.now += 10  # the attribute form older tests use
    assert clock() == 5_010.0
    assert repr(clock) == "FakeClock(5010.0)"


def test_fake_clock_advances_from_many_threads_without_losing_steps() -> None:
    clock = FakeClock(0.0)

    def tick() -> None:
        for _ in range(2_000):
            clock.advance(1)

    threads = [threading.Thread(target=tick) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock() == 16_000.0


def _retrying() -> Flow[str]:
    for delay in (1.0, 2.0):
        try:
            response: httpx.Response = yield httpx.Request("GET", "https://idp.test/x")
        except TransportFailure:
            yield Sleep(delay)
        else:
            return response.text
    return "gave up"


def test_stepper_shows_each_effect_and_delivers_answers_and_failures() -> None:
    stepper = FlowStepper(_retrying())
    assert isinstance(stepper.next(), httpx.Request)
    with pytest.raises(RuntimeError, match="not finished"):
        stepper.result  # noqa: B018
    failure = TransportFailure("refused", reached=False, timeout=False)
    assert stepper.throw(failure) == Sleep(1.0)
    assert isinstance(stepper.send(None), httpx.Request)
    assert stepper.send(httpx.Response(200, text="ok")) is None
    assert stepper.done and stepper.result == "ok"
    assert [type(e).__name__ for e in stepper.effects] == ["Request", "Sleep", "Request"]
    with pytest.raises(RuntimeError, match="has finished"):
        stepper.send(None)


def test_an_error_the_flow_lets_out_propagates_from_the_step() -> None:
    def strict() -> Flow[None]:
        yield Sleep(0)
        raise ValueError("bad answer")

    stepper = FlowStepper(strict())
    stepper.next()
    with pytest.raises(ValueError, match="bad answer"):
        stepper.send(None)


def test_run_flow_throws_what_respond_raises() -> None:
    def respond(effect: object) -> object:
        if isinstance(effect, httpx.Request):
            raise TransportFailure("refused", reached=False, timeout=False)
        return None

    assert run_flow(_retrying(), respond) == "gave up"
