"""Scenarios 1 to 4 and the peers as direct ASGI calls (no server), plus the micro floors.

Every variant runs in the same rounds, shuffled, in one event loop: the bare app, authrelay
anonymous / with a session cookie / with a bearer JWT (repeated, and first sight for RS256
and ES256), Starlette's ``SessionMiddleware``, the hand-written Authlib peer, and the
floors named by the targets (``itsdangerous`` unsign, ``cryptography`` verify, a
``cachetools.TTLCache`` lookup, authrelay's verified-token cache lookup).

Defends against a figure that measures the wrong thing: before timing, each variant is
called once and must answer 200 with the expected subject (a bearer that silently fell
back to anonymous would look fast).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from cachetools import TTLCache
from itsdangerous import TimestampSigner

from authrelay import AuthRelayMiddleware
from authrelay.relay import Relay

from .apps import (
    SESSION_SECRET,
    AsgiCall,
    asgi_call,
    asgi_call_each,
    asgi_get,
    authlib_peer,
    bare_app,
    make_scope,
    session_cookie,
    starlette_session_cookie,
    starlette_session_peer,
)
from .idp import BenchIdP, raw_verifier
from .timing import Series, alternate_async, interleave_async

__all__ = ["run_direct"]

_PEER_SESSION = {
    "user": {"sub": "alice", "name": "Alice"},
    "token": {"access_token": "at-" + "x" * 40, "token_type": "Bearer", "expires_at": 2**31},
}


class BenchmarkBroken(RuntimeError):
    """A variant did not answer as expected, so its timing would be meaningless."""


async def _expect(name: str, app: Any, scope: dict[str, Any], subject: str | None) -> None:
    status, body = await asgi_get(app, {**scope, "path": "/whoami", "raw_path": b"/whoami"})
    if status != 200 or not isinstance(body, dict) or body.get("subject") != subject:
        raise BenchmarkBroken(f"{name}: expected 200 for {subject!r}, got {status} {body!r}")
    status, body = await asgi_get(app, scope)
    if status != 200:
        raise BenchmarkBroken(f"{name}: /open answered {status}")


def _token_stream(idp: BenchIdP, alg: str, count: int) -> Iterator[str]:
    tokens = [idp.mint(alg) for _ in range(count)]
    return iter(tokens)


def _first_sight(app: Any, tokens: Iterator[str]) -> AsgiCall:
    def headers() -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + next(tokens).encode())]

    return asgi_call_each(app, "/open", headers)


async def run_direct(
    idp: BenchIdP, relay: Relay, *, rounds: int, inner: int
) -> tuple[dict[str, Series], dict[str, Any]]:
    """Time every direct-call variant; return the series and facts checked on the way."""
    app = AuthRelayMiddleware(bare_app(), relay=relay)
    cookie = session_cookie(relay).encode()
    rs_token = idp.mint("RS256")
    es_token = idp.mint("ES256")
    floor_scope = make_scope("/open")
    cookie_scope = make_scope("/open", [(b"cookie", cookie)])
    peer_cookie = starlette_session_cookie(_PEER_SESSION).encode()
    peer_scope = make_scope("/open", [(b"cookie", peer_cookie)])
    rs_scope = make_scope("/open", [(b"authorization", b"Bearer " + rs_token.encode())])
    es_scope = make_scope("/open", [(b"authorization", b"Bearer " + es_token.encode())])
    bare = bare_app()
    session_peer = starlette_session_peer()
    tutorial_peer = authlib_peer(idp)

    # first sight: one fresh token per call (warm-up round included)
    needed = (rounds + 1) * inner + 2
    rs_first = _token_stream(idp, "RS256", needed)
    es_first = _token_stream(idp, "ES256", needed)

    await _expect("authrelay bearer RS256", app, rs_scope, "alice")  # fetches discovery, JWKS
    await _expect("authrelay bearer ES256", app, es_scope, "alice")
    await _expect("bare", bare, floor_scope, None)
    await _expect("authrelay anonymous", app, floor_scope, None)
    await _expect("authrelay session", app, cookie_scope, "alice")
    await _expect("starlette session", session_peer, peer_scope, None)
    await _expect("authlib peer", tutorial_peer, peer_scope, "alice")
    probe = next(rs_first)
    await _expect(
        "authrelay first sight",
        app,
        make_scope("/open", [(b"authorization", b"Bearer " + probe.encode())]),
        "alice",
    )

    # floors
    signer = TimestampSigner(SESSION_SECRET)
    signed = peer_cookie.split(b"=", 1)[1]

    def itsdangerous_unsign() -> None:
        signer.unsign(signed, max_age=1209600)

    ttl: TTLCache[str, object] = TTLCache(maxsize=10_000, ttl=300)
    ttl[rs_token] = ("principal", "credentials")
    ttl_get = ttl.get
    bearer = relay.bearer
    assert bearer is not None
    if bearer.cached(rs_token) is None:
        raise BenchmarkBroken("the repeated bearer token is not in the verified-token cache")
    sync_floors: dict[str, Callable[[], object]] = {
        "itsdangerous_unsign": itsdangerous_unsign,
        "crypto_verify_rs256": raw_verifier(idp, rs_token),
        "crypto_verify_es256": raw_verifier(idp, es_token),
        "ttlcache_get": lambda: ttl_get(rs_token),
        "bearer_cache_hit": lambda: bearer.cached(rs_token),
    }
    variants: dict[str, AsgiCall] = {
        "bare": asgi_call(bare, floor_scope),
        "anonymous": asgi_call(app, floor_scope),
        "session": asgi_call(app, cookie_scope),
        "starlette_session": asgi_call(session_peer, peer_scope),
        "authlib_peer": asgi_call(tutorial_peer, peer_scope),
        "bearer_rs256_repeat": asgi_call(app, rs_scope),
        "bearer_es256_repeat": asgi_call(app, es_scope),
        "bearer_rs256_first": _first_sight(app, rs_first),
        "bearer_es256_first": _first_sight(app, es_first),
    }
    series = await interleave_async(
        variants, rounds=rounds, inner=inner, sync_variants=sync_floors, sync_inner=inner * 20
    )
    # T01 sits close to its limit: the bare app and the anonymous request once more, in
    # alternating ABBA rounds of their own, so the ratio is taken on neighbouring samples.
    series["bare_ab"], series["anonymous_ab"] = await alternate_async(
        variants["bare"], variants["anonymous"], rounds=2 * rounds, inner=4 * inner
    )
    facts = {"tokens_minted": 2 * needed}
    return series, facts
