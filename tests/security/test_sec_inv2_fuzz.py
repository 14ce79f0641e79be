"""INV-2: random and malformed ``Authorization``, ``Cookie``, query strings, methods and
paths under ``/auth/...`` never give a 500 nor raise, under ASGI and WSGI.

A seeded generator (the seed is in the test id, so a failure replays exactly). Requests go
straight into the middleware, as a server would hand them over, so nothing in between
cleans them up first.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from sec_helpers import asgi_app, base_settings, oidc_connector, wsgi_app

from authrelay import AuthRelayMiddleware, Relay
from authrelay.testing import IdentityProvider
from authrelay.wsgi import AuthRelayWSGIMiddleware

ROUNDS = 400
_STATE = b"@STATE@"
_TX_COOKIE = b"@TX@"
_ISS = b"@ISS@"
_B64 = string.ascii_letters + string.digits + "-._~+/"
_VISIBLE = "".join(chr(c) for c in range(0x20, 0x7F)) + "\t\u00e9\u00ff"


@dataclass
class Case:
    """One request: what a server could hand to the middleware."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def describe(self) -> str:
        return json.dumps(
            {
                "method": self.method,
                "path": self.path,
                "query": self.query.decode("latin-1")[:200],
                "headers": [(k.decode(), v.decode("latin-1")[:200]) for k, v in self.headers],
            }
        )


_LOGIN = Case("GET", "/auth/idp/login", b"next=/x", [], b"")


def _with_transaction(case: Case, login_headers: list[tuple[bytes, bytes]], issuer: str) -> Case:
    """Fill the placeholders with a real state and its browser-binding cookie."""
    found = dict((k.lower(), v) for k, v in login_headers)
    params = parse_qs(urlsplit(found[b"location"].decode()).query)
    state = params["state"][0].encode()
    cookie = found[b"set-cookie"].split(b";", 1)[0]
    headers = [(k, cookie if v == _TX_COOKIE else v) for k, v in case.headers]
    query = case.query.replace(_STATE, state).replace(_ISS, quote(issuer, safe="").encode())
    return Case(case.method, case.path, query, headers, case.body)


def _text(rng: random.Random, alphabet: str, low: int = 0, high: int = 40) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwtish(rng: random.Random) -> str:
    headers = [
        {"alg": "none"},
        {"alg": "RS256", "kid": _text(rng, _B64)},
        {"alg": "HS256", "typ": "at+jwt"},
        {"alg": "RS256", "crit": ["x"], "jku": "http://127.0.0.1:1/jwks"},
        ["not", "an", "object"],
    ]
    header = _b64(json.dumps(rng.choice(headers)).encode())
    claims = _b64(
        json.dumps(
            {"sub": _text(rng, _B64), "exp": rng.choice([1, 1e309, "x", None])}, default=str
        ).encode()
    )
    segments = [header, claims, _text(rng, _B64)]
    return ".".join(segments[: rng.randint(1, 3)] + ["x"] * rng.randint(0, 3))


def _authorization(rng: random.Random) -> str:
    choices: list[Callable[[], str]] = [
        lambda: "",
        lambda: "Bearer",
        lambda: "Bearer ",
        lambda: "bEaReR " + _text(rng, _B64, 1, 80),
        lambda: "Bearer " + _jwtish(rng),
        lambda: "Bearer " + _text(rng, _VISIBLE, 1, 60),
        lambda: "Basic " + _b64(_text(rng, _VISIBLE).encode()),
        lambda: "Bearer a, Bearer b",
        lambda: _text(rng, _VISIBLE, 1, 60),
        lambda: "Bearer " + "a" * rng.choice([4096, 17 * 1024]),
        lambda: "Bearer " + "=" * rng.randint(1, 9),
    ]
    return rng.choice(choices)()


def _cookie(rng: random.Random) -> str:
    value = _text(rng, _B64 + "=%", 0, 120)
    choices: list[Callable[[], str]] = [
        lambda: f"authrelay={value}",
        lambda: f"authrelay={value}; authrelay={value}",
        lambda: f"=authrelay={value}",
        lambda: f"authrelay-tx={_text(rng, string.hexdigits, 16, 16)}{value}",
        lambda: "; ".join(f"{_text(rng, _B64, 0, 8)}={value}" for _ in range(rng.randint(1, 6))),
        lambda: _text(rng, _VISIBLE, 1, 200),
        lambda: "authrelay=" + "A" * rng.choice([1500, 40 * 1024]),
        lambda: 'authrelay="' + value + '"',
    ]
    return rng.choice(choices)()


