"""Validation of ``next``: where a user lands after login, logout or linking.

Defends against open redirects (RFC 9700 §4.11; OWASP Unvalidated Redirects): absolute
URLs to other hosts, scheme-relative ``//evil.example``, browsers reading ``\\`` as
``/`` (``/\\evil.example``), control characters that ``urllib.parse`` silently strips
(CVE-2022-0391) or that would split a ``Location`` header (``%0d%0a``, RD-05), leading
blanks (CVE-2023-24329), suffix-matched allowlists (CVE-2021-21291), encoded slashes and
dots (``/%2f/``, ``/.%2e/``), dot segments (``/.//evil``), and Unicode look-alikes of
``/`` and ``.`` (U+FF0F, U+2215, U+3002) that a browser or a proxy may fold.

Rules (RD-01..RD-05): the **raw** value is checked before any parsing and must be plain
URI characters (RFC 3986: printable ASCII, no blank, ``\\``, ``"``, ``<``, ``>``, ``^``,
`````, ``{``, ``|``, ``}``); its path must be a plain absolute path that percent-decoding
once and resolving dot segments leave unchanged (so no ``%`` and no ``.``/``..``
segment in the path) and that starts with exactly one ``/``; the query and fragment may
hold well-formed percent-escapes, but none that decodes to a control character or a
backslash; at most 2048 bytes; absolute URLs only for an exact ``scheme://host[:port]``
in ``allowed_origins``, with the same path rules. An invalid value silently falls back
to the default (no error page: no oracle) and is logged at INFO, truncated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

__all__ = ["is_safe_next", "normalize_path", "safe_next"]

logger = logging.getLogger("authrelay.redirects")

_MAX_BYTES = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 §3.3 pchar without pct-encoded, plus "/": what a plain path may hold.
_PATH = re.compile(r"(?:/[A-Za-z0-9\-._~!$&'()*+,;=:@]*)+")
# RFC 3986 §3.4/§3.5: query and fragment, with well-formed percent-escapes only.
_QUERY = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
_ORIGIN = re.compile(r"(https?)://([A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?", re.ASCII)


def _has_bad_chars(value: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in value)


def normalize_path(path: str) -> str:
    """``path`` percent-decoded once with its dot segments resolved (RFC 3986 §5.2.4)."""
    decoded = unquote(path, errors="surrogateescape")
    out: list[str] = []
    segments = decoded.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/".join(out)


def _plain_path(path: str) -> bool:
    """A plain absolute path: one leading ``/``, unchanged by :func:`normalize_path`."""
    return (
        _PATH.fullmatch(path) is not None
        and not path.startswith("//")
        and normalize_path(path) == path
        and not any(s.partition(";")[0] in (".", "..") for s in path.split("/"))  # /..;/
    )


def _plain_rest(rest: str) -> bool:
    """``?query#fragment``: plain characters and escapes that decode to nothing harmful."""
    before, _, fragment = rest.partition("#")
    for part in (before[1:], fragment):
        if _QUERY.fullmatch(part) is None:
            return False
        if "%" in part and _has_bad_chars(unquote(part, errors="surrogateescape")):
            return False
    return True


def _split(value: str) -> tuple[str, str]:
    """``(path, "?query#fragment")`` of a relative reference."""
    cut = len(value)
    for mark in ("?", "#"):
        at = value.find(mark)
        if 0 <= at < cut:
            cut = at
    return value[:cut], value[cut:]


def _same_site(value: str) -> bool:
    path, rest = _split(value)
    return _plain_path(path) and _plain_rest(rest)


def _allowed_absolute(value: str, allowed_origins: Iterable[str]) -> bool:
    allowed = {origin.rstrip("/").lower() for origin in allowed_origins}
    if not allowed:
        return False
    match = _ORIGIN.match(value)
    if match is None:
        return False
    scheme, host, port_text = match.group(1), match.group(2).lower(), match.group(3)
    path, rest = _split(value[match.end() :])
    if path and not _plain_path(path):
        return False
    if not _plain_rest(rest):
        return False
    try:
        parts = urlsplit(value)  # a second opinion: urllib must read the same origin
        port = parts.port
    except ValueError:
        return False
    if parts.hostname != host or parts.username is not None or parts.password is not None:
        return False
    port_number = int(port_text) if port_text is not None else None
    if port != port_number:
        return False
    default = _DEFAULT_PORTS[scheme]
    origin = (
        f"{scheme}://{host}"
        if port_number is None or port_number == default
        else f"{scheme}://{host}:{port_number}"
    )
    return origin in allowed


def is_safe_next(value: str, allowed_origins: Iterable[str] = ()) -> bool:
    """True if ``value`` may be used as a redirect target (RD-01, RD-02, RD-05)."""
    # RD-02: every check below runs on the raw string before urllib sees it.
    if not value or len(value) > _MAX_BYTES or not value.isascii():
        return False
    if value.startswith("/"):
        return _same_site(value)
    if not value.startswith(("http://", "https://")):
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
