"""Session cookies and records: SECURITY §12."""

from __future__ import annotations

import pytest

from authrelay import Settings
from authrelay._crypto import b64url_decode
from authrelay.identity.cookies import find_cookie
from authrelay.identity.session import SessionManager, SessionRecord
from authrelay.relay import Relay

KEY, OTHER = "k" * 32, "o" * 32


def make(clock, **session) -> Relay:
    return Relay(Settings(secret_keys=[KEY], session=session), clock=clock)


def login(relay: Relay, subject: str = "alice") -> str:
    set_cookie = relay.sync_driver.run(
        relay.sessions.create(
            SessionRecord(subject=subject, claims={"name": "Alice"}, created_at=relay.clock())
        )
    )
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def test_se02_cookie_attributes(clock) -> None:
    relay = make(clock)
    header = relay.sync_driver.run(
        relay.sessions.create(SessionRecord(subject="a", created_at=clock()))
    )
    assert header.startswith("__Host-authrelay=")
    for attribute in ("Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age=43200"):
        assert attribute in header
    assert "Domain" not in header


def test_se03_cookie_reveals_nothing(clock) -> None:
    relay = make(clock)
    value = login(relay, "alice@example.com")
    assert b"alice" not in b64url_decode(value)
    assert len(value) < 200


def test_valid_cookie_resolves_principal(clock) -> None:
    relay = make(clock)
    value = login(relay)
    res = relay.identity.fast([], f"__Host-authrelay={value}")
    assert res is not None and res.principal.subject == "alice"
    assert res.principal.is_authenticated and res.principal.display_name == "Alice"


@pytest.mark.parametrize("mutate", ["truncate", "flip", "garbage", "empty"])
def test_tampered_cookie_is_anonymous_and_cleared(clock, mutate: str) -> None:
    relay = make(clock)
    value = login(relay)
    bad = {
        "truncate": value[:-5],
        "flip": value[:-1] + ("A" if value[-1] != "A" else "B"),
        "garbage": "%%%not-base64%%%",
        "empty": "",
    }[mutate]
    res = relay.sync_driver.run(relay.identity.resolve([], f"__Host-authrelay={bad}"))
    assert not res.principal.is_authenticated
    if mutate != "empty":
        assert res.set_cookie is not None and "Max-Age=0" in res.set_cookie


def test_foreign_key_cookie_is_anonymous(clock) -> None:
    value = login(make(clock))
    other = Relay(Settings(secret_keys=[OTHER]), clock=clock)
    res = other.sync_driver.run(other.identity.resolve([], f"__Host-authrelay={value}"))
    assert not res.principal.is_authenticated


def test_rotation_old_key_cookie_still_opens(clock) -> None:
    value = login(make(clock))
    assert SessionManager(Settings(secret_keys=[OTHER, KEY]), clock=clock).open_cookie(value)
    assert SessionManager(Settings(secret_keys=[OTHER]), clock=clock).open_cookie(value) is None


def test_se05_idle_timeout_enforced_from_sealed_timestamps(clock) -> None:
    relay = make(clock, idle_timeout=600, max_age=3600)
    value = login(relay)
    clock.advance(601)
    res = relay.sync_driver.run(relay.identity.resolve([], f"__Host-authrelay={value}"))
    assert not res.principal.is_authenticated


def test_se05_absolute_timeout_despite_activity(clock) -> None:
    relay = make(clock, idle_timeout=600, max_age=1000, renew_after=0)
    value = login(relay)
    for _ in range(3):
        clock.advance(300)
        res = relay.sync_driver.run(relay.identity.resolve([], f"__Host-authrelay={value}"))
        assert res.principal.is_authenticated
        assert res.set_cookie is not None  # rolling renewal
        value = res.set_cookie.split(";", 1)[0].split("=", 1)[1]
    clock.advance(200)
    res = relay.sync_driver.run(relay.identity.resolve([], f"__Host-authrelay={value}"))
    assert not res.principal.is_authenticated


def test_se06_logout_makes_replayed_cookie_anonymous(clock) -> None:
    relay = make(clock)
    value = login(relay)
    state = relay.sessions.open_cookie(value)
    assert state is not None
    relay.sync_driver.run(relay.sessions.destroy(state.session_id))
    res = relay.sync_driver.run(relay.identity.resolve([], f"__Host-authrelay={value}"))
    assert not res.principal.is_authenticated
    assert res.set_cookie is not None and "Max-Age=0" in res.set_cookie


def test_se04_new_session_replaces_old(clock) -> None:
    relay = make(clock)
    old = login(relay)
    old_state = relay.sessions.open_cookie(old)
    assert old_state is not None
    header = relay.sync_driver.run(
        relay.sessions.create(
            SessionRecord(subject="alice", created_at=clock()), replaces=old_state.session_id
        )
    )
    new = header.split(";", 1)[0].split("=", 1)[1]
    assert relay.sessions.open_cookie(new).session_id != old_state.session_id  # type: ignore[union-attr]
    res = relay.sync_driver.run(relay.identity.resolve([], f"__Host-authrelay={old}"))
    assert not res.principal.is_authenticated


def test_record_survives_cache_loss_via_store(clock) -> None:
    relay = make(clock)
    value = login(relay)
    relay.sessions.forget(None)
    assert relay.identity.fast([], f"__Host-authrelay={value}") is None  # needs the store
    res = relay.sync_driver.run(relay.identity.resolve([], f"__Host-authrelay={value}"))
    assert res.principal.subject == "alice"


def test_se09_duplicate_cookie_names_ignored() -> None:
    assert find_cookie("a=1; s=x; s=y", "s") is None
    assert find_cookie("=s=x; b=2", "s") is None
    assert find_cookie("a=1; s=x", "s") == "x"
    assert find_cookie("as=1; sa=2", "s") is None


def test_se10_cookie_never_over_4096_bytes(clock) -> None:
    relay = make(clock)
    big_profile = {"name": "x" * 10_000, "groups": [f"g{i}" for i in range(500)]}
    header = relay.sync_driver.run(
        relay.sessions.create(SessionRecord(subject="a", claims=big_profile, created_at=clock()))
    )
    assert len(header) < 4096


def test_dev_insecure_cookie_name_and_flags(clock) -> None:
    relay = make(clock, dev_insecure_cookies=True)
    header = relay.sync_driver.run(
        relay.sessions.create(SessionRecord(subject="a", created_at=clock()))
    )
    assert header.startswith("authrelay=") and "Secure" not in header


def test_oversized_cookie_header_is_431(clock) -> None:
    relay = make(clock)
    res = relay.identity.fast([], "__Host-authrelay=" + "a" * 40_000)
    assert res is not None and res.error is not None and res.error.status == 431


def test_record_in_store_is_encrypted(clock) -> None:
    relay = make(clock)
    login(relay, "alice-canary")
    raw = [relay.backend.get(k) for k in relay.backend.keys("")]
    assert raw and all(b"alice-canary" not in v[0] for v in raw if v)


def test_forget_drops_a_record_changed_elsewhere(clock) -> None:
    relay = make(clock)
    value = login(relay)
    state = relay.sessions.open_cookie(value)
    assert state is not None and relay.sessions.cached_record(state) is not None
    relay.backend.delete(state.record_key)  # another process logged the user out
    relay.sessions.forget(state.record_key)
    res = relay.sync_driver.run(relay.identity.resolve([], f"__Host-authrelay={value}"))
    assert not res.principal.is_authenticated
