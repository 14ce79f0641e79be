"""The values token flows produce: an access token and a parsed token-endpoint answer.

Defends against secrets leaking through ``repr``/``str`` (INV-1): neither
:class:`AccessToken` nor :class:`TokenResponse` ever prints a token, only a
fingerprint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._crypto import fingerprint_of

__all__ = ["AccessToken", "TokenResponse", "usable_token"]

# RFC 6749 A.12/A.17: a token is 1*VSCHAR (%x20-7E). It goes out in an ``Authorization:
# Bearer`` header (RFC 6750 §2.1) or a form field, so the space is refused too: no CR/LF,
# no control character, nothing outside ASCII can reach a request to another party.
_TOKEN = re.compile(r"[\x21-\x7e]+")


def usable_token(value: object) -> bool:
    """Whether a token from a token endpoint can be sent on as it is (RFC 6749 A.12)."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An access token and when it stops being valid (clock seconds)."""

    value: str = field(repr=False)
    expires_at: float
    token_type: str = "Bearer"
    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"AccessToken(fingerprint={fingerprint_of(self.value)!r}, "
            f"expires_at={self.expires_at!r}, scopes={list(self.scopes)!r})"
        )


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token-endpoint answer (RFC 6749 §5.1), checked and normalised.

    ``expires_in`` is None when the provider did not say; ``raw`` is the whole JSON object
    (never printed).
    """

    access_token: str = field(repr=False)
    token_type: str
    expires_in: float | None
    scope: tuple[str, ...] | None
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    issued_token_type: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"TokenResponse(fingerprint={fingerprint_of(self.access_token)!r}, "
            f"token_type={self.token_type!r}, expires_in={self.expires_in!r})"
        )
