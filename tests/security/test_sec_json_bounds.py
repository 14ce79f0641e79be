"""Every JSON entry point refuses hostile JSON with its own typed error, under ASGI and WSGI.

Hostile documents (hypothesis, :func:`upstream_helpers.hostile_json`): nested past the depth
limit (up to 4,000 levels, which used to raise ``RecursionError``), a repeated member,
over the size cap, ``NaN``/``Infinity``. Entry points: a bearer JWT's header and its
(correctly signed) claims, an ID token header at the callback, a back-channel logout
token, and the answers of the introspection endpoint, the JWKS, the discovery document
and the token endpoint (client credentials and code exchange).

Each example also checks INV-1 (no secret in the answer or the logs) and INV-2 (no 500,
no unhandled exception). The relay's clock moves 10 s per example, past every failure
cache, so each example reaches the parser again.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from joserfc.jws import JWSRegistry
from sec_helpers import KEY, Recorder
from upstream_helpers import hostile_json, nested, with_member

from asgi_lifespan import answer_lifespan
from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay.testing import IdentityProvider, free_port, serve_asgi
from authrelay.testing.servers import serve_wsgi
from authrelay.wsgi import AuthRelayWSGIMiddleware

SECRET = "test-secret"
AUDIENCE = "api://orders"
EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HEADER_CAP = 4 * 1024
# the reported cases: a header nested 1,450 deep (under 4 KB of base64), claims 3,000 deep
DEEP_HEADER = with_member({"alg": "RS256"}, "a", nested(1450, [False]))
DEEP_CLAIMS = with_member({"sub": "alice"}, "a", nested(3000, [False]))
TOKEN_CAP = 64 * 1024
METADATA_CAP = 512 * 1024


class Clock:
    """The relay's clock: real time plus what the test added."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_raw(idp: IdentityProvider, header: bytes, payload: bytes) -> str:
    """A compact JWS over exactly these header and payload bytes, by the provider's key."""
    key = idp.keys.current("RS256")
    signing_input = _b64(header) + "." + _b64(payload)
    signature = JWSRegistry.algorithms["RS256"].sign(signing_input.encode(), key)
    return signing_input + "." + _b64(signature)


