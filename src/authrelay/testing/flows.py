"""Drive an authrelay flow effect by effect, without a driver.

authrelay's protocol code is written as generator *flows* that yield effects (an
``httpx.Request`` to send, a store operation, a ``Sleep``...) and receive their results.
:class:`FlowStepper` lets a test play the driver: look at each effect, answer it (or
throw a failure into the flow) and read the result, with no network and no waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

__all__ = ["FlowStepper", "run_flow"]

T = TypeVar("T")
_UNSET: Any = object()


class FlowStepper(Generic[T]):
    """Play the driver for one flow.

    ``next()`` starts the flow and returns its first effect; ``send(value)`` answers the
    current effect and returns the next one; ``throw(exc)`` raises ``exc`` where the flow
    is waiting (a transport failure, say). When the flow ends, ``send``/``throw`` return
    None, :attr:`done` is True and :attr:`result` holds its value; an exception the flow
    lets out propagates from the call that caused it.

    >>> from authrelay._io import Sleep
    >>> def backoff():
    ...     yield Sleep(1.0)
    ...     yield Sleep(2.0)
    ...     return "gave up"
    >>> stepper = FlowStepper(backoff())
    >>> stepper.next()
    Sleep(seconds=1.0)
    >>> stepper.send(None)
    Sleep(seconds=2.0)
    >>> stepper.send(None) is None, stepper.result
    (True, 'gave up')
    """

    __slots__ = ("_flow", "_result", "effect", "effects")

    def __init__(self, flow: Generator[Any, Any, T]) -> None:
        self._flow = flow
        self._result: Any = _UNSET
        self.effect: Any = None
        """The effect the flow waits on (None before :meth:`next` and after the end)."""
        self.effects: list[Any] = []
        """Every effect yielded so far, in order."""

    def __repr__(self) -> str:
        return f"FlowStepper(effects={len(self.effects)}, done={self.done})"

    @property
    def done(self) -> bool:
        """The flow has returned."""
        return self._result is not _UNSET

    @property
    def result(self) -> T:
        """The flow's return value; ``RuntimeError`` while it still runs."""
        if self._result is _UNSET:
            raise RuntimeError("the flow has not finished")
        return self._result  # type: ignore[no-any-return]

    def next(self) -> Any:
        """Start the flow; return its first effect (None if it returned at once)."""
        return self.send(None)

    def send(self, value: Any) -> Any:
        """Answer the current effect with ``value``; return the next effect or None."""
        return self._step(lambda: self._flow.send(value))

    def throw(self, exc: BaseException) -> Any:
        """Raise ``exc`` in the flow where it waits; return the next effect or None."""
        return self._step(lambda: self._flow.throw(exc))

    def _step(self, step: Callable[[], Any]) -> Any:
        if self.done:
            raise RuntimeError("the flow has finished")
        try:
            self.effect = step()
        except StopIteration as stop:
            self.effect = None
            self._result = stop.value
            return None
        self.effects.append(self.effect)
        return self.effect


def run_flow(flow: Generator[Any, Any, T], respond: Callable[[Any], Any]) -> T:
    """Run ``flow`` to the end, answering each effect with ``respond(effect)``.

    An exception raised by ``respond`` is thrown into the flow, as a driver does with a
    failed effect; the flow's value is returned.

    >>> from authrelay._io import Sleep
    >>> def twice():
    ...     first = yield Sleep(1.0)
    ...     second = yield Sleep(2.0)
    ...     return first + second
    >>> run_flow(twice(), lambda effect: effect.seconds * 10)
    30.0
    """
    stepper = FlowStepper(flow)
    effect = stepper.next()
    while not stepper.done:
        try:
            answer = respond(effect)
        except Exception as exc:
            effect = stepper.throw(exc)
        else:
            effect = stepper.send(answer)
    return stepper.result
