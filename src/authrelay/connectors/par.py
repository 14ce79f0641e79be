"""Pushed authorization requests (RFC 9126): the authorization parameters go to the provider
over an authenticated back channel, and the browser carries only a ``request_uri``.

Defends against (SECURITY §1, §11):

- tampering with or leaking the authorization request in the browser (PAR-01): every
  parameter (PKCE challenge, ``state``, ``nonce``, ``redirect_uri``, scopes) is pushed with
  client authentication; the front channel carries only ``client_id`` and ``request_uri``
  (RFC 9126 §4);
- a client that silently falls back to a plain request (PAR-02): with ``par = true`` a
  provider without a PAR endpoint fails the login clearly instead;
- unusable or hostile PAR answers (PAR-03): the answer is parsed by the bounded JSON
  parser; ``request_uri`` must be a short printable string and ``expires_in`` a positive
  integer (RFC 9126 §2.2), else the login fails as an upstream error;
- errors that leak or hang (PAR-04): a refusal (RFC 9126 §2.3) is a 502 naming only the
  provider's ``error`` code; a 5xx, 429 or time-out is a 503 with ``Retry-After``. The
  request is never retried: a pushed request may have been stored.
"""

from __future__ import annotations

import logging
import re
import weakref
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import _io
from .._io import Flow
from .._json import parse_object
from ..errors import IdentityProviderUnavailable, UpstreamError
from .connector import Connector, Endpoints

__all__ = ["front_channel_uri", "push_authorization_request", "uses_par"]

logger = logging.getLogger("authrelay.connectors.par")

_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §A.7
_REQUEST_URI = re.compile(r"[\x21-\x7e]{1,1024}")
_warned: weakref.WeakSet[Connector] = weakref.WeakSet()  # once per connector


def uses_par(connector: Connector, endpoints: Endpoints) -> bool:
    """Whether this login pushes its request (raises when ``par = true`` cannot be honoured)."""
    setting = connector.settings.par
    if setting is False:
        if endpoints.require_pushed_authorization_requests and connector not in _warned:
            _warned.add(connector)
            logger.warning(
                "par_required connector=%s: the provider requires pushed authorization "
                "requests (require_pushed_authorization_requests) but par = false; it will "
                'refuse every sign-in. Set par = "auto" or true.',
                connector.name,
            )
        return False
    if endpoints.pushed_authorization_request is None:
        if setting is True or endpoints.require_pushed_authorization_requests:
            raise UpstreamError(
                "the provider publishes no pushed_authorization_request_endpoint, "
                "which par = true (or its own metadata) requires",
                connector=connector.name,
            )
        return False
    return setting is True or endpoints.require_pushed_authorization_requests


def push_authorization_request(
    connector: Connector, endpoints: Endpoints, params: dict[str, str]
) -> Flow[str]:
    """POST ``params`` to the PAR endpoint with client authentication; the ``request_uri``.

    A ``private_key_jwt`` assertion names the issuer (else the token endpoint) as its
    audience (RFC 9126 §2).
    """
    url = endpoints.pushed_authorization_request
    assert url is not None
    request = connector.token_request(url, params, audience=endpoints.token)
    http = connector.http
    unavailable = IdentityProviderUnavailable(
        "the pushed authorization request endpoint is unavailable",
        connector=connector.name,
        retry_after=5,
    )
    try:
        response = yield from _io.send(
            request, max_bytes=http.max_token_bytes, total_timeout=http.token_timeout
        )
    except _io.TransportFailure:
        raise unavailable from None
    except _io.ResponseTooLarge:
        raise UpstreamError(
            "the pushed authorization request endpoint's answer is too large",
            connector=connector.name,
        ) from None
    try:
        data = parse_object(response.content, max_bytes=http.max_token_bytes)
    except ValueError:
        data = None
    status = response.status_code
    if status >= 500 or status == 429:
        value = response.headers.get("retry-after", "")
        if value.isdigit():
            unavailable.retry_after = max(1, min(int(value), 3600))
        raise unavailable
    if status not in (200, 201):
        code = data.get("error") if data is not None else None
        named = code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else "no error code"
        logger.warning("par_refused connector=%s status=%d error=%s", connector.name, status, named)
        raise UpstreamError(
            f"the pushed authorization request endpoint refused the sign-in ({named})",
            connector=connector.name,
            oauth_error=named if named != "no error code" else None,
        )
    request_uri = data.get("request_uri") if data is not None else None
    expires_in = data.get("expires_in") if data is not None else None
    if not isinstance(request_uri, str) or not _REQUEST_URI.fullmatch(request_uri):
        raise UpstreamError(
            "the pushed authorization request endpoint returned no usable request_uri",
            connector=connector.name,
        )
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise UpstreamError(
            "the pushed authorization request endpoint returned no usable expires_in",
            connector=connector.name,
        )
    return request_uri


def front_channel_uri(authorization_endpoint: str, client_id: str, request_uri: str) -> str:
    """The authorization endpoint with only ``client_id`` and ``request_uri`` (RFC 9126 §4).

    The endpoint's own query is kept (RFC 6749 §3.1).
    """
    parts = urlsplit(authorization_endpoint)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [("client_id", client_id), ("request_uri", request_uri)]
    return urlunsplit(parts._replace(query=urlencode(query)))
