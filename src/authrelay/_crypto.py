"""Key material: per-purpose keys derived from ``secret_keys``, AEAD sealing with rotation.

Defends against: a key reused across purposes (a session cookie replayed as a stored
token), tampered or truncated ciphertexts, ciphertexts moved between records
(cut-and-paste; the associated data binds each value to where it belongs), and key
rotation locking users out (the first key seals, every key opens).

Format of a sealed value: ``version(1) | key_id(4) | nonce(12) | AES-256-GCM ciphertext``.
The key id is the first 4 bytes of SHA-256 of the derived key, so a value names the key
that sealed it without revealing anything about it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DecryptionFailed",
    "KeyRing",
    "b64url_decode",
    "b64url_encode",
    "constant_time_equals",
    "fingerprint_of",
    "random_token",
]

_VERSION = b"\x01"
_HEADER = 1 + 4 + 12


class DecryptionFailed(Exception):
    """A sealed value could not be opened with any key of the ring."""


def b64url_encode(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Inverse of :func:`b64url_encode`; raises ``ValueError`` on bad input."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def random_token(nbytes: int = 32) -> str:
    """A CSPRNG token, base64url; 32 bytes give 256 bits (SE-01, AC-02, AC-04)."""
    return b64url_encode(os.urandom(nbytes))


def fingerprint_of(secret: str | bytes) -> str:
    """A non-reversible fingerprint for logs: the first 8 hex chars of SHA-256 (INV-1)."""
    data = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(data).hexdigest()[:8]


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"authrelay", info=purpose.encode()
    ).derive(master)


class KeyRing:
    """AES-256-GCM keys for one purpose, derived from the configured secret keys.

    The first key seals; all keys open (rotation). Opening never raises anything but
    :class:`DecryptionFailed`, whatever the input.
    """

    __slots__ = ("_aead", "_by_id", "_primary_id", "purpose")

    def __init__(self, secrets: Sequence[bytes], purpose: str) -> None:
        if not secrets:
            raise ValueError("a key ring needs at least one secret")
        self.purpose = purpose
        self._by_id: dict[bytes, AESGCM] = {}
        ordered: list[bytes] = []
        for secret in secrets:
            key = _derive(secret, purpose)
            key_id = hashlib.sha256(key).digest()[:4]
            if key_id not in self._by_id:
                self._by_id[key_id] = AESGCM(key)
                ordered.append(key_id)
        self._primary_id = ordered[0]
        self._aead = self._by_id[self._primary_id]

    def __repr__(self) -> str:
        return f"KeyRing(purpose={self.purpose!r}, keys={len(self._by_id)})"

    @property
    def primary_key_id(self) -> str:
        """Hex id of the sealing key (safe to log)."""
        return self._primary_id.hex()

    def seal(self, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        """Encrypt and authenticate ``plaintext`` bound to ``associated_data``."""
        nonce = os.urandom(12)
        body = self._aead.encrypt(nonce, plaintext, associated_data)
        return _VERSION + self._primary_id + nonce + body

    def open(self, sealed: bytes, associated_data: bytes = b"") -> bytes:
        """Decrypt ``sealed``; raise :class:`DecryptionFailed` if it cannot be opened."""
        if len(sealed) < _HEADER + 16 or sealed[:1] != _VERSION:
            raise DecryptionFailed("not a sealed value")
        aead = self._by_id.get(sealed[1:5])
        if aead is None:
            raise DecryptionFailed("sealed with an unknown key")
        try:
            return aead.decrypt(sealed[5:_HEADER], sealed[_HEADER:], associated_data)
        except InvalidTag:
            raise DecryptionFailed("authentication failed") from None

    def is_primary(self, sealed: bytes) -> bool:
        """True if ``sealed`` was made with the sealing key (no re-encryption needed)."""
        return sealed[1:5] == self._primary_id

    def key_id_of(self, sealed: bytes) -> str:
        """Hex key id in a sealed value's header (for logs)."""
        return sealed[1:5].hex()


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two secrets without leaking where they differ."""
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)
