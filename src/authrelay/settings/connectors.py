"""Settings of connectors: social / OIDC sign-in and account linking (Logto's model)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ._base import Section
from .core import Duration, WholeSeconds, check_credentials

__all__ = ["ConnectorSettings"]


class ConnectorSettings(Section):
    """One configured connector: a preset (``github``…) or a standard ``oauth2`` / ``oidc``."""

    preset: str | None = None
    standard: Literal["oauth2", "oidc"] | None = None
    client_id: str
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: Literal[
        "client_secret_basic", "client_secret_post", "private_key_jwt", "none"
    ] = "client_secret_basic"
    private_key: SecretStr | None = None
    """PEM or JWK JSON of the key for ``private_key_jwt`` (RFC 7523)."""
    private_key_id: str | None = None
    """``kid`` of that key, as registered at the provider."""
    client_assertion_audience: Literal["issuer", "token_endpoint"] | None = None
    """``aud`` of ``private_key_jwt`` assertions: the issuer identifier (the default when
    there is one, AC-11) or the token endpoint URL (what Microsoft Entra expects; its
    preset's default)."""
    scopes: list[str] | None = None
    """Defaults to the preset's scopes (``openid profile email`` for OIDC)."""
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None
    pushed_authorization_request_endpoint: str | None = None
    """Without discovery: the provider's PAR endpoint (RFC 9126 §5)."""
    par: bool | Literal["auto"] = "auto"
    """Pushed authorization requests (RFC 9126): ``auto`` uses them when the provider's
    metadata says ``require_pushed_authorization_requests``; ``true`` always (the provider
    must publish a ``pushed_authorization_request_endpoint``); ``false`` never."""
    tenant: str | None = None
    """Microsoft: tenant id or ``common`` / ``organizations`` / ``consumers``."""
    id_token_signed_response_alg: str = "RS256"
    authorize_params: dict[str, str] = {}
    target: str | None = None
    platform: Literal["web", "native", "universal"] | None = "web"
    type: Literal["social", "email", "sms"] = "social"
    name: dict[str, str] | None = None
    """Display names by locale (``{"en": ..., "ko": ...}``); overrides the preset's."""
    description: dict[str, str] | None = None
    logo: str | None = None
    logo_dark: str | None = None
    sync_profile: bool = False
    """False: the profile is stored at first sign-in only; True: refreshed at every sign-in."""
    discovery: bool = True
    """OIDC: read endpoints from the issuer's discovery document (else give them all)."""
    fetch_userinfo: Literal["auto", "required", "never"] = "auto"
    """OIDC: ``auto`` calls UserInfo when there is one and, if it refuses or fails, signs in
    from the validated ID token (OIDC Core §5.3 makes UserInfo optional); ``required`` makes
    its failure fail the sign-in; ``never`` skips it. ``true`` / ``false`` mean ``auto`` /
    ``never``."""
    userinfo_mapping: dict[str, str] = {}
    """OAuth 2.0: profile field → user-info member (``{"sub": "id", "name": "login"}``)."""
    trusted_audiences: list[str] = []
    """Extra ``aud`` values an ID token may carry besides ``client_id`` (ID-02)."""
    max_age: Annotated[WholeSeconds, Field(ge=0)] | None = None
    """OIDC ``max_age``: sent, and ``auth_time`` checked against it (ID-09)."""
    acr_values: list[str] = []
    """OIDC ``acr_values`` sent with the authorization request (OIDC Core §3.1.2.1)."""
    acr_essential: bool = False
    """Ask for ``acr`` as an Essential Claim with ``acr_values`` (OIDC Core §5.5.1.1) and
    refuse an ID token whose ``acr`` is not one of them (ID-09)."""
    iat_max_age: Annotated[WholeSeconds, Field(gt=0)] = 600
    """How old an ID token's ``iat`` may be at the callback, in seconds (ID-05)."""
    leeway: Annotated[WholeSeconds, Field(ge=0, le=300)] = 30
    rp_initiated_logout: bool = True
    """OIDC: send the browser to the provider's ``end_session_endpoint`` at logout."""
    end_session_method: Literal["get", "post"] = "get"
    """How the browser carries the end-session request (with ``id_token_hint``) to the
    provider: ``get`` (every provider; oidc-provider accepts only GET by default) or
    ``post`` (keeps the ID token out of the provider's URLs and logs)."""
    backchannel_logout: bool = True
    """OIDC: accept logout tokens at ``{prefix}/{name}/backchannel-logout`` (Back-Channel
    Logout 1.0) and end the sessions they name."""
    refresh_ahead: Duration | None = None
    """Refresh users' tokens in the background this long before they expire (``"10m"``),
    so requests never wait for a refresh; one worker refreshes each token (the
    cross-process refresh lock). Off when unset."""
    keep_alive: bool = False
    """Also refresh a token that has not been refreshed for ``keep_alive_after``, so a
    refresh token with an idle expiry at the provider stays alive (Nango-style)."""
    keep_alive_after: Duration = 7 * 86400.0
    """With ``keep_alive``: the idle time after which a token is refreshed; set it well
    below the provider's refresh-token idle expiry."""

    @field_validator("fetch_userinfo", mode="before")
    @classmethod
    def _userinfo_flag(cls, value: object) -> object:
        if value is True:
            return "auto"
        return "never" if value is False else value

    @model_validator(mode="after")
    def _kind(self) -> ConnectorSettings:
        if (self.preset is None) == (self.standard is None):
            raise ValueError("set exactly one of preset or standard ('oauth2' | 'oidc')")
        if self.standard == "oidc" and not self.issuer:
            raise ValueError("issuer: required with standard 'oidc'")
        if self.standard == "oauth2" and not (self.authorization_endpoint and self.token_endpoint):
            raise ValueError(
                "authorization_endpoint: standard 'oauth2' needs it and token_endpoint"
            )
        if self.type in ("email", "sms") and self.platform is not None:
            raise ValueError("platform: email and sms connectors have none")
        if self.type == "social" and self.platform is None:
            raise ValueError("platform: social connectors need one ('web', 'native', 'universal')")
        alg = self.id_token_signed_response_alg
        if alg.lower() == "none" or alg.startswith("HS"):
            raise ValueError(
                f"id_token_signed_response_alg: {alg!r} is not accepted, ID tokens must be "
                "signed with an asymmetric key from the provider's JWKS (ID-04)"
            )
        if self.acr_essential and not self.acr_values:
            raise ValueError("acr_values: required with acr_essential")
        check_credentials(self.token_endpoint_auth_method, self.client_secret, self.private_key)
        return self
