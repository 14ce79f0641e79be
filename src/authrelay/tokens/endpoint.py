"""Talking to a token endpoint: one POST, bounded retries, strict parsing, typed errors.

Defends against:

- replaying a grant that must not be replayed (RT-04, AC-08): :data:`NEVER` (code
  redemption) is never retried; :data:`UNREACHED` (refresh) is retried only when the
  request provably never reached the server (connect failure) or the server said
  429/503; :data:`SAFE` (client credentials, exchange, OBO) also retries other 5xx;
- hammering a struggling provider (CL-02): at most ``retries`` retries with exponential
  backoff and full jitter, ``Retry-After`` honoured up to 30 s, all inside one deadline;
  an attempt that timed out is not retried (it spent the whole deadline, TR-03);
- unusable answers (RFC 6749 §5.1, RFC 8693 §2.2.1, TX-02): a body that is not a JSON
  object, a missing ``access_token``, a ``token_type`` other than Bearer (``N_A``
  included), a non-numeric ``expires_in``, a missing or unexpected ``issued_token_type``;
- error answers (RFC 6749 §5.2) mapped to the error model: ``invalid_grant`` → the user
  must sign in again, ``interaction_required``/``consent_required`` → consent,
  ``invalid_client``/``unauthorized_client``/``unsupported_grant_type`` → configuration
  (logged at ERROR, RT-06), ``invalid_target`` (TX-05) and ``invalid_scope`` → 502;
- secrets in logs or messages: only the OAuth error code and the HTTP status are logged;
  the provider's ``error_description`` is never copied into an error.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx

from .. import _io
from .._io import Flow, ResponseTooLarge, Sleep, TransportFailure
from .._json import parse_object
from ..errors import (
    AuthRelayError,
    ConsentRequired,
    ReauthorizationRequired,
    UpstreamError,
    UpstreamTimeout,
)
from .client_auth import ClientAuthenticator
from .errors import TokenEndpointUnavailable
from .model import TokenResponse, usable_token

__all__ = [
    "NEVER",
    "SAFE",
    "UNREACHED",
    "ErrorContext",
    "RetryPolicy",
    "delay_seconds",
    "request_token",
]

logger = logging.getLogger("authrelay.tokens")

Replay = Literal["safe", "unreached", "never"]
SAFE: Final = "safe"
UNREACHED: Final = "unreached"
NEVER: Final = "never"
_MAX_RETRY_AFTER = 30.0
_BASE_DELAY = 0.1
_CONFIG_ERRORS = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type"})
_CONSENT_ERRORS = frozenset({"interaction_required", "consent_required", "login_required"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a token request may be retried."""

    replay: Replay = SAFE
    retries: int = 2
    deadline: float = 10.0


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Who the request is for, put in errors (service or connector, login URL, scopes)."""

    service: str | None = None
    connector: str | None = None
    login_url: str | None = None
    scopes: tuple[str, ...] = ()
    user_grant: bool = True
    """False for app-only grants: ``invalid_grant`` then means misconfiguration."""


def request_token(
    endpoint: str,
    form: Mapping[str, str],
    auth: ClientAuthenticator | None,
    *,
    issuer: str | None,
    policy: RetryPolicy,
    context: ErrorContext,
    max_bytes: int = 64 * 1024,
    timeout: float = 10.0,
    expect_issued_token_type: str | None = None,
) -> Flow[TokenResponse]:
    """POST ``form`` to ``endpoint`` with client authentication; return the parsed answer."""
    started = time.monotonic()
    attempt = 0
    while True:
        request = _build(endpoint, form, auth, issuer)
        wait: float | None
        try:
            response = yield from _io.send(request, max_bytes=max_bytes, total_timeout=timeout)
        except TransportFailure as failure:
            # A timed-out attempt spent the whole deadline: answer now rather than wait again.
            retryable = not (failure.timeout and failure.reached) and (
                policy.replay == SAFE or (policy.replay == UNREACHED and not failure.reached)
            )
            wait = _backoff(attempt) if retryable else None
            error: AuthRelayError = (
                UpstreamTimeout("the token endpoint did not answer in time", **_up(context))
                if failure.timeout and failure.reached
                else TokenEndpointUnavailable(
                    "the token endpoint cannot be reached", retry_after=5, **_up(context)
                )
            )
            logger.warning(
                "token_request_failed endpoint=%s reached=%s timeout=%s attempt=%d",
                endpoint,
                failure.reached,
                failure.timeout,
                attempt,
            )
        except ResponseTooLarge:
            raise UpstreamError("the token endpoint answer is too large", **_up(context)) from None
        else:
            status = response.status_code
            if status < 400 or status == 400 or status == 401:
                return _parse(response, context, expect_issued_token_type)
            retry_after = _retry_after(response)
            transient = status in (429, 503) or (status >= 500 and policy.replay == SAFE)
            wait = None
            if transient and policy.replay != NEVER:
                if retry_after is None:
                    wait = _backoff(attempt)
                elif retry_after <= _MAX_RETRY_AFTER:
                    wait = retry_after
            logger.warning(
                "token_endpoint_status endpoint=%s status=%d attempt=%d", endpoint, status, attempt
            )
            if status in (429, 503):
                error = TokenEndpointUnavailable(
                    "the token endpoint is temporarily unavailable",
                    retry_after=max(1, math.ceil(retry_after or 5)),
                    **_up(context),
                )
            elif status >= 500:
                error = UpstreamError("the token endpoint failed", **_up(context))
            else:
                return _parse(response, context, expect_issued_token_type)
        if policy.replay == NEVER or wait is None or attempt >= policy.retries:
            raise error
        if time.monotonic() - started + wait > policy.deadline:
            raise error
        attempt += 1
        yield Sleep(wait)


def _up(context: ErrorContext) -> dict[str, Any]:
    return {"service": context.service, "connector": context.connector}


def _backoff(attempt: int) -> float:
    # Exponential backoff with full jitter.
    return random.uniform(0, _BASE_DELAY * (2**attempt))


def delay_seconds(response: httpx.Response) -> int | None:
    """The ``Retry-After`` header as delay-seconds (RFC 9110 §10.2.3: ASCII digits), else None.

    An HTTP-date or anything else is None; so are look-alike digits such as ``²``, which
    ``str.isdigit`` accepts but ``int`` refuses.
    """
    value = response.headers.get("retry-after", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: fall back to backoff
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _build(
    endpoint: str, form: Mapping[str, str], auth: ClientAuthenticator | None, issuer: str | None
) -> httpx.Request:
    body = dict(form)
    headers = {"Accept": "application/json"}
    if auth is not None:
        auth.apply(body, headers, token_endpoint=endpoint, issuer=issuer)
    return httpx.Request("POST", endpoint, data=body, headers=headers)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        return parse_object(response.content, max_bytes=len(response.content))
    except ValueError:
        return None


def _parse(
    response: httpx.Response, context: ErrorContext, expect_issued: str | None
) -> TokenResponse:
    data = _json_object(response)
    if response.status_code != 200:
        raise token_error(response.status_code, data, context)
    if data is None:
        raise UpstreamError("the token endpoint answer is not a JSON object", **_up(context))
    access_token = data.get("access_token")
    token_type = data.get("token_type")
    if not isinstance(access_token, str) or not access_token:
        raise UpstreamError("the token endpoint answer has no access_token", **_up(context))
    if not usable_token(access_token):  # RFC 6749 A.12, RFC 6750 §2.1
        raise UpstreamError("the token endpoint issued an unusable access token", **_up(context))
    # RFC 6749 §7.1, RFC 8693 §2.2.1: only Bearer tokens are usable here (N_A is not).
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise UpstreamError("the token endpoint issued a token that is not Bearer", **_up(context))
    expires_in = data.get("expires_in")
    if expires_in is not None:
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or not math.isfinite(expires_in)
            or expires_in <= 0
        ):
            raise UpstreamError("the token endpoint answer has a bad expires_in", **_up(context))
    issued = data.get("issued_token_type")
    if expect_issued is not None and issued != expect_issued:
        # RFC 8693 §2.2.1 (TX-02): issued_token_type is required and must be what we asked.
        raise UpstreamError("the token endpoint issued an unexpected token type", **_up(context))
    scope = data.get("scope")
    refresh = data.get("refresh_token")
    if isinstance(refresh, str) and refresh and not usable_token(refresh):
        raise UpstreamError("the token endpoint issued an unusable refresh token", **_up(context))
    id_token = data.get("id_token")
    return TokenResponse(
        access_token=access_token,
        token_type="Bearer",
        expires_in=float(expires_in) if expires_in is not None else None,
        scope=tuple(scope.split()) if isinstance(scope, str) else None,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
        issued_token_type=issued if isinstance(issued, str) else None,
        raw=data,
    )


def token_error(
    status: int, data: Mapping[str, Any] | None, context: ErrorContext
) -> AuthRelayError:
    """The typed error for an RFC 6749 §5.2 error answer."""
    code = data.get("error") if data is not None else None
    code = code if isinstance(code, str) and len(code) <= 64 else None
    up = _up(context)
    logger.log(
        logging.ERROR if code in _CONFIG_ERRORS else logging.WARNING,
        "token_endpoint_error status=%d error=%s service=%s connector=%s",
        status,
        code,
        context.service,
        context.connector,
    )
    if code == "invalid_grant" and context.user_grant:
        reauth = ReauthorizationRequired(
            "the identity provider refused the grant; sign in again",
            connector=context.connector,
            login_url=context.login_url,
        )
        reauth.oauth_error = code
        return reauth
    if code in _CONSENT_ERRORS:
        consent = ConsentRequired(
            "the user has not consented to what this call needs",
            connector=context.connector,
            login_url=context.login_url,
            scopes=context.scopes,
        )
        consent.oauth_error = code
        return consent
    if code == "temporarily_unavailable":
        return TokenEndpointUnavailable(
            "the token endpoint is temporarily unavailable", retry_after=5, oauth_error=code, **up
        )
    if code in _CONFIG_ERRORS:
        return UpstreamError(
            f"the token endpoint rejected authrelay's client ({code}); check the settings",
            oauth_error=code,
            **up,
        )
    if code is not None:
        return UpstreamError(f"the token endpoint answered {code}", oauth_error=code, **up)
    return UpstreamError(f"the token endpoint answered HTTP {status}", **up)
