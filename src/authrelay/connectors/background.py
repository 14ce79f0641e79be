"""Follow-up flows that must not hold up a response: revocation retries, pinned writes,
token-event hooks.

Defends against: a slow or failing provider delaying a logout (RV-02: the response goes
out, the retries come after), a store outage losing a rotated refresh token (ST-09: the
pinned set is written again in the background), and background failures vanishing
(INV-2: every follow-up is referenced until it ends, and its failure is logged by type,
never with a token).

A flow schedules a follow-up with the effect ``Spawn(name, factory)``; the driver that
runs the flow runs the follow-up (bounded, stopped at shutdown: :mod:`authrelay._spawn`).
This module only reports on them for the relay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = ["Background"]


class Background:
    """The follow-ups of one relay, across its async and sync drivers."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def __repr__(self) -> str:
        return f"Background(pending={self.pending()})"

    def pending(self) -> int:
        """Follow-ups running or queued, in both modes."""
        relay = self.relay
        drivers = (relay._async_driver, relay._sync_driver)  # never creates a driver
        return sum(d.spawner.pending() for d in drivers if d is not None)
