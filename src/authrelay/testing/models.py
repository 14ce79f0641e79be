"""Registration data for the test identity provider: clients, users and resources.

These are plain frozen dataclasses. They defend against one thing: a test that registers a
client with contradictory settings (a public client with ``client_secret_basic``, a
``private_key_jwt`` client without keys) fails at construction with a clear message rather
than behaving leniently later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AccessTokenFormat",
    "AgentIdentity",
    "AuthMethod",
    "OAuthClient",
    "Resource",
    "TestUser",
]

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
AccessTokenFormat = Literal["jwt", "opaque"]

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
KNOWN_GRANTS = (
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
    GRANT_JWT_BEARER,
)
SIGNING_ALGS = ("RS256", "PS256", "ES256", "EdDSA")


@dataclass(frozen=True)
class OAuthClient:
    """A registered OAuth client.

    ``client_secret=None`` makes a public client (``token_endpoint_auth_method`` must then be
    ``"none"``, which is chosen automatically). ``scopes=None`` allows any known scope.
    ``loopback_any_port`` lets ``http://127.0.0.1:<any port>/path`` match a registered
    ``http://127.0.0.1/path`` redirect URI (RFC 8252 §7.3). ``allowed_audiences`` limits the
    audiences/resources this client may ask tokens for (None = any registered one).
    ``app_id_uris`` name this client when it acts as an API: an on-behalf-of assertion must
    be addressed to ``client_id`` or one of these. ``access_token_format`` is the format of
    access tokens issued without a resource (default opaque).
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    redirect_uris: Sequence[str] = ()
    grant_types: Sequence[str] = (GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN)
    scopes: Sequence[str] | None = None
    token_endpoint_auth_method: AuthMethod | None = None
    jwks: Mapping[str, Any] | None = None
    post_logout_redirect_uris: Sequence[str] = ()
    allowed_audiences: Sequence[str] | None = None
    loopback_any_port: bool = False
    app_id_uris: Sequence[str] = ()
    id_token_signed_response_alg: str = "RS256"
    access_token_format: AccessTokenFormat = "opaque"
    backchannel_logout_uri: str | None = None
    """Where the provider POSTs logout tokens (OIDC Back-Channel Logout 1.0)."""

    def __post_init__(self) -> None:
        if not self.client_id:
            raise ValueError("OAuthClient.client_id must not be empty")
        method = self.token_endpoint_auth_method
        if method is None:
            if self.client_secret is None:
                method = "private_key_jwt" if self.jwks is not None else "none"
            else:
                method = "client_secret_basic"
            object.__setattr__(self, "token_endpoint_auth_method", method)
        if method == "none" and self.client_secret is not None:
            raise ValueError(f"client {self.client_id!r}: a public client has no secret")
        if method in ("client_secret_basic", "client_secret_post") and not self.client_secret:
            raise ValueError(f"client {self.client_id!r}: {method} needs a client_secret")
        if method == "private_key_jwt" and not self.jwks:
            raise ValueError(f"client {self.client_id!r}: private_key_jwt needs jwks")
        unknown = [g for g in self.grant_types if g not in KNOWN_GRANTS]
        if unknown:
            raise ValueError(f"client {self.client_id!r}: unknown grant types {unknown}")
        if self.id_token_signed_response_alg not in SIGNING_ALGS:
            raise ValueError(f"client {self.client_id!r}: unsupported id token alg")
        for name in ("redirect_uris", "grant_types", "post_logout_redirect_uris", "app_id_uris"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("scopes", "allowed_audiences"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    @property
    def auth_method(self) -> AuthMethod:
        """The token endpoint authentication method, resolved."""
        method = self.token_endpoint_auth_method
        assert method is not None  # set in __post_init__
        return method

    @property
    def is_public(self) -> bool:
        """True for clients that cannot keep a secret (``none`` authentication)."""
        return self.auth_method == "none"


@dataclass(frozen=True)
class TestUser:
    """A user who can sign in at the provider. ``claims`` are added to ID tokens and UserInfo."""

    __test__ = False  # not a pytest test class

    sub: str
    username: str
    password: str = field(default="password", repr=False)
    name: str | None = None
    email: str | None = None
    email_verified: bool = True
    picture: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    def profile(self, scopes: Sequence[str] = ("profile", "email")) -> dict[str, Any]:
        """Profile claims released for ``scopes`` (OIDC Core §5.4)."""
        out: dict[str, Any] = {}
        if "profile" in scopes:
            out["name"] = self.name or self.username
            out["preferred_username"] = self.username
            if self.picture:
                out["picture"] = self.picture
        if "email" in scopes and self.email:
            out["email"] = self.email
            out["email_verified"] = self.email_verified
        out.update(self.claims)
        return out


@dataclass(frozen=True)
class Resource:
    """A protected resource (API). Tokens issued for it carry ``aud = identifier``.

    ``access_token_format="jwt"`` gives RFC 9068 JWTs, ``"opaque"`` gives random strings
    only introspection understands. ``signing_alg`` picks the key (RS256 or ES256 ...).
    """

    identifier: str
    scopes: Sequence[str] = ()
    access_token_format: AccessTokenFormat = "jwt"
    signing_alg: str = "RS256"

    def __post_init__(self) -> None:
        if not self.identifier:
            raise ValueError("Resource.identifier must not be empty")
        if self.signing_alg not in SIGNING_ALGS:
            raise ValueError(f"resource {self.identifier!r}: unsupported signing alg")
        object.__setattr__(self, "scopes", tuple(self.scopes))


@dataclass(frozen=True)
class AgentIdentity:
    """An Entra Agent ID agent identity under a blueprint (a registered client).

    It has no credential of its own: it authenticates with an exchange token its
    blueprint got for it (``fmi_path``). ``user`` is the ``sub`` (object id) of its agent
    user, a registered :class:`TestUser` whose ``username`` is the UPN; Entra links an
    agent user to exactly one agent identity.
    """

    client_id: str
    blueprint: str
    user: str | None = None

    def __post_init__(self) -> None:
        if not self.client_id or not self.blueprint:
            raise ValueError("AgentIdentity needs client_id and blueprint")
