"""Strict parsing of the ``Cookie`` request header (SE-09).

Defends against cookie tossing (a sibling subdomain planting a second cookie with our
name: when the name appears more than once, every value is ignored), nameless cookies
(``=__Host-x=y``, Werkzeug CVE-2023-23934) and oversized headers (E-TOOBIG is decided by
the caller). Only the one cookie we look for is extracted; the rest is not parsed.
"""

from __future__ import annotations

import logging

__all__ = ["find_cookie"]

_ABSENT = None

logger = logging.getLogger("authrelay.cookies")


def find_cookie(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, or None.

    None when absent, nameless, or present more than once (anti cookie-tossing; logged
    once at WARNING, by name and count).
    """
    if name not in header:
        return _ABSENT
    found: str | None = None
    count = 0
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if not sep or key.strip() != name:
            continue
        count += 1
        found = value.strip()
    if count > 1:  # the name only: never a value (INV-1)
        logger.warning("cookie_duplicated name=%s count=%d", name, count)
    if count != 1 or not found:
        return _ABSENT
    if found.startswith('"') and found.endswith('"') and len(found) >= 2:
        found = found[1:-1]
    return found
