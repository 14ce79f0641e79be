"""authrelay: call the services behind your app on behalf of whoever is calling it.

ASGI and WSGI middleware that resolves the caller (session cookie or bearer token) into a
:class:`Principal`, attaches lazily authorized clients for downstream services, and
mounts connector login routes, all from one declarative :class:`Settings` object.
"""

from __future__ import annotations

from .asgi import AuthRelayMiddleware
from .errors import (
    AuthenticationError,
    AuthRelayError,
    CallbackError,
    ConfigurationError,
    ConsentRequired,
    DownstreamClientError,
    DownstreamError,
    DownstreamServerError,
    IdentityProviderUnavailable,
    InsufficientScope,
    InvalidToken,
    MalformedCredentials,
    MissingCredentials,
    ReauthorizationRequired,
    RequestTooLarge,
    TokenStoreUnavailable,
    UnknownService,
    UpstreamError,
    UpstreamTimeout,
)
from .principal import Credentials, Principal
from .prometheus import prometheus_metrics
from .relay import Relay
from .services import AsyncServiceClient, CallOptions, ServiceClient, Services, SyncServiceClient
from .settings import Settings
from .tokens import AccessToken, TokenEndpointUnavailable, UserTokenSource

__all__ = [
    "AccessToken",
    "AsyncServiceClient",
    "AuthRelayError",
    "AuthRelayMiddleware",
    "AuthenticationError",
    "CallOptions",
    "CallbackError",
    "ConfigurationError",
    "ConsentRequired",
    "Credentials",
    "DownstreamClientError",
    "DownstreamError",
    "DownstreamServerError",
    "IdentityProviderUnavailable",
    "InsufficientScope",
    "InvalidToken",
    "MalformedCredentials",
    "MissingCredentials",
    "Principal",
    "ReauthorizationRequired",
    "Relay",
    "RequestTooLarge",
    "ServiceClient",
    "Services",
    "Settings",
    "SyncServiceClient",
    "TokenEndpointUnavailable",
    "TokenStoreUnavailable",
    "UnknownService",
    "UpstreamError",
    "UpstreamTimeout",
    "UserTokenSource",
    "prometheus_metrics",
]

__version__ = "0.1.0"
