"""Token events: ``on_token_event(event)`` and the webhook queue.

Defends against: token material leaking through an event (an event carries the kind,
the connector, the app's user id and a reason, never a token: INV-1), an application
hook blocking the event loop (under ASGI a plain function runs in a worker thread, a
coroutine function is awaited), a failing hook breaking a refresh (its failure is
logged by type and the refresh goes on), and a lost webhook event (it is queued in the
store before the flow goes on, see :mod:`.webhook`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from .._crypto import random_token
from .._io import Flow, Hook, Spawn
from ..errors import TokenStoreUnavailable

if TYPE_CHECKING:
    from .registry import ConnectorRegistry
    from .webhook import WebhookQueue

__all__ = ["EVENT_KINDS", "EventKind", "TokenEvent", "TokenEventHook", "TokenEvents"]

logger = logging.getLogger("authrelay.connectors.events")

EventKind = Literal["refreshed", "rotated", "refresh_failed", "revoked", "reauthorization_required"]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
TokenEventHook = Callable[["TokenEvent"], Any]
"""``on_token_event(event)``: a plain function, or (under ASGI) a coroutine function."""


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """Something happened to a user's connector tokens. Never holds a token.

    ``kind``: ``refreshed`` (new access token, same refresh token), ``rotated`` (new
    refresh token too), ``refresh_failed`` (the refresh did not happen; ``reason`` is the
    error code), ``revoked`` (the tokens were deleted and revoked, e.g. at logout),
    ``reauthorization_required`` (the provider refused the refresh token: the user must
    connect again). ``id`` is unique per event: the webhook's delivery id.
    """

    kind: EventKind
    connector: str
    user: str
    reason: str
    at: float
    id: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the webhook body)."""
        return {
            "id": self.id,
            "type": self.kind,
            "connector": self.connector,
            "user": self.user,
            "reason": self.reason,
            "occurred_at": self.at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenEvent:
        """Inverse of :meth:`to_dict`."""
        kind = data["type"]
        if kind not in EVENT_KINDS:
            raise ValueError("unknown event type")
        return cls(
            kind=kind,
            connector=str(data["connector"]),
            user=str(data["user"]),
            reason=str(data["reason"]),
            at=float(data["occurred_at"]),
            id=str(data["id"]),
        )


class TokenEvents:
    """Emits token events to the application hook and the webhook queue."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        settings = registry.relay.settings
        self.registry = registry
        self._clock = registry.relay.clock
        self.hook: TokenEventHook | None = settings.on_token_event
        self.webhook: WebhookQueue | None = None
        if settings.events is not None:
            from .webhook import WebhookQueue

            self.webhook = WebhookQueue(registry.store, settings.events, clock=self._clock)
        self.wake: Callable[[], None] = _nothing
        """Set by the background runner: deliver queued events now."""

    def __repr__(self) -> str:
        return f"TokenEvents(hook={self.hook is not None}, webhook={self.webhook is not None})"

    def emit(self, kind: EventKind, connector: str, user: str, reason: str) -> Flow[None]:
        """Queue the event for the webhook, then run the hook after the current flow."""
        event = TokenEvent(kind, connector, user, reason, self._clock(), random_token(16))
        logger.info("token_event type=%s connector=%s reason=%s", kind, connector, reason)
        self.registry.relay.metrics.incr("token_events", target=connector, flow=kind)
        if self.webhook is not None:
            try:
                yield from self.webhook.enqueue(event)
            except TokenStoreUnavailable:
                logger.error("event_enqueue_failed type=%s connector=%s", kind, connector)
            else:
                self.wake()  # sets an event: safe on the loop and in any thread
        if self.hook is not None:
            yield Spawn("token-event", lambda: self._run_hook(event))

    def _run_hook(self, event: TokenEvent) -> Flow[None]:
        hook = self.hook
        if hook is None:
            return
        try:
            yield Hook(hook, (event,))
        except Exception as exc:
            if isinstance(exc, TypeError) and "under WSGI" in str(exc):
                logger.error(
                    "on_token_event_async_under_wsgi: the hook is a coroutine function, which "
                    "only the ASGI middleware can await; give the WSGI middleware a plain "
                    "function"
                )
                return
            logger.error(
                "on_token_event_failed type=%s connector=%s error=%s",
                event.kind,
                event.connector,
                type(exc).__name__,
            )


def _nothing() -> None:
    return None
