"""Validation of ``next``: where a user lands after login, logout or linking.

Defends against open redirects (RFC 9700 §4.11; OWASP Unvalidated Redirects): absolute
URLs to other hosts, scheme-relative ``//evil.example``, browsers reading ``\\`` as
``/`` (``/\\evil.example``), control characters that ``urllib.parse`` silently strips
(CVE-2022-0391) or that would split a ``Location`` header (``%0d%0a``, RD-05), leading
blanks (CVE-2023-24329), and suffix-matched allowlists (CVE-2021-21291).

Rules (RD-01..RD-05): the **raw** value is checked before any parsing; a relative
reference starts with exactly one ``/`` whose next character is neither ``/`` nor
``\\``; no control characters or backslashes anywhere, before or after one
percent-decode; at most 2048 bytes decoded; absolute URLs only for an exact
``scheme://host[:port]`` in ``allowed_origins``. An invalid value silently falls back to
the default (no error page: no oracle) and is logged at INFO, truncated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

__all__ = ["is_safe_next", "safe_next"]

logger = logging.getLogger("authrelay.redirects")

_MAX_BYTES = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _has_bad_chars(value: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in value)


def _origin(scheme: str, host: str, port: int | None) -> str:
    default = _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}" if port is None or port == default else f"{scheme}://{host}:{port}"


def _allowed_absolute(value: str, allowed_origins: Iterable[str]) -> bool:
    allowed = {origin.rstrip("/").lower() for origin in allowed_origins}
    if not allowed:
        return False
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        return False
    if parts.password is not None:
        return False
    return _origin(parts.scheme, parts.hostname.lower(), port) in allowed


def is_safe_next(value: str, allowed_origins: Iterable[str] = ()) -> bool:
    """True if ``value`` may be used as a redirect target (RD-01, RD-02, RD-05)."""
    # RD-02: every check below runs on the raw string before urllib sees it.
    if not value or _has_bad_chars(value):
        return False
    try:
        decoded = unquote(value, errors="strict") if "%" in value else value
    except UnicodeError:
        return False
    if len(decoded.encode("utf-8", "surrogatepass")) > _MAX_BYTES or _has_bad_chars(decoded):
        return False
    if value.startswith("/"):
        return value[1:2] not in ("/", "\\") and not decoded.startswith(("//", "/\\"))
    if value != value.strip() or not value.lower().startswith(("http://", "https://")):
        return False
    return _allowed_absolute(value, allowed_origins)


def safe_next(value: str | None, default: str, allowed_origins: Iterable[str] = ()) -> str:
    """``value`` when it is a safe redirect target, else ``default`` (RD-03)."""
    if value is None or value == "":
        return default
    if is_safe_next(value, allowed_origins):
        return value
    logger.info("next_rejected value=%.128r", value)
    return default