def _query(rng: random.Random) -> bytes:
    names = [
        "state",
        "code",
        "iss",
        "error",
        "next",
        "scope",
        "access_token",
        "id_token",
        "error_description",
        _text(rng, _B64, 1, 6),
    ]
    values: list[Callable[[], str]] = [
        lambda: _text(rng, _B64, 0, 60),
        lambda: "%" + _text(rng, "0123456789abcdefzZ%", 0, 4),
        lambda: "%00%0d%0a" + _text(rng, _B64),
        lambda: "//evil.example/" + _text(rng, _B64),
        lambda: "/\\evil.example",
        lambda: "%E2%80%AE" + _text(rng, _B64),
        lambda: "a" * rng.choice([300, 5000]),
        lambda: _text(rng, _VISIBLE, 0, 40).replace("&", "%26").replace(" ", "+"),
    ]
    parts = []
    for _ in range(rng.randint(0, 7)):
        name = rng.choice(names)
        parts.append(name if rng.random() < 0.1 else f"{name}={rng.choice(values)()}")
    return "&".join(parts).encode("latin-1", "replace")


def _path(rng: random.Random) -> str:
    fixed = [
        "/auth",
        "/auth/",
        "/auth/idp",
        "/auth/idp/login",
        "/auth/idp/callback",
        "/auth/idp/connect",
        "/auth/logout",
        "/auth/me",
        "/auth/connectors",
        "/auth/stats",
        "/auth/unknown/login",
        "/auth//idp/login",
        "/auth/idp/callback/extra",
        "/auth/../auth/me",
        "/auth/idp/login/",
        "/authx",
        "/",
        "/page",
    ]
    path = rng.choice(fixed)
    roll = rng.random()
    if roll < 0.12:
        path += "/" + _text(rng, _VISIBLE.replace("?", ""), 0, 20)
    elif roll < 0.18:
        path = "/auth/" + "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(1, 12)))
    elif roll < 0.2:
        path = "/auth/" + "x" * 5000
    return path


def _case(rng: random.Random) -> Case:
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(rng.choice([0, 1, 1, 1, 2])):
        headers.append((b"authorization", _authorization(rng).encode("latin-1", "replace")))
    for _ in range(rng.choice([0, 1, 1, 2])):
        headers.append((b"cookie", _cookie(rng).encode("latin-1", "replace")))
    if rng.random() < 0.5:
        headers.append((b"accept", rng.choice([b"application/json", b"text/html", b"*/*", b""])))
    if rng.random() < 0.3:
        headers.append((b"origin", rng.choice([b"null", b"http://127.0.0.1", b"\xff\xfe"])))
    if rng.random() < 0.2:
        headers.append((b"x-csrf-token", _text(rng, _VISIBLE).encode("latin-1", "replace")))
    if rng.random() < 0.2:
        headers.append((b"x-forwarded-host", b"evil.example"))
    method = rng.choice(["GET", "GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"])
    body = b""
    if method in ("POST", "PUT"):
        body = rng.choice(
            [b"", b"csrf_token=" + _text(rng, _B64).encode(), b"%zz=%%", bytes(rng.randbytes(64))]
        )
        headers.append(
            (
                b"content-type",
                rng.choice(
                    [b"application/x-www-form-urlencoded", b"application/json", b"text/plain"]
                ),
            )
        )
        headers.append((b"content-length", str(len(body)).encode()))
    path, query = _path(rng), _query(rng)
    if rng.random() < 0.15:
        path = "/auth/idp/callback"
    if path == "/auth/idp/callback" and rng.random() < 0.7:
        # A live transaction: the fuzz reaches the iss check and the token endpoint.
        live = b"state=" + _STATE
        if rng.random() < 0.7:
            live += b"&iss=" + _ISS + b"&code=" + _text(rng, _B64, 0, 60).encode()
        query = live + (b"&" + query if query and rng.random() < 0.5 else b"")
        headers.append((b"cookie", _TX_COOKIE))
        method = "GET"
    return Case(method, path, query, headers, body)


