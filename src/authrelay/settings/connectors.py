"""Settings of connectors: social / OIDC sign-in and account linking (Logto's model)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, model_validator

from ._base import Section

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
    scopes: list[str] | None = None
    """Defaults to the preset's scopes (``openid profile email`` for OIDC)."""
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None
    tenant: str | None = None
    """Microsoft: tenant id or ``common`` / ``organizations`` / ``consumers``."""
    id_token_signed_response_alg: str = "RS256"
    authorize_params: dict[str, str] = {}
    target: str | None = None
    platform: Literal["web", "native", "universal"] | None = "web"
    type: Literal["social", "email", "sms"] = "social"
    name: dict[str, str] | None = None
    logo: str | None = None
    logo_dark: str | None = None
    sync_profile: bool = False

    @model_validator(mode="after")
    def _kind(self) -> ConnectorSettings:
        if (self.preset is None) == (self.standard is None):
            raise ValueError("set exactly one of preset or standard ('oauth2' | 'oidc')")
        if self.standard == "oidc" and not self.issuer:
            raise ValueError("standard 'oidc' needs issuer")
        if self.standard == "oauth2" and not (self.authorization_endpoint and self.token_endpoint):
            raise ValueError("standard 'oauth2' needs authorization_endpoint and token_endpoint")
        if self.type in ("email", "sms") and self.platform is not None:
            raise ValueError("email and sms connectors have no platform")
        return self