def _valid_parts(token: str) -> tuple[bytes, bytes]:
    head, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return base64.urlsafe_b64decode(pad(head)), base64.urlsafe_b64decode(pad(payload))


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await answer_lifespan(receive, send)
    if scope["path"].startswith("/call/"):
        await scope["state"]["services"][scope["path"][6:]].get("/x")  # errors propagate
    user = scope.get("user")
    body = json.dumps({"kind": getattr(user, "kind", None)}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"].startswith("/call/"):
        environ["authrelay.services"][environ["PATH_INFO"][6:]].get("/x")
    user = environ.get("authrelay.principal")
    start_response("200 OK", [])
    return [json.dumps({"kind": getattr(user, "kind", None)}).encode()]


def _settings(base: str, issuer: str) -> Settings:
    return Settings.model_validate(
        {
            "secret_keys": [KEY],
            "public_base_url": base,
            "session": {"dev_insecure_cookies": True},
            "http": {"allow_insecure_loopback": True},
            "client": {"client_id": "test-client", "client_secret": SECRET},
            "bearer": {
                "issuer": issuer,
                "audience": AUDIENCE,
                "introspection_endpoint": f"{issuer}/introspect",
            },
            "connectors": {
                "idp": {
                    "standard": "oidc",
                    "issuer": issuer,
                    "client_id": "test-client",
                    "client_secret": SECRET,
                }
            },
            "services": {
                "billing": {
                    "base_url": "http://127.0.0.1:9",
                    "allow_http": True,
                    "flow": "client_credentials",
                    "scopes": ["billing.read"],
                    "negative_cache_ttl": 0,
                },
                "mine": {
                    "base_url": "http://127.0.0.1:9",
                    "allow_http": True,
                    "flow": "connector",
                    "connector": "idp",
                },
            },
        }
    )


@dataclass
class Served:
    base: str
    client: httpx.Client
    recorder: Recorder
    clock: Clock
    secrets: set[str]
    caplog: pytest.LogCaptureFixture

    def check(self, answer: httpx.Response, allowed: tuple[int, ...]) -> None:
        """INV-2 and the entry point's own status; INV-1 on the answer and the logs."""
        self.clock.offset += 10
        assert answer.status_code != 500, answer.text
        assert answer.status_code in allowed, (answer.status_code, answer.text[:300])
        seen = answer.text + json.dumps(list(answer.headers.multi_items())) + self.caplog.text
        for secret in self.secrets:
            assert secret not in seen
        unhandled = [r for r in self.caplog.records if r.exc_info]
        assert not unhandled, unhandled[0].getMessage()


@contextmanager
def _serve(idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture) -> Iterator[Served]:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    recorder = Recorder()
    clock = Clock()
    relay = Relay(
        _settings(base, idp.issuer),
        clock=clock,
        idp_transport=recorder.asynchronous(),
        idp_sync_transport=recorder.sync(),
    )
    server: AbstractContextManager[str]
    if shell == "wsgi":
        server = serve_wsgi(AuthRelayWSGIMiddleware(_wsgi_app, relay=relay), port=port)
    else:
        server = serve_asgi(AuthRelayMiddleware(_asgi_app, relay=relay), port=port)
    client = httpx.Client(timeout=30, follow_redirects=False)
    try:
        with server, client:
            yield Served(base, client, recorder, clock, {SECRET, KEY}, caplog)
    finally:
        relay.close()


def _answer(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/json"}, content=body)


def _rewrite_path(served: Served, suffix: str, body: bytes, form: bytes = b"") -> None:
    def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if urlsplit(str(request.url)).path.endswith(suffix) and form in request.content:
            return _answer(body)
        return response

    served.recorder.rewrite = rewrite


def _bearer(served: Served, token: str) -> httpx.Response:
    served.secrets.add(token)
    return served.client.get(f"{served.base}/me", headers={"authorization": f"Bearer {token}"})


# -- caller-supplied JWTs ---------------------------------------------------------------

_HEADER = {"alg": "RS256", "typ": "at+jwt", "kid": "k"}
_CLAIMS = {"iss": "i", "sub": "alice", "aud": AUDIENCE, "exp": 1, "iat": 1, "jti": "j"}


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_bearer_jwt_header_hostile_json_is_invalid_token(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(header=hostile_json(_HEADER, HEADER_CAP, deepest=1500))
        @example(header=DEEP_HEADER)
        def run(header: bytes) -> None:
            _probe_bearer_header(idp, served, header)

        run()


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_bearer_jwt_signed_hostile_claims_are_invalid_token(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(payload=hostile_json(_CLAIMS, 12 * 1024))
        @example(payload=DEEP_CLAIMS)
        def run(payload: bytes) -> None:
            kid = idp.keys.current("RS256").kid
            header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": kid}).encode()
            answer = _bearer(served, sign_raw(idp, header, payload))
            served.check(answer, (401, 431))  # 431: the header itself is too large
            if answer.status_code == 401:
                assert 'error="invalid_token"' in answer.headers["www-authenticate"]

        run()


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_backchannel_logout_token_hostile_header_is_400(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(header=hostile_json({"alg": "RS256", "typ": "logout+jwt"}, HEADER_CAP, deepest=1500))
        @example(header=DEEP_HEADER)
        def run(header: bytes) -> None:
            _probe_logout_header(idp, served, header)

        run()


# -- answers from the provider ------------------------------------------------------------


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_introspection_hostile_answer_is_503(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = {"active": True, "sub": "alice", "aud": AUDIENCE, "exp": 4102444800}
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(body=hostile_json(base, TOKEN_CAP))
        def run(body: bytes) -> None:
            _rewrite_path(served, "/introspect", body)
            served.check(_bearer(served, "opaque-" + secrets.token_urlsafe(16)), (503,))

        run()


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_jwks_hostile_answer_is_503(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(body=hostile_json(idp.keys.jwks(), METADATA_CAP))
        def run(body: bytes) -> None:
            _rewrite_path(served, "/jwks", body)
            token = idp.mint_access_token(audience=AUDIENCE, expires_in=3600)
            served.check(_bearer(served, token), (503,))

        run()


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_discovery_hostile_answer_is_503(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    document = httpx.get(f"{idp.issuer}/.well-known/openid-configuration").json()
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(body=hostile_json(document, METADATA_CAP))
        def run(body: bytes) -> None:
            _rewrite_path(served, "/openid-configuration", body)
            token = idp.mint_access_token(audience=AUDIENCE, expires_in=3600)
            served.check(_bearer(served, token), (503,))

        run()


_TOKEN_ANSWER = {"access_token": "A", "token_type": "Bearer", "expires_in": 300}


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_client_credentials_hostile_answer_is_502(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(body=hostile_json(_TOKEN_ANSWER, TOKEN_CAP))
        def run(body: bytes) -> None:
            _rewrite_path(served, "/token", body, b"grant_type=client_credentials")
            served.check(served.client.get(f"{served.base}/call/billing"), (502,))

        run()


def _callback(served: Served) -> httpx.Response:
    start = served.client.get(f"{served.base}/auth/idp/login")
    assert start.status_code == 302, start.text
    at_idp = served.client.get(start.headers["location"])
    assert at_idp.status_code in (302, 303), at_idp.text
    return served.client.get(at_idp.headers["location"], headers={"accept": "application/json"})


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_code_exchange_hostile_answer_is_refused(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(body=hostile_json(_TOKEN_ANSWER, TOKEN_CAP))
        def run(body: bytes) -> None:
            _rewrite_path(served, "/token", body, b"grant_type=authorization_code")
            served.check(_callback(served), (502,))

        run()


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_id_token_hostile_header_at_callback_is_400(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _serve(idp, shell, caplog) as served:

        @EXAMPLES
        @given(header=hostile_json({"alg": "RS256", "typ": "JWT"}, HEADER_CAP, deepest=1500))
        @example(header=DEEP_HEADER)
        def run(header: bytes) -> None:
            _probe_id_token_header(idp, served, header)

        run()


def _probe_bearer_header(idp: IdentityProvider, served: Served, header: bytes) -> None:
    payload = _valid_parts(idp.mint_access_token(audience=AUDIENCE))[1]
    answer = _bearer(served, sign_raw(idp, header, payload))
    served.check(answer, (401, 431))  # 431: the header itself is too large
    if answer.status_code == 401:
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def _probe_logout_header(idp: IdentityProvider, served: Served, header: bytes) -> None:
    payload = _valid_parts(idp.mint_logout_token(sid="s1"))[1]
    token = sign_raw(idp, header, payload)
    served.secrets.add(token)
    answer = served.client.post(
        f"{served.base}/auth/idp/backchannel-logout", data={"logout_token": token}
    )
    served.check(answer, (400, 413))  # 413: the request body itself is too large


def _probe_id_token_header(idp: IdentityProvider, served: Served, header: bytes) -> None:
    def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if b"grant_type=authorization_code" not in request.content:
            return response
        answer = json.loads(response.content)
        payload = _valid_parts(answer["id_token"])[1]
        answer["id_token"] = sign_raw(idp, header, payload)
        served.secrets.update({answer["access_token"], answer["id_token"]})
        return _answer(json.dumps(answer).encode())

    served.recorder.rewrite = rewrite
    answer = _callback(served)
    served.check(answer, (400,))
    assert answer.json()["error"] == "invalid_id_token"


@pytest.mark.parametrize(
    "probe", [_probe_bearer_header, _probe_logout_header, _probe_id_token_header]
)
@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_inv2_reported_deep_headers_outside_hypothesis(
    idp: IdentityProvider,
    shell: str,
    probe: Callable[[IdentityProvider, Served, bytes], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reported header, under the interpreter's usual recursion limit (hypothesis raises
    it while a property runs, which would hide a ``RecursionError`` at this depth)."""
    with _serve(idp, shell, caplog) as served:
        probe(idp, served, DEEP_HEADER)
