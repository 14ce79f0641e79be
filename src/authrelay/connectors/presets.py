"""Presets: well-known providers built on the standard ``oauth2`` and ``oidc`` connectors.

Each preset gives metadata (names in English and Korean, logo paths), endpoints or an
issuer, default scopes, and a mapping of the provider's user info to the common
:class:`~.metadata.Profile` (``sub``, ``name``, ``email``, ``email_verified``,
``picture``).

Defends against: trusting an unverified e-mail address (``email_verified`` is true only
when the provider says so), and Microsoft's multi-tenant issuer being compared loosely
(see :data:`MICROSOFT_MULTI_TENANT`: the issuer is rebuilt from the token's ``tid`` and
compared exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .metadata import ConnectorMetadata, Profile

__all__ = ["MICROSOFT_MULTI_TENANT", "PRESETS", "Preset", "map_claims", "map_fields"]

ProfileMapper = Callable[[Mapping[str, Any]], Profile]
MICROSOFT_MULTI_TENANT = frozenset({"common", "organizations", "consumers"})


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def map_claims(data: Mapping[str, Any]) -> Profile:
    """OIDC standard claims to a profile (OIDC Core §5.1)."""
    sub = data.get("sub")
    if not isinstance(sub, str) or not sub:
        raise ValueError("the user info has no subject")
    return Profile(
        sub=sub,
        name=_text(data.get("name")) or _text(data.get("preferred_username")),
        email=_text(data.get("email")),
        email_verified=data.get("email_verified") is True,
        picture=_text(data.get("picture")),
    )


def map_fields(mapping: Mapping[str, str]) -> ProfileMapper:
    """A mapper reading each profile field from the named user-info member."""

    def mapper(data: Mapping[str, Any]) -> Profile:
        raw_sub = data.get(mapping.get("sub", "sub"))
        if isinstance(raw_sub, bool) or not isinstance(raw_sub, (str, int)) or raw_sub == "":
            raise ValueError("the user info has no subject")
        verified_field = mapping.get("email_verified", "")
        return Profile(
            sub=str(raw_sub),
            name=_text(data.get(mapping.get("name", "name"))),
            email=_text(data.get(mapping.get("email", "email"))),
            email_verified=verified_field != "" and data.get(verified_field) is True,
            picture=_text(data.get(mapping.get("picture", "picture"))),
        )

    return mapper


def _github(data: Mapping[str, Any]) -> Profile:
    profile = map_fields({"sub": "id", "name": "name", "picture": "avatar_url"})(data)
    name = profile.name or _text(data.get("login"))
    # GitHub's /user e-mail is the public one, not a verified claim.
    return Profile(profile.sub, name, profile.email, False, profile.picture)


def _discord(data: Mapping[str, Any]) -> Profile:
    profile = map_fields({"sub": "id", "email_verified": "verified"})(data)
    avatar = _text(data.get("avatar"))
    picture = f"https://cdn.discordapp.com/avatars/{profile.sub}/{avatar}.png" if avatar else None
    name = _text(data.get("global_name")) or _text(data.get("username"))
    return Profile(profile.sub, name, profile.email, profile.email_verified, picture)


@dataclass(frozen=True, slots=True)
class Preset:
    """A provider's defaults; ``{tenant}`` in URLs is replaced by the configured tenant."""

    metadata: ConnectorMetadata
    standard: Literal["oauth2", "oidc"]
    scopes: tuple[str, ...]
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None
    map_profile: ProfileMapper = map_claims
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    default_tenant: str | None = None
    assertion_audience: Literal["issuer", "token_endpoint"] = "issuer"
    """``aud`` of ``private_key_jwt`` assertions the provider accepts."""


def _meta(preset_id: str, en: str, ko: str, *, dark: bool = False) -> ConnectorMetadata:
    return ConnectorMetadata(
        id=preset_id,
        target=preset_id,
        type="social",
        platform="web",
        name={"en": en, "ko": ko},
        description={"en": f"Sign in with {en}", "ko": f"{ko} 계정으로 로그인"},
        logo=f"connectors/logos/{preset_id}.svg",
        logo_dark=f"connectors/logos/{preset_id}-dark.svg" if dark else None,
        is_standard=False,
        readme=f"connectors/readmes/{preset_id}.md",
        config_template='client_id = "..."\nclient_secret = "${SECRET}"',
    )


_MS = "https://login.microsoftonline.com/{tenant}"

PRESETS: Mapping[str, Preset] = {
    "github": Preset(
        metadata=_meta("github", "GitHub", "깃허브", dark=True),
        standard="oauth2",
        scopes=("read:user", "user:email"),
        authorization_endpoint="https://github.com/login/oauth/authorize",
        token_endpoint="https://github.com/login/oauth/access_token",
        userinfo_endpoint="https://api.github.com/user",
        map_profile=_github,
    ),
    "google": Preset(
        metadata=_meta("google", "Google", "구글"),
        standard="oidc",
        scopes=("openid", "profile", "email"),
        issuer="https://accounts.google.com",
    ),
    "microsoft": Preset(
        metadata=_meta("microsoft", "Microsoft", "마이크로소프트"),
        standard="oidc",
        scopes=("openid", "profile", "email", "offline_access"),
        issuer=_MS + "/v2.0",
        authorization_endpoint=_MS + "/oauth2/v2.0/authorize",
        token_endpoint=_MS + "/oauth2/v2.0/token",
        jwks_uri=_MS + "/discovery/v2.0/keys",
        userinfo_endpoint="https://graph.microsoft.com/oidc/userinfo",
        end_session_endpoint=_MS + "/oauth2/v2.0/logout",
        default_tenant="common",
        assertion_audience="token_endpoint",  # Entra checks aud against the token endpoint
    ),
    "gitlab": Preset(
        metadata=_meta("gitlab", "GitLab", "깃랩"),
        standard="oidc",
        scopes=("openid", "profile", "email"),
        issuer="https://gitlab.com",
    ),
    "discord": Preset(
        metadata=_meta("discord", "Discord", "디스코드"),
        standard="oauth2",
        scopes=("identify", "email"),
        authorization_endpoint="https://discord.com/oauth2/authorize",
        token_endpoint="https://discord.com/api/oauth2/token",
        userinfo_endpoint="https://discord.com/api/users/@me",
        revocation_endpoint="https://discord.com/api/oauth2/token/revoke",
        map_profile=_discord,
    ),
    "slack": Preset(
        metadata=_meta("slack", "Slack", "슬랙"),
        standard="oidc",
        scopes=("openid", "profile", "email"),
        issuer="https://slack.com",
    ),
}


STANDARD_METADATA: Mapping[str, ConnectorMetadata] = {
    "oauth2": ConnectorMetadata(
        id="oauth2",
        target="oauth2",
        name={"en": "OAuth 2.0", "ko": "OAuth 2.0"},
        description={"en": "Sign in with an OAuth 2.0 provider", "ko": "OAuth 2.0 제공자로 로그인"},
        logo="connectors/logos/oauth2.svg",
        is_standard=True,
        readme="connectors/readmes/oauth2.md",
        config_template='authorization_endpoint = "..."\ntoken_endpoint = "..."\nclient_id = "..."',
    ),
    "oidc": ConnectorMetadata(
        id="oidc",
        target="oidc",
        name={"en": "OpenID Connect", "ko": "OpenID Connect"},
        description={"en": "Sign in with OpenID Connect", "ko": "OpenID Connect로 로그인"},
        logo="connectors/logos/oidc.svg",
        is_standard=True,
        readme="connectors/readmes/oidc.md",
        config_template='issuer = "https://idp.example"\nclient_id = "..."',
    ),
}
