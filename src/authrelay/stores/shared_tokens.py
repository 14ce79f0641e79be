"""Sealed shared records of service tokens (client credentials, token exchange, on-behalf-of).

When several worker processes share a store (SQLite or Redis), a service token acquired
by one of them is written here so the others use it instead of asking the token
endpoint again (CL-01, RT-02 applied to service flows).

Defends against:

- tokens readable at rest (ST-01): every value is sealed with AES-256-GCM under a key
  derived for this purpose only (``authrelay-service-token-v1``); the associated data is
  the record key and the schema version, so a sealed record copied under another key
  (another client, audience or subject) does not open (cut-and-paste);
- raw tokens or user ids in keys (ST-06, TX-03): a key is ``{prefix}svc:`` followed by
  SHA-256 over the canonical parts the caller gives (client, token endpoint, audience,
  resource, sorted scopes; for exchanged tokens SHA-256 of the subject token, never the
  token itself);
- a failure read as a miss (ST-04): backend errors propagate as
  :class:`~authrelay.errors.TokenStoreUnavailable`; a record that does not open or
  parse is a miss for this request, logged with a fingerprint of its key and never
  deleted (ST-05);
- stale material served or kept: a record carries the moment its token stops being
  used (``use_until``: expiry minus the service's margin) and is written with a TTL at
  the token's expiry, so the store drops it by itself.

Records are short-lived (one token lifetime), so they are not re-sealed on key
rotation; a record sealed with a retired key is simply a miss and is acquired again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .._crypto import DecryptionFailed, KeyRing, fingerprint_of
from .._io import Flow, StoreOp
from .._types import Clock
from ..tokens.model import AccessToken

__all__ = ["PURPOSE", "SharedToken", "SharedTokenStore"]

logger = logging.getLogger("authrelay.store.shared")

PURPOSE = "authrelay-service-token-v1"
"""The key-derivation purpose of the sealing keys (no other record uses it)."""
SCHEMA = "v1"


@dataclass(frozen=True, slots=True)
class SharedToken:
    """A token read from the shared store, and until when it may be used."""

    token: AccessToken
    use_until: float


class SharedTokenStore:
    """Sealed service-token records over the versioned backend, as flows the drivers run."""

    __slots__ = ("_clock", "_prefix", "_ring")

    def __init__(self, ring: KeyRing, *, prefix: str = "authrelay:", clock: Clock = time.time):
        self._ring = ring
        self._prefix = prefix
        self._clock = clock

    def __repr__(self) -> str:
        return f"SharedTokenStore(prefix={self._prefix!r})"

    # -- keys (ST-06) -------------------------------------------------------------------

    def key_for(self, parts: Sequence[str | Sequence[str] | None]) -> str:
        """The record key of a token described by ``parts`` (digested, never stored raw)."""
        canonical = json.dumps(list(parts), separators=(",", ":"), sort_keys=True)
        return f"{self._prefix}svc:{hashlib.sha256(canonical.encode()).hexdigest()}"

    def lock_key(self, key: str) -> str:
        """The cross-process lock guarding the acquisition of the record at ``key``."""
        return f"{self._prefix}svclock:{key.rsplit(':', 1)[-1]}"

    def owns(self, key: str) -> bool:
        """True when ``key`` names a service-token record of this store."""
        return key.startswith(f"{self._prefix}svc:")

    def _aad(self, key: str) -> bytes:
        return f"{key}|service-token|{SCHEMA}".encode()

    # -- records ------------------------------------------------------------------------

    def load(self, key: str) -> Flow[tuple[SharedToken | None, int]]:
        """The record at ``key`` and its version (0 when absent; unreadable: ``(None, v)``)."""
        stored: tuple[bytes, int] | None = yield StoreOp("get", (key,))
        if stored is None:
            return None, 0
        sealed, version = stored
        try:
            plain = self._ring.open(sealed, self._aad(key))
            data = json.loads(plain)
            token = AccessToken(
                str(data["at"]),
                float(data["exp"]),
                str(data.get("type") or "Bearer"),
                tuple(str(s) for s in data.get("scopes") or ()),
            )
            record = SharedToken(token, float(data["use"]))
        except DecryptionFailed:
            logger.warning(
                "store_decrypt_failed key_id=%s fingerprint=%s",
                self._ring.key_id_of(sealed) if len(sealed) >= 5 else "-",
                fingerprint_of(key),
            )
            return None, int(version)
        except (ValueError, KeyError, TypeError):
            logger.warning("store_record_malformed fingerprint=%s", fingerprint_of(key))
            return None, int(version)
        return record, int(version)

    def save(
        self, key: str, token: AccessToken, use_until: float, *, expected_version: int | None
    ) -> Flow[int | None]:
        """Write ``token`` with compare-and-set and a TTL at its expiry; None on a lost race."""
        ttl = token.expires_at - self._clock()
        if ttl <= 0:
            return None
        plain = json.dumps(
            {
                "at": token.value,
                "exp": token.expires_at,
                "use": use_until,
                "type": token.token_type,
                "scopes": list(token.scopes),
            },
            separators=(",", ":"),
        ).encode()
        written: int | None = yield StoreOp(
            "put",
            (key, self._ring.seal(plain, self._aad(key))),
            {"ttl": ttl, "expected_version": expected_version},
        )
        return written

    def delete(self, key: str, *, expected_version: int | None = None) -> Flow[bool]:
        """Remove the record (at ``expected_version`` when given); False when it was not."""
        deleted: bool = yield StoreOp("delete", (key,), {"expected_version": expected_version})
        return bool(deleted)
