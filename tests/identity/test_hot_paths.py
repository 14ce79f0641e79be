"""The identity fast paths give the same answers as the slow ones (SECURITY §3, §4, §12).

Remembered header segments, signature checks set up once per key, the hand-off from
``lookup`` to ``complete`` and the cached session answers are speed-ups only: these tests
pin that every verdict they touch is the one a cold path gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from bearer_idp import (
    AUDIENCE,
    FakeClock,
    MiniIdP,
    b64,
    sign_raw,
)
from joserfc.jwk import ECKey, OKPKey

from authrelay import Settings
from authrelay._io import SyncDriver
from authrelay.errors import InvalidToken
from authrelay.identity.jwks import JwksCache
from authrelay.identity.jwt import JwtValidator, VerifiedJwt, access_token_rules
from authrelay.identity.resolve import Pending, Resolution
from authrelay.identity.session import SessionRecord
from authrelay.relay import Relay
from authrelay.settings import HttpSettings

HTTP = HttpSettings(allow_insecure_loopback=True)

Verify = Callable[[str], VerifiedJwt]


def verifier(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver, algorithms: tuple[str, ...]
) -> Verify:
    keys = JwksCache(f"{idp.issuer}/jwks", http=HTTP, clock=clock)
    rules = access_token_rules(idp.issuer, [AUDIENCE])
    validator = JwtValidator(keys=keys, algorithms=algorithms, rules=rules, clock=clock)
    return lambda token: driver.run(validator.verify(token))


def reason(verify: Verify, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify(token)
    return str(caught.value.context.get("reason"))


def test_jw01_remembered_header_still_meets_each_validators_allow_list(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    wide = verifier(idp, clock, driver, ("RS256", "ES256"))
    narrow = verifier(idp, clock, driver, ("ES256",))
    token = idp.mint(sub="alice")
    assert wide(token).claims["sub"] == "alice"  # this header is now remembered
    assert reason(narrow, idp.mint(sub="bob")) == "alg_not_allowed"
    assert wide(idp.mint(sub="carol")).claims["sub"] == "carol"


def test_jw04_rejected_header_is_rejected_every_time(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    verify = verifier(idp, clock, driver, ("RS256",))
    for _ in range(3):
        assert reason(verify, idp.mint(header={"crit": ["exp"]})) == "crit"
    assert verify(idp.mint()).claims["sub"] == "user-1"


def test_jw10_bad_alphabet_refused_even_with_a_known_header(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    verify = verifier(idp, clock, driver, ("RS256",))
    token = idp.mint()
    verify(token)
    head, payload, signature = token.split(".")
    for bad in (f"{head}.{payload}+.{signature}", f"{head}.{payload}.{signature}=", f"{head}..x"):
        assert reason(verify, bad) == "malformed"
    assert reason(verify, f"{head}.{payload}.{signature[:-4]}AAAA") == "signature"


def test_jw02_each_key_family_verifies_and_refuses_a_forged_signature(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    idp.add_key("ed-1", OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"}))
    verify = verifier(idp, clock, driver, ("RS256", "PS256", "ES256", "EdDSA"))
    rogue_ec = ECKey.generate_key("P-256")
    rogue_ed = OKPKey.generate_key("Ed25519")
    for kid, alg, rogue in (
        ("rsa-1", "RS256", None),
        ("rsa-1", "PS256", None),
        ("ec-1", "ES256", rogue_ec),
        ("ed-1", "EdDSA", rogue_ed),
    ):
        assert verify(idp.mint(kid=kid, alg=alg)).header["alg"] == alg
        head, payload, _ = idp.mint(kid=kid, alg=alg).split(".")
        other = idp.mint(kid=kid, alg=alg, sub="mallory").split(".")[2]
        assert reason(verify, f"{head}.{payload}.{other}") == "signature"
        if rogue is not None:
            assert reason(verify, idp.mint(kid=kid, alg=alg, key=rogue)) == "signature"


def test_jw02_es256_signature_of_the_wrong_length_refused(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    verify = verifier(idp, clock, driver, ("ES256",))
    head, payload, _ = idp.mint(kid="ec-1").split(".")
    assert reason(verify, f"{head}.{payload}.{b64(bytes(63))}") == "signature"


def test_jw11_claims_with_whitespace_or_duplicates_decided_as_before(
    idp: MiniIdP, clock: FakeClock, driver: SyncDriver
) -> None:
    verify = verifier(idp, clock, driver, ("RS256",))
    header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    claims = json.dumps(idp.claims(sub="spaced"))
    key = idp.keys["rsa-1"]
    assert verify(sign_raw(header, f"  {claims}\n", key, "RS256")).claims["sub"] == "spaced"
    duplicate = claims[:-1] + ', "sub": "mallory"}'
    assert reason(verify, sign_raw(header, duplicate, key, "RS256")) == "duplicate_member"
    assert reason(verify, sign_raw(header, claims + " []", key, "RS256")) == "malformed"


def _relay(idp: MiniIdP, clock: FakeClock) -> Relay:
    settings = Settings.model_validate(
        {
            "secret_keys": ["k" * 32],
            "session": {"dev_insecure_cookies": True},
            "bearer": {"issuer": idp.issuer, "audience": [AUDIENCE]},
            "http": {"allow_insecure_loopback": True},
        }
    )
    return Relay(settings, clock=clock)


def test_br06_lookup_then_complete_gives_the_resolve_answer(idp: MiniIdP, clock: FakeClock) -> None:
    relay = _relay(idp, clock)
    try:
        identity = relay.identity
        good = [f"Bearer {idp.mint(sub='alice')}"]
        pending = identity.lookup(good, None)
        assert isinstance(pending, Pending) and "eyJ" not in repr(pending)
        done = relay.sync_driver.run(identity.complete(pending))
        assert done.principal.subject == "alice"
        assert identity.lookup(good, None) == Resolution(done.principal, done.credentials)
        expired = [f"Bearer {idp.mint(exp=int(clock.now) - 3600)}"]
        pending = identity.lookup(expired, None)
        assert isinstance(pending, Pending)
        error = relay.sync_driver.run(identity.complete(pending)).error
        assert isinstance(error, InvalidToken)  # never anonymous
        assert relay.identity.fast(expired, None) is None
    finally:
        relay.close()


def test_se06_cached_session_answer_ends_at_logout(idp: MiniIdP, clock: FakeClock) -> None:
    relay = _relay(idp, clock)
    try:
        sessions = relay.sessions
        header = relay.sync_driver.run(
            sessions.create(SessionRecord(subject="alice", created_at=clock.now))
        )
        cookie = header.split(";", 1)[0]
        first = relay.identity.fast([], cookie)
        assert first is not None and first.principal.subject == "alice"
        assert relay.identity.fast([], cookie) is first  # the answer is reused
        state = sessions.open_cookie(cookie.split("=", 1)[1])
        assert state is not None
        relay.sync_driver.run(sessions.destroy(state.session_id))
        after = relay.sync_driver.run(relay.identity.resolve([], cookie))
        assert after.principal.subject is None and "Max-Age=0" in str(after.set_cookie)
    finally:
        relay.close()


def test_se05_cached_session_answer_ends_at_idle_timeout(idp: MiniIdP, clock: FakeClock) -> None:
    relay = _relay(idp, clock)
    try:
        header = relay.sync_driver.run(
            relay.sessions.create(SessionRecord(subject="alice", created_at=clock.now))
        )
        cookie = header.split(";", 1)[0]
        first = relay.identity.fast([], cookie)
        assert first is not None and first.principal.subject == "alice"
        clock.advance(relay.settings.session.idle_timeout + 1)
        idle = relay.identity.fast([], cookie)
        assert idle is not None and idle.principal.subject is None
        assert "Max-Age=0" in str(idle.set_cookie)
    finally:
        relay.close()


def test_in05_reused_bearer_answer_ends_at_exp_and_needs_the_exact_token(
    idp: MiniIdP, clock: FakeClock
) -> None:
    relay = _relay(idp, clock)
    try:
        identity = relay.identity
        token = idp.mint(sub="alice", exp=int(clock.now) + 120)
        good = [f"Bearer {token}"]
        pending = identity.lookup(good, None)
        assert isinstance(pending, Pending)
        relay.sync_driver.run(identity.complete(pending))
        first = identity.fast(good, None)
        assert first is not None and first.principal.subject == "alice"
        assert identity.fast(good, None) is first  # the answer is reused
        assert identity.fast([f"bearer  {token} "], None) is first  # same token, other spelling
        for near in (token[:-1], token + "A", token[:-1] + ("A" if token[-1] != "A" else "B")):
            assert identity.fast([f"Bearer {near}"], None) is None  # never by prefix
        bad = identity.fast([f"Bearer {token[:-1]}\u00e9"], None)
        assert bad is not None and bad.error is not None and bad.error.error == "invalid_request"
        clock.advance(121)
        assert identity.fast(good, None) is None  # past exp: verified again, not reused
        assert relay.settings.bearer is not None
        clock.advance(relay.settings.bearer.leeway)
        expired = relay.sync_driver.run(identity.resolve(good, None))
        assert isinstance(expired.error, InvalidToken)
    finally:
        relay.close()