def _cases(seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [_case(rng) for _ in range(ROUNDS)]


def _relay(idp: IdentityProvider) -> Relay:
    settings = base_settings(
        "http://127.0.0.1:8000",
        {"idp": oidc_connector(idp.issuer)},
        bearer={"issuer": idp.issuer, "audience": "api://orders"},
        routes={"stats": True},
    )
    return Relay(settings)


async def _asgi_call(app: Any, case: Case) -> tuple[int, list[tuple[bytes, bytes]]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": case.method,
        "scheme": "http",
        "path": case.path,
        "raw_path": case.path.encode("utf-8", "surrogatepass"),
        "query_string": case.query,
        "root_path": "",
        "headers": case.headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": case.body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, f"{len(starts)} response starts for {case.describe()}"
    return int(starts[0]["status"]), list(starts[0].get("headers", []))


def _wsgi_call(app: Any, case: Case) -> tuple[int, list[tuple[bytes, bytes]]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": case.method,
        "SCRIPT_NAME": "",
        # PEP 3333: the path as bytes decoded as latin-1
        "PATH_INFO": case.path.encode("utf-8", "surrogatepass").decode("latin-1"),
        "QUERY_STRING": case.query.decode("latin-1"),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(case.body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in case.headers:
        key = name.decode().upper().replace("-", "_")
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
        text = value.decode("latin-1")
        # WSGI servers fold repeated headers (cookies with "; ", others with ", ")
        joiner = "; " if key == "HTTP_COOKIE" else ", "
        environ[key] = f"{environ[key]}{joiner}{text}" if key in environ else text
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    body = b"".join(app(environ, start_response))
    assert started and isinstance(body, bytes), case.describe()
    status, headers = started[-1]
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    return int(status.split()[0]), raw


SEEDS = [20260101, 7, 4242]


def _check(statuses: Counter[int], idp: IdentityProvider) -> None:
    assert sum(statuses.values()) == ROUNDS
    # The cases reached many different answers (a fuzz stuck on one path proves little).
    assert {200, 302, 400, 404, 405}.issubset(statuses), statuses
    assert idp.counters.count(endpoint="token") > 0  # some reached the token endpoint


@pytest.mark.parametrize("seed", SEEDS)
def test_inv2_asgi_fuzz_never_500(idp: IdentityProvider, seed: int) -> None:
    relay = _relay(idp)
    app = AuthRelayMiddleware(asgi_app, relay=relay)
    statuses: Counter[int] = Counter()
    loop_errors: list[dict[str, Any]] = []

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
        for case in _cases(seed):
            try:
                if _STATE in case.query:
                    login = await _asgi_call(app, _LOGIN)
                    case = _with_transaction(case, login[1], idp.issuer)
                status, _ = await _asgi_call(app, case)
            except Exception as exc:  # the failure message carries the case to replay it
                raise AssertionError(f"{type(exc).__name__} for {case.describe()}") from exc
            assert status != 500, case.describe()
            statuses[status] += 1
        await relay.aclose()

    asyncio.run(run())
    relay.close()
    assert not loop_errors, loop_errors  # "Task exception was never retrieved" and the like
    _check(statuses, idp)


@pytest.mark.parametrize("seed", SEEDS)
def test_inv2_wsgi_fuzz_never_500(idp: IdentityProvider, seed: int) -> None:
    relay = _relay(idp)
    app = AuthRelayWSGIMiddleware(wsgi_app, relay=relay)
    statuses: Counter[int] = Counter()
    try:
        for case in _cases(seed):
            try:
                if _STATE in case.query:
                    case = _with_transaction(case, _wsgi_call(app, _LOGIN)[1], idp.issuer)
                status, _ = _wsgi_call(app, case)
            except Exception as exc:
                raise AssertionError(f"{type(exc).__name__} for {case.describe()}") from exc
            assert status != 500, case.describe()
            statuses[status] += 1
    finally:
        relay.close()
    _check(statuses, idp)


def test_ac04_asgi_split_cookie_headers_keep_the_login_binding(idp: IdentityProvider) -> None:
    relay = _relay(idp)
    app = AuthRelayMiddleware(asgi_app, relay=relay)
    errors: list[str] = []

    async def run() -> None:
        login = await _asgi_call(app, _LOGIN)
        split = Case(
            "GET",
            "/auth/idp/callback",
            b"state=" + _STATE + b"&iss=" + _ISS + b"&code=unknown-code",
            [(b"cookie", b"theme=dark"), (b"cookie", _TX_COOKIE), (b"accept", b"application/json")],
            b"",
        )
        status, _ = await _asgi_call(app, _with_transaction(split, login[1], idp.issuer))
        errors.append(str(status))
        await relay.aclose()

    asyncio.run(run())
    relay.close()
    # The binding was found: the code reached the token endpoint (which refused it).
    assert idp.counters.count(endpoint="token") == 1, errors
