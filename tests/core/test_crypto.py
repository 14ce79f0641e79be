"""Key ring: per-purpose keys, tamper detection, rotation."""

from __future__ import annotations

import pytest

from authrelay._crypto import DecryptionFailed, KeyRing, fingerprint_of, random_token

A, B = b"a" * 32, b"b" * 32


def test_seal_open_roundtrip_with_associated_data() -> None:
    ring = KeyRing([A], "p")
    sealed = ring.seal(b"hello", b"where")
    assert ring.open(sealed, b"where") == b"hello"
    assert b"hello" not in sealed


def test_st01_value_moved_to_other_record_fails() -> None:
    ring = KeyRing([A], "p")
    sealed = ring.seal(b"hello", b"record-1")
    with pytest.raises(DecryptionFailed):
        ring.open(sealed, b"record-2")


def test_keys_are_per_purpose() -> None:
    sealed = KeyRing([A], "session").seal(b"x")
    with pytest.raises(DecryptionFailed):
        KeyRing([A], "tokens").open(sealed)


def test_st03_rotation_first_seals_all_open() -> None:
    old = KeyRing([A], "p").seal(b"x")
    ring = KeyRing([B, A], "p")
    assert ring.open(old) == b"x"
    assert not ring.is_primary(old)
    assert ring.is_primary(ring.seal(b"y"))
    with pytest.raises(DecryptionFailed):
        KeyRing([B], "p").open(old)


@pytest.mark.parametrize("bad", [b"", b"\x01", b"\x02" + b"x" * 60])
def test_garbage_never_raises_anything_else(bad: bytes) -> None:
    with pytest.raises(DecryptionFailed):
        KeyRing([A], "p").open(bad)


def test_tampered_byte_detected() -> None:
    ring = KeyRing([A], "p")
    sealed = bytearray(ring.seal(b"payload"))
    sealed[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        ring.open(bytes(sealed))


def test_se01_random_tokens_are_long_and_distinct() -> None:
    tokens = {random_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) >= 43 for t in tokens)
    assert len(fingerprint_of("secret")) == 8 and "secret" not in fingerprint_of("secret")
