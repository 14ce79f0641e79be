"""Token acquisition: the cache, client authentication, grants and the token endpoint.

Everything here is sans-IO (flows yield ``httpx.Request`` and receive
``httpx.Response``); :mod:`authrelay.services` runs them on the relay's drivers.
"""

from __future__ import annotations

from .cache import CachedToken, TokenCache
from .client_auth import ClientAuthenticator
from .endpoint import NEVER, SAFE, UNREACHED, ErrorContext, RetryPolicy, request_token
from .errors import TokenEndpointUnavailable
from .model import AccessToken, TokenResponse
from .source import UserTokenSource

__all__ = [
    "NEVER",
    "SAFE",
    "UNREACHED",
    "AccessToken",
    "CachedToken",
    "ClientAuthenticator",
    "ErrorContext",
    "RetryPolicy",
    "TokenCache",
    "TokenEndpointUnavailable",
    "TokenResponse",
    "UserTokenSource",
    "request_token",
]
