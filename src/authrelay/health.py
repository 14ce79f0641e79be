"""Readiness: can this relay serve requests now? (``relay.ready()``, ``/readyz``).

Ready means the store answers and every identity provider the relay depends on has its
metadata and keys loaded, or loadable now: the bearer issuer's discovery document and
JWKS, and each connector's discovery document. A check reports an error *code* only
(``unreachable``, ``temporarily_unavailable``...), never a URL, a key or a message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._io import Flow, StoreOp
from .errors import AuthRelayError

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["Readiness", "readiness"]

logger = logging.getLogger("authrelay.health")

OK = "ok"


@dataclass(frozen=True, slots=True)
class Readiness:
    """The outcome of a readiness check: ``ok`` and one short status per dependency."""

    checks: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(status == OK for status in self.checks.values())

    def __bool__(self) -> bool:
        return self.ok

    def to_json(self) -> dict[str, object]:
        """``{"status": "ready" | "not_ready", "checks": {...}}``."""
        return {"status": "ready" if self.ok else "not_ready", "checks": dict(self.checks)}


def readiness(relay: Relay) -> Flow[Readiness]:
    """Check the store, the bearer issuer's metadata and JWKS, and connector discovery."""
    checks: dict[str, str] = {}
    try:
        yield StoreOp("get", (relay.settings.store.key_prefix + "readyz",))
    except Exception as exc:  # any backend failure means: not reachable
        logger.warning("readyz_store_unreachable error=%s", type(exc).__name__)
        checks["store"] = "unreachable"
    else:
        checks["store"] = OK
    bearer = relay.bearer
    if bearer is not None:
        warm = getattr(bearer, "warm", None)
        checks["bearer"] = yield from _check(warm() if warm is not None else bearer.metadata())
    registry = getattr(relay, "connectors", None)
    if registry is not None:
        for name, connector in sorted(registry.connectors.items()):
            checks[f"connector:{name}"] = yield from _check(connector.endpoints())
    return Readiness(checks)


def _check(flow: Flow[object]) -> Flow[str]:
    try:
        yield from flow
    except AuthRelayError as exc:
        return exc.error
    except Exception as exc:  # a provider answer the flow could not use
        logger.warning("readyz_check_failed error=%s", type(exc).__name__)
        return "unavailable"
    return OK
