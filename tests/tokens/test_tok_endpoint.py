"""The token-endpoint flow driven by hand: parsing, error mapping and retry policy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authrelay._io import Sleep, TransportFailure
from authrelay.errors import (
    ConsentRequired,
    ReauthorizationRequired,
    UpstreamError,
    UpstreamTimeout,
)
from authrelay.settings import ClientSettings
from authrelay.testing import run_flow
from authrelay.tokens import (
    NEVER,
    SAFE,
    UNREACHED,
    ClientAuthenticator,
    ErrorContext,
    RetryPolicy,
    TokenEndpointUnavailable,
    request_token,
)

ENDPOINT = "https://idp.example/token"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
Outcome = httpx.Response | BaseException


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def _run(
    outcomes: list[Outcome],
    *,
    replay: str = SAFE,
    expect: str | None = None,
    context: ErrorContext | None = None,
) -> tuple[Any, list[httpx.Request], list[float]]:
    """Drive the flow; each request gets the next outcome. Returns value, requests, sleeps."""
    auth = ClientAuthenticator(ClientSettings(client_id="app", client_secret="s3cret"))
    flow = request_token(
        ENDPOINT,
        {"grant_type": "client_credentials"},
        auth,
        issuer="https://idp.example",
        policy=RetryPolicy(replay, 2, 60.0),  # type: ignore[arg-type]
        context=context or ErrorContext(service="svc"),
        expect_issued_token_type=expect,
    )
    queue: Iterator[Outcome] = iter(outcomes)
    requests: list[httpx.Request] = []
    sleeps: list[float] = []

    def respond(effect: Any) -> httpx.Response | None:
        if isinstance(effect, Sleep):
            sleeps.append(effect.seconds)
            return None
        assert isinstance(effect, httpx.Request)
        requests.append(effect)
        outcome = next(queue)
        if isinstance(outcome, BaseException):
            raise outcome  # thrown into the flow, as the driver does
        return outcome

    return run_flow(flow, respond), requests, sleeps


OK = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 300}


def test_success_is_parsed_and_client_authenticated() -> None:
    token, requests, _ = _run([_json(200, {**OK, "scope": "a b"})])
    assert token.access_token == "at-1"
    assert token.expires_in == 300.0
    assert token.scope == ("a", "b")
    assert "at-1" not in repr(token)
    assert requests[0].headers["authorization"].startswith("Basic ")
    assert b"grant_type=client_credentials" in requests[0].read()


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer"},
        {"access_token": "", "token_type": "Bearer"},
        {"access_token": "x", "token_type": "N_A"},
        {"access_token": "x", "token_type": "DPoP"},
        {"access_token": "x", "token_type": "Bearer", "expires_in": True},
        {"access_token": "x", "token_type": "Bearer", "expires_in": -5},
        {"access_token": "x", "token_type": "Bearer", "expires_in": "soon"},
        ["not", "an", "object"],
    ],
)
def test_unusable_answers_are_upstream_errors(body: Any) -> None:
    with pytest.raises(UpstreamError) as caught:
        _run([_json(200, body)])
    assert type(caught.value) is UpstreamError
    assert caught.value.status == 502


def test_malformed_json_is_502_and_not_retried() -> None:
    with pytest.raises(UpstreamError):
        _run([httpx.Response(200, content=b"<html>oops")])


def test_tx02_issued_token_type_must_match() -> None:
    with pytest.raises(UpstreamError, match="unexpected token type"):
        _run([_json(200, OK)], expect=ACCESS)
    token, _, _ = _run([_json(200, {**OK, "issued_token_type": ACCESS})], expect=ACCESS)
    assert token.issued_token_type == ACCESS


def test_missing_expires_in_is_none() -> None:
    token, _, _ = _run([_json(200, {"access_token": "x", "token_type": "bearer"})])
    assert token.expires_in is None


def test_invalid_grant_means_sign_in_again() -> None:
    context = ErrorContext(connector="github", login_url="/auth/github/login")
    with pytest.raises(ReauthorizationRequired) as caught:
        _run([_json(400, {"error": "invalid_grant", "error_description": "secret-ish"})],
             context=context)  # fmt: skip
    assert caught.value.connector == "github"
    assert "secret-ish" not in str(caught.value)


def test_invalid_grant_for_app_tokens_is_configuration() -> None:
    with pytest.raises(UpstreamError) as caught:
        _run([_json(400, {"error": "invalid_grant"})], context=ErrorContext(user_grant=False))
    assert caught.value.oauth_error == "invalid_grant"


@pytest.mark.parametrize("code", ["interaction_required", "consent_required"])
def test_consent_errors(code: str) -> None:
    with pytest.raises(ConsentRequired) as caught:
        _run([_json(400, {"error": code})], context=ErrorContext(scopes=("mail.read",)))
    assert caught.value.scopes == ("mail.read",)


@pytest.mark.parametrize(
    "code", ["invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope",
             "invalid_target"],
)  # fmt: skip
def test_rt06_tx05_configuration_errors_are_502_without_retry(
    code: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(UpstreamError) as caught:
        _run([_json(401 if code == "invalid_client" else 400, {"error": code})])
    assert caught.value.status == 502
    assert caught.value.oauth_error == code
    if code in ("invalid_client", "unauthorized_client", "unsupported_grant_type"):
        assert any(r.levelname == "ERROR" for r in caplog.records)


def test_cl02_5xx_retried_at_most_twice() -> None:
    with pytest.raises(UpstreamError):
        _run([_json(500, {})] * 3)
    _, requests, sleeps = _run([_json(500, {}), _json(502, {}), _json(200, OK)])
    assert len(requests) == 3 and len(sleeps) == 2


def test_cl02_retry_after_is_honoured_up_to_30_seconds() -> None:
    _, _, sleeps = _run([_json(429, {}, {"retry-after": "7"}), _json(200, OK)])
    assert sleeps == [7.0]
    with pytest.raises(TokenEndpointUnavailable) as caught:
        _run([_json(503, {}, {"retry-after": "120"})])
    assert caught.value.retry_after == 120


def test_connect_failure_is_503_after_retries() -> None:
    down = TransportFailure("refused", reached=False, timeout=False)
    with pytest.raises(TokenEndpointUnavailable) as caught:
        _run([down, down, down])
    assert caught.value.status == 503


def test_read_timeout_is_504_without_retry() -> None:
    # the timed-out attempt spent the whole deadline (TR-03): no second wait
    slow = TransportFailure("read timeout", reached=True, timeout=True)
    with pytest.raises(UpstreamTimeout):
        _run([slow, _json(200, OK)])


def test_rt04_unreached_policy_retries_only_provably_unsent_requests() -> None:
    refused = TransportFailure("refused", reached=False, timeout=False)
    _, requests, _ = _run([refused, _json(200, OK)], replay=UNREACHED)
    assert len(requests) == 2
    _, requests, _ = _run([_json(503, {}), _json(200, OK)], replay=UNREACHED)
    assert len(requests) == 2
    for outcome in (
        TransportFailure("read timeout", reached=True, timeout=True),
        _json(500, {}),
    ):
        with pytest.raises(UpstreamError):
            _run([outcome, _json(200, OK)], replay=UNREACHED)


def test_ac08_never_policy_never_retries() -> None:
    for outcome in (TransportFailure("refused", reached=False, timeout=False), _json(503, {})):
        with pytest.raises(UpstreamError):
            _run([outcome, _json(200, OK)], replay=NEVER)
