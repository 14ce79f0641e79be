"""Sealed records on the versioned key-value store: user tokens, identity links, profiles,
connector records and login transactions, as sans-IO flows.

Defends against:

- tokens readable at rest (ST-01): every value is sealed with AES-256-GCM under a key
  derived for this purpose; the associated data binds it to ``(namespace, principal,
  issuer, connector, kind, schema version)``, so a ciphertext copied to another user's
  or connector's key does not open (cut-and-paste);
- a bad key wiping data (ST-05): a value that cannot be opened is logged
  (``store_decrypt_failed`` with key id and fingerprint) and read as a miss; it is never
  deleted here; rotation re-seals lazily with the first key on read (ST-03);
- raw tokens in keys (ST-06): keys hold SHA-256 digests of user ids and states only;
- lost updates (RT-01, ST-10): writes of token sets are compare-and-set on the record
  version; :meth:`TokenStore.lock_key` names the lock that
  :func:`~authrelay.stores.locks.single_flight` takes so one refresh per (user,
  connector) runs across processes (RT-02).

Backend failures propagate as :class:`~authrelay.errors.TokenStoreUnavailable` (ST-04).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from .._crypto import DecryptionFailed, KeyRing, fingerprint_of, random_token
from .._io import Flow, StoreOp
from .._types import Clock
from .records import LinkRecord, StoredTokens, Transaction

__all__ = ["LinkRecord", "StoredTokens", "TokenStore", "Transaction"]

logger = logging.getLogger("authrelay.store")

SCHEMA = "v1"
Kind = Literal["tokens", "link", "profile", "connector", "tx", "lock", "logout", "due", "event"]
MAX_INDEXED_SESSIONS = 50
"""Sessions remembered per provider ``sub`` or ``sid`` for back-channel logout (newest kept)."""


def digest(*parts: str) -> str:
    """A short SHA-256 digest for keys (ST-06: never a raw user id or token in a key)."""
    return _digest(*parts)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


class TokenStore:
    """Typed, sealed records over the backend, as flows the drivers run."""

    def __init__(self, ring: KeyRing, *, prefix: str = "authrelay:", clock: Clock = time.time):
        self._ring = ring
        self._prefix = prefix
        self._clock = clock
        self.on_saved: Callable[[str, StoredTokens], Flow[None]] | None = None
        """Called after each token write (the proactive-refresh index, ``refresher``)."""

    def __repr__(self) -> str:
        return f"TokenStore(prefix={self._prefix!r})"

    # -- sealing ------------------------------------------------------------------------

    def _aad(self, kind: Kind, principal: str, issuer: str | None, connector: str) -> bytes:
        return "|".join((self._prefix, principal, issuer or "", connector, kind, SCHEMA)).encode()

    def _open(self, key: str, stored: tuple[bytes, int], aad: bytes) -> bytes | None:
        sealed = stored[0]
        try:
            plain = self._ring.open(sealed, aad)
        except DecryptionFailed:
            # ST-05: a miss for this request; the entry stays (a misconfigured node
            # must not wipe data).
            logger.warning(
                "store_decrypt_failed key_id=%s fingerprint=%s",
                self._ring.key_id_of(sealed) if len(sealed) >= 5 else "-",
                fingerprint_of(key),
            )
            return None
        return plain

    def _read(self, key: str, aad: bytes) -> Flow[tuple[bytes | None, int]]:
        stored: tuple[bytes, int] | None = yield StoreOp("get", (key,))
        if stored is None:
            return None, 0
        plain = self._open(key, stored, aad)
        if plain is not None and not self._ring.is_primary(stored[0]):
            # ST-03: re-seal with the first key; losing this race is harmless.
            new = yield StoreOp(
                "put", (key, self._ring.seal(plain, aad)), {"expected_version": stored[1]}
            )
            if new is not None:
                return plain, int(new)
        return plain, stored[1]

    def _write(
        self,
        key: str,
        plain: bytes,
        aad: bytes,
        *,
        expected_version: int | None = None,
        ttl: float | None = None,
    ) -> Flow[int | None]:
        new: int | None = yield StoreOp(
            "put",
            (key, self._ring.seal(plain, aad)),
            {"expected_version": expected_version, "ttl": ttl},
        )
        return new

    # -- sealed records of other modules (refresh index, event queue) --------------------

    def key(self, name: str) -> str:
        """``name`` under this store's key prefix."""
        return self._prefix + name

    def get_sealed(self, kind: Kind, key: str) -> Flow[tuple[bytes | None, int]]:
        """The opened value at ``key`` sealed as ``kind`` (None when absent or unreadable)."""
        return (yield from self._read(key, self._aad(kind, "", None, key)))

    def put_sealed(
        self,
        kind: Kind,
        key: str,
        plain: bytes,
        *,
        expected_version: int | None = None,
        ttl: float | None = None,
    ) -> Flow[int | None]:
        """Seal ``plain`` as ``kind`` bound to ``key`` and write it (compare-and-set)."""
        aad = self._aad(kind, "", None, key)
        return (yield from self._write(key, plain, aad, expected_version=expected_version, ttl=ttl))

    # -- user tokens per (user, connector) ----------------------------------------------

    def tokens_key(self, user: str, connector: str) -> str:
        """Store key of a user's tokens for a connector (no raw ids or tokens: ST-06)."""
        return f"{self._prefix}tok:{_digest(user)}:{connector}"

    def load_tokens(
        self, user: str, connector: str, issuer: str | None
    ) -> Flow[tuple[StoredTokens | None, int]]:
        """The stored tokens and their version (0 when absent); unreadable → ``(None, v)``."""
        key = self.tokens_key(user, connector)
        plain, version = yield from self._read(key, self._aad("tokens", user, issuer, connector))
        if plain is None:
            return None, version
        try:
            return StoredTokens.from_json(plain), version
        except (ValueError, KeyError, TypeError):
            logger.warning("store_record_malformed fingerprint=%s", fingerprint_of(key))
            return None, version

    def save_tokens(
        self, user: str, tokens: StoredTokens, *, expected_version: int | None
    ) -> Flow[int | None]:
        """Write tokens with compare-and-set; None when another writer got there first."""
        key = self.tokens_key(user, tokens.connector)
        aad = self._aad("tokens", user, tokens.issuer, tokens.connector)
        written = yield from self._write(
            key, tokens.to_json(), aad, expected_version=expected_version
        )
        if written is not None and self.on_saved is not None:
            yield from self.on_saved(user, tokens)
        return written

    def delete_tokens(self, user: str, connector: str) -> Flow[bool]:
        """Remove a user's tokens for a connector."""
        deleted: bool = yield StoreOp("delete", (self.tokens_key(user, connector),))
        return deleted

    def list_tokens(self, user: str, issuers: Mapping[str, str | None]) -> Flow[list[StoredTokens]]:
        """Every readable token record of ``user`` among the connectors in ``issuers``."""
        prefix = f"{self._prefix}tok:{_digest(user)}:"
        keys: list[str] = yield StoreOp("keys", (prefix,))
        found: list[StoredTokens] = []
        for key in sorted(keys):
            connector = key[len(prefix) :]
            if connector not in issuers:
                continue
            record, _ = yield from self.load_tokens(user, connector, issuers[connector])
            if record is not None:
                found.append(record)
        return found

    # -- identity links and profiles ----------------------------------------------------

    def _link_key(self, target: str, external_sub: str) -> str:
        return f"{self._prefix}link:{_digest(target, external_sub)}"

    def find_link(self, target: str, external_sub: str) -> Flow[LinkRecord | None]:
        """The user an external identity belongs to, if linked."""
        key = self._link_key(target, external_sub)
        plain, _ = yield from self._read(key, self._aad("link", external_sub, None, target))
        if plain is None:
            return None
        data = json.loads(plain)
        return LinkRecord(str(data["user"]), str(data["connector"]), float(data["created"]))

    def create_link(
        self, target: str, external_sub: str, user: str, connector: str
    ) -> Flow[LinkRecord]:
        """Link an identity to ``user`` unless it is linked already; return the link in force."""
        key = self._link_key(target, external_sub)
        record = LinkRecord(user, connector, self._clock())
        plain = json.dumps(
            {"user": user, "connector": connector, "created": record.created_at}
        ).encode()
        aad = self._aad("link", external_sub, None, target)
        written = yield from self._write(key, plain, aad, expected_version=0)
        if written is not None:
            return record
        existing = yield from self.find_link(target, external_sub)
        return existing if existing is not None else record

    def _profile_key(self, user: str) -> str:
        return f"{self._prefix}profile:{_digest(user)}"

    def load_profile(self, user: str) -> Flow[dict[str, Any] | None]:
        """The user's stored profile."""
        key = self._profile_key(user)
        plain, _ = yield from self._read(key, self._aad("profile", user, None, ""))
        return None if plain is None else dict(json.loads(plain))

    def save_profile(self, user: str, profile: Mapping[str, Any], *, sync: bool) -> Flow[bool]:
        """Store the profile at first sign-in, or every time when ``sync`` (``sync_profile``)."""
        key = self._profile_key(user)
        aad = self._aad("profile", user, None, "")
        written = yield from self._write(
            key, json.dumps(dict(profile)).encode(), aad, expected_version=None if sync else 0
        )
        return written is not None

    # -- connector records --------------------------------------------------------------

    def _connector_key(self, name: str) -> str:
        return f"{self._prefix}connector:{name}"

    @property
    def connectors_prefix(self) -> str:
        """Every key of connector records and their change stamp starts with this."""
        return f"{self._prefix}connector"

    @property
    def connectors_stamp_key(self) -> str:
        """Rewritten after every connector record change; workers poll its version."""
        return f"{self._prefix}connectors-changed"

    def save_connector_record(
        self, name: str, data: Mapping[str, Any], *, expected_version: int | None = None
    ) -> Flow[int | None]:
        """Store the record of connector ``name`` (its config may hold secrets: sealed like
        tokens), compare-and-set when ``expected_version`` is given; then bump the stamp."""
        key = self._connector_key(name)
        aad = self._aad("connector", "", None, name)
        plain = json.dumps(dict(data), separators=(",", ":")).encode()
        written = yield from self._write(key, plain, aad, expected_version=expected_version)
        if written is not None:
            yield StoreOp("put", (self.connectors_stamp_key, str(self._clock()).encode()))
        return written

    def load_connector_record(self, name: str) -> Flow[tuple[dict[str, Any] | None, int]]:
        """The record of connector ``name`` and its version (0 when absent)."""
        key = self._connector_key(name)
        plain, version = yield from self._read(key, self._aad("connector", "", None, name))
        return (None if plain is None else dict(json.loads(plain))), version

    def load_connector_records(self) -> Flow[dict[str, dict[str, Any]]]:
        """Every readable connector record, by connector name."""
        prefix = self._connector_key("")
        keys: list[str] = yield StoreOp("keys", (prefix,))
        records: dict[str, dict[str, Any]] = {}
        for key in sorted(keys):
            name = key[len(prefix) :]
            plain, _ = yield from self._read(key, self._aad("connector", "", None, name))
            if plain is not None:
                records[name] = dict(json.loads(plain))
        return records

    def connectors_stamp(self) -> Flow[int]:
        """The version of the change stamp (0 before any change)."""
        stored: tuple[bytes, int] | None = yield StoreOp("get", (self.connectors_stamp_key,))
        return 0 if stored is None else stored[1]

    def start_connectors_stamp(self) -> Flow[int]:
        """Create the change stamp if absent; its version."""
        new: int | None = yield StoreOp(
            "put", (self.connectors_stamp_key, b"0"), {"expected_version": 0}
        )
        if new is not None:
            return new
        return (yield from self.connectors_stamp())

    def delete_connector_record(self, name: str) -> Flow[bool]:
        """Remove the record of connector ``name`` (the settings apply again)."""
        deleted: bool = yield StoreOp("delete", (self._connector_key(name),))
        if deleted:
            yield StoreOp("put", (self.connectors_stamp_key, str(self._clock()).encode()))
        return deleted

    # -- login transactions (single use) ------------------------------------------------

    def _tx_key(self, state: str) -> str:
        return f"{self._prefix}tx:{hashlib.sha256(state.encode()).hexdigest()}"

    def put_transaction(self, state: str, tx: Transaction, *, ttl: float) -> Flow[bool]:
        """Store a new transaction under ``state`` (never overwrites)."""
        key = self._tx_key(state)
        aad = self._aad("tx", "", None, tx.connector)
        written = yield from self._write(key, tx.to_json(), aad, expected_version=0, ttl=ttl)
        return written is not None

    def peek_transaction(self, state: str, connector: str) -> Flow[Transaction | None]:
        """Read the transaction for ``state`` without consuming it (None: unknown, or minted
        for another connector), so a callback from a browser that does not own it can be
        refused while the owner can still finish (AC-04)."""
        key = self._tx_key(state)
        stored: tuple[bytes, int] | None = yield StoreOp("get", (key,))
        if stored is None:
            return None
        plain = self._open(key, stored, self._aad("tx", "", None, connector))
        if plain is None:
            return None
        try:
            return Transaction.from_json(plain)
        except (ValueError, KeyError, TypeError):
            return None

    def take_transaction(self, state: str, connector: str) -> Flow[Transaction | None]:
        """Consume the transaction for ``state``: a second take gets None (AC-04)."""
        key = self._tx_key(state)
        stored: tuple[bytes, int] | None = yield StoreOp("get", (key,))
        if stored is None:
            return None
        deleted: bool = yield StoreOp("delete", (key,), {"expected_version": stored[1]})
        if not deleted:
            return None
        # A state minted for another connector does not open here (MU-03).
        plain = self._open(key, stored, self._aad("tx", "", None, connector))
        if plain is None:
            return None
        try:
            return Transaction.from_json(plain)
        except (ValueError, KeyError, TypeError):
            return None

    # -- RP-initiated logout: what the browser carries to the provider (single use) -------

    def put_logout_request(self, state: str, data: Mapping[str, str], *, ttl: float) -> Flow[bool]:
        """Keep the fields of an end-session request under its ``state`` until the browser
        that logged out collects them."""
        key = f"{self._prefix}rplogout:{hashlib.sha256(state.encode()).hexdigest()}"
        plain = json.dumps(dict(data), separators=(",", ":")).encode()
        aad = self._aad("logout", "rp", None, "")
        written = yield from self._write(key, plain, aad, expected_version=0, ttl=ttl)
        return written is not None

    def take_logout_request(self, state: str) -> Flow[dict[str, str] | None]:
        """The fields stored under ``state``, once."""
        key = f"{self._prefix}rplogout:{hashlib.sha256(state.encode()).hexdigest()}"
        stored: tuple[bytes, int] | None = yield StoreOp("get", (key,))
        if stored is None:
            return None
        deleted: bool = yield StoreOp("delete", (key,), {"expected_version": stored[1]})
        plain = self._open(key, stored, self._aad("logout", "rp", None, "")) if deleted else None
        if plain is None:
            return None
        try:
            data = json.loads(plain)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        return {str(k): str(v) for k, v in data.items()}

    # -- back-channel logout: provider sessions → our sessions ----------------------------

    def _logout_key(self, connector: str, issuer: str, by: str, value: str) -> str:
        return f"{self._prefix}bcl:{_digest(connector, issuer, by, value)}"

    def index_session(
        self,
        connector: str,
        issuer: str,
        session_key: str,
        *,
        sub: str,
        sid: str | None,
        ttl: float,
    ) -> Flow[None]:
        """Remember that our session ``session_key`` came from the provider's ``sub``/``sid``.

        ``session_key`` is the session record's store key (a digest, never the cookie).
        """
        for by, value in (("sub", sub), ("sid", sid)):
            if value is None:
                continue
            key = self._logout_key(connector, issuer, by, value)
            aad = self._aad("logout", value, issuer, connector)
            for _ in range(5):  # compare-and-set append; a lost race reads again
                plain, version = yield from self._read(key, aad)
                known = [] if plain is None else list(json.loads(plain))
                merged = [k for k in known if k != session_key][-(MAX_INDEXED_SESSIONS - 1) :]
                data = json.dumps([*merged, session_key]).encode()
                written = yield from self._write(key, data, aad, expected_version=version, ttl=ttl)
                if written is not None:
                    break

    def take_sessions(self, connector: str, issuer: str, by: str, value: str) -> Flow[list[str]]:
        """The session record keys indexed under the provider's ``sub`` or ``sid``; forgets them."""
        key = self._logout_key(connector, issuer, by, value)
        plain, version = yield from self._read(key, self._aad("logout", value, issuer, connector))
        if plain is None:
            return []
        yield StoreOp("delete", (key,), {"expected_version": version})
        return [str(k) for k in json.loads(plain)]

    def use_logout_token_id(self, issuer: str, jti: str, *, ttl: float) -> Flow[bool]:
        """Record a logout token's ``jti``; False when it was seen before (a replay)."""
        key = f"{self._prefix}bcljti:{_digest(issuer, jti)}"
        written = yield StoreOp("put", (key, b"1"), {"expected_version": 0, "ttl": ttl})
        return written is not None

    # -- refresh locks (RT-02) ----------------------------------------------------------

    def lock_key(self, user: str, connector: str) -> str:
        """Key of the cross-process refresh lock of (user, connector), for :mod:`.locks`."""
        return f"{self._prefix}lock:{_digest(user)}:{connector}"

    def acquire_lease(self, user: str, connector: str, *, ttl: float) -> Flow[str | None]:
        """Take the refresh lock of (user, connector) by hand; its owner token, or None.

        The refresh itself uses :func:`~authrelay.stores.locks.single_flight` on
        :meth:`lock_key`; this is for tools and tests that hold the lock directly.
        """
        owner = random_token(16)
        got = yield StoreOp(
            "put",
            (self.lock_key(user, connector), owner.encode()),
            {"ttl": ttl, "expected_version": 0},
        )
        return owner if got is not None else None

    def release_lease(self, user: str, connector: str, owner: str) -> Flow[None]:
        """Give back a lock taken with :meth:`acquire_lease`, if ``owner`` still holds it."""
        key = self.lock_key(user, connector)
        stored: tuple[bytes, int] | None = yield StoreOp("get", (key,))
        if stored is not None and stored[0] == owner.encode():
            yield StoreOp("delete", (key,), {"expected_version": stored[1]})
