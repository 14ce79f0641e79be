"""Checks of a connector callback's query that come before anything else is looked at.

Defends against (SECURITY §1, §2): parameter pollution (a repeated ``state``, ``iss``,
``code`` or ``error``, RFC 6749 §3.1), an ambiguous answer carrying both a ``code`` and an
``error`` (RFC 6749 §4.1.2), and a ``code`` outside the RFC 6749 VSCHAR set (control
characters, non-ASCII) being forwarded to the token endpoint. Each is ``invalid_request``
and leaves the login transaction untouched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from ..errors import CallbackError

__all__ = ["VSCHAR", "Untouched", "check_callback_parameters", "unconfigured_issuer"]

logger = logging.getLogger("authrelay.connectors.login")

VSCHAR = re.compile(r"[\x20-\x7e]+")
"""RFC 6749 Appendix A: the characters a ``code`` or a ``state`` may hold."""


class Untouched(CallbackError):
    """A callback refused before its login transaction was consumed: the transaction and
    the browser's transaction cookie stay, so the browser that owns them can still finish."""


def check_callback_parameters(query: Mapping[str, list[str]]) -> None:
    """RFC 6749 §3.1 and §4.1.2: checked before the state or anything else is looked at."""
    for name in ("state", "iss", "code", "error"):
        if len(query.get(name, ())) > 1:
            raise Untouched("invalid_request", f"the callback repeats the {name} parameter")
    if "code" in query and "error" in query:
        raise Untouched("invalid_request", "the callback carries both a code and an error")
    codes = query.get("code")
    if codes and codes[0] and not VSCHAR.fullmatch(codes[0]):
        raise Untouched("invalid_request", "the authorization code has invalid characters")


def unconfigured_issuer(connector: str, iss: str) -> CallbackError:
    """RFC 9207 ``iss`` at a connector without an issuer: say which setting to add."""
    shown = iss[:200] if VSCHAR.fullmatch(iss[:200]) else "(not printable)"
    logger.warning("callback_iss_unconfigured connector=%s iss=%s", connector, shown)
    return CallbackError(
        "invalid_issuer",
        f"the provider sent iss={shown!r} (RFC 9207) but connectors.{connector}.issuer "
        "is not set; set it to the provider's issuer identifier to accept this response",
    )
