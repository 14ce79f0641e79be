"""The one exception tree of authrelay.

Every error authrelay raises is an :class:`AuthRelayError`. Each class carries an
OAuth-shaped ``error`` code, a human ``description`` that never contains a token or a
secret, and the HTTP ``status`` it maps to when the application lets it propagate::

    AuthRelayError
    ├── ConfigurationError            (raised at start; never at request time)
    ├── AuthenticationError           401  no or bad caller credentials
    │   ├── MissingCredentials        401  E-MISSING   (challenge without error=)
    │   ├── InvalidToken              401  E-INVALID   error="invalid_token"
    │   └── MalformedCredentials      400  E-MALFORMED error="invalid_request"
    ├── InsufficientScope             403  E-SCOPE     error="insufficient_scope"
    ├── RequestTooLarge               431  E-TOOBIG
    ├── ReauthorizationRequired       401/302  E-REAUTH  the user must (re)connect
    │   └── ConsentRequired           403  more scopes than were granted
    ├── CallbackError                 400  E-CALLBACK  a login callback failed
    ├── UnknownService                500  a route asked for a service not configured
    ├── DownstreamError               the downstream service answered 4xx/5xx (``call``)
    │   ├── DownstreamClientError
    │   └── DownstreamServerError
    └── UpstreamError                 502  E-UPSTREAM  token endpoint / IdP unusable
        ├── UpstreamTimeout           504  E-UPSTREAM-TIMEOUT
        ├── IdentityProviderUnavailable 503 E-IDP-DOWN (identity cannot be decided)
        └── TokenStoreUnavailable     503  E-STORE-DOWN

Third-party exceptions (httpx, joserfc, redis, sqlite3) are translated at the boundary
into these; their text is never shown to the HTTP caller.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthRelayError",
    "AuthenticationError",
    "CallbackError",
    "ConfigurationError",
    "ConsentRequired",
    "DownstreamClientError",
    "DownstreamError",
    "DownstreamServerError",
    "IdentityProviderUnavailable",
    "InsufficientScope",
    "InvalidToken",
    "MalformedCredentials",
    "MissingCredentials",
    "ReauthorizationRequired",
    "RequestTooLarge",
    "TokenStoreUnavailable",
    "UnknownService",
    "UpstreamError",
    "UpstreamTimeout",
    "failure_code",
]


class AuthRelayError(Exception):
    """Root of every authrelay error.

    ``error`` is the OAuth-style code put in response bodies, ``description`` a short
    explanation safe to show to a caller, ``status`` the HTTP status it maps to.
    """

    error: ClassVar[str] = "server_error"
    status: ClassVar[int] = 500

    def __init__(self, description: str = "", **context: Any) -> None:
        self.description = description or self.__class__.__doc__.strip().splitlines()[0]  # type: ignore[union-attr]
        self.context = context
        super().__init__(self.description)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


class ConfigurationError(AuthRelayError):
    """The settings are invalid; raised when the relay is built, never per request."""

    error = "configuration_error"

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid authrelay settings:\n  " + "\n  ".join(self.problems))


class AuthenticationError(AuthRelayError):
    """The caller could not be authenticated."""

    error = "unauthorized"
    status = 401


class MissingCredentials(AuthenticationError):
    """This route needs a signed-in user or a bearer token."""

    error = "unauthorized"


class InvalidToken(AuthenticationError):
    """The credential is invalid, expired or revoked."""

    error = "invalid_token"


class MalformedCredentials(AuthenticationError):
    """The request carries malformed authorization (RFC 6750 §3.1 invalid_request)."""

    error = "invalid_request"
    status = 400


class InsufficientScope(AuthRelayError):
    """The credential lacks a scope this route requires."""

    error = "insufficient_scope"
    status = 403

    def __init__(self, description: str = "", *, scopes: tuple[str, ...] = ()) -> None:
        self.scopes = scopes
        super().__init__(description or f"this route needs the scope {' '.join(scopes)}")


class RequestTooLarge(AuthRelayError):
    """An authorization or cookie header is larger than authrelay accepts."""

    error = "request_header_too_large"
    status = 431


class ReauthorizationRequired(AuthRelayError):
    """The user must sign in again or reconnect the connector behind a service."""

    error = "connector_authorization_required"
    status = 401

    def __init__(
        self,
        description: str = "",
        *,
        connector: str | None = None,
        login_url: str | None = None,
        oauth_error: str | None = None,
    ) -> None:
        self.connector = connector
        self.login_url = login_url
        self.oauth_error = oauth_error
        """The token endpoint's RFC 6749 §5.2 code behind this error, if any."""
        super().__init__(description)


class ConsentRequired(ReauthorizationRequired):
    """The user has not granted the scopes this call needs."""

    error = "insufficient_scope"
    status = 403

    def __init__(
        self,
        description: str = "",
        *,
        connector: str | None = None,
        login_url: str | None = None,
        scopes: tuple[str, ...] = (),
    ) -> None:
        self.scopes = scopes
        super().__init__(description, connector=connector, login_url=login_url)


class CallbackError(AuthRelayError):
    """A login callback failed; the state is consumed and the session unchanged."""

    status = 400

    def __init__(self, error: str, description: str = "") -> None:
        self.code = error
        super().__init__(description or error.replace("_", " "))


class UnknownService(AuthRelayError, KeyError):
    """A route asked for a downstream service that is not configured."""

    error = "unknown_service"

    def __init__(self, name: str, configured: list[str]) -> None:
        self.name = name
        self.configured = configured
        listed = ", ".join(sorted(configured)) or "none"
        super().__init__(f"no service named {name!r}; configured services: {listed}")

    def __str__(self) -> str:
        return self.description


class UpstreamError(AuthRelayError):
    """The identity provider or token endpoint gave an unusable answer."""

    error = "upstream_token_error"
    status = 502

    def __init__(
        self,
        description: str = "",
        *,
        service: str | None = None,
        connector: str | None = None,
        oauth_error: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.service = service
        self.connector = connector
        self.oauth_error = oauth_error
        self.retry_after = retry_after
        super().__init__(description)


class UpstreamTimeout(UpstreamError):
    """The identity provider or token endpoint did not answer in time."""

    error = "upstream_timeout"
    status = 504


class IdentityProviderUnavailable(UpstreamError):
    """The caller's identity cannot be decided: the identity provider is unreachable."""

    error = "temporarily_unavailable"
    status = 503


class TokenStoreUnavailable(UpstreamError):
    """The token store cannot be reached; nothing was changed."""

    error = "temporarily_unavailable"
    status = 503


class DownstreamError(AuthRelayError):
    """The downstream service answered with an error status."""

    error = "downstream_error"
    status = 502

    def __init__(self, description: str, *, status_code: int, body: bytes, service: str) -> None:
        self.status_code = status_code
        self.body = body
        self.service = service
        super().__init__(description)


class DownstreamClientError(DownstreamError):
    """The downstream service answered 4xx."""


class DownstreamServerError(DownstreamError):
    """The downstream service answered 5xx."""


def failure_code(exc: BaseException) -> str:
    """A failure's code: the OAuth error the token endpoint gave (RFC 6749 §5.2), else
    authrelay's ``error``, else ``"other"`` for an exception that is not authrelay's."""
    oauth_error = getattr(exc, "oauth_error", None)
    if isinstance(oauth_error, str) and oauth_error:
        return oauth_error
    return exc.error if isinstance(exc, AuthRelayError) else "other"
