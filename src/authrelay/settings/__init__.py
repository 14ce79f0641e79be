"""One declarative settings object, validated once at start.

Load from code (``Settings(...)``, ``Settings.model_validate(mapping)``), from a TOML file
with ``${VAR}`` interpolation (:meth:`Settings.from_toml`) or from environment variables
(:meth:`Settings.from_env`). Invalid settings raise :class:`~authrelay.ConfigurationError`
listing every problem as ``field.path: reason``. Secrets are ``SecretStr`` and never shown.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import (
    Field,
    ImportString,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import ConfigurationError
from ._base import Section, describe
from .connectors import ConnectorSettings
from .core import (
    AdminSettings,
    BearerSettings,
    ClientSettings,
    EventsSettings,
    HttpSettings,
    RoutesSettings,
    SessionSettings,
    StoreSettings,
)
from .services import AgentSettings, ApiKeySettings, ServiceSettings
from .urls import url_problem

__all__ = [
    "AdminSettings",
    "AgentSettings",
    "ApiKeySettings",
    "BearerSettings",
    "ClientSettings",
    "ConnectorSettings",
    "EventsSettings",
    "HttpSettings",
    "RoutesSettings",
    "ServiceSettings",
    "SessionSettings",
    "Settings",
    "StoreSettings",
]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_SERVICE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class Settings(Section):
    """Everything authrelay needs, in one frozen object."""

    secret_keys: list[SecretStr] = Field(default_factory=list)
    """First key seals cookies and stored tokens; every key opens them (rotation)."""
    dev_mode: bool = False
    """Relaxes start-up checks for local development (memory store without keys)."""
    public_base_url: str | None = None
    """Where the app is reached (``https://app.example``); redirect URIs are built from it.

    Absolute, https, no query or fragment; plain http only on a loopback host with
    ``http.allow_insecure_loopback``."""
    session: SessionSettings = SessionSettings()
    bearer: BearerSettings | None = None
    client: ClientSettings | None = None
    connectors: dict[str, ConnectorSettings] = {}
    agents: dict[str, AgentSettings] = {}
    services: dict[str, ServiceSettings] = {}
    store: StoreSettings = StoreSettings()
    routes: RoutesSettings = RoutesSettings()
    http: HttpSettings = HttpSettings()
    admin: AdminSettings = AdminSettings()
    """The connector admin API (``[admin] enabled = true``), bearer callers with ``admin.scope``."""
    on_sign_in: ImportString[Callable[..., Any]] | None = None
    """``on_sign_in(profile, connector) -> user id``: map a sign-in to the app's own user.

    A callable, or in TOML an import path (``"myapp.users:on_sign_in"``); it may be
    ``async`` under ASGI. The returned id becomes the principal's subject.
    """
    events: EventsSettings | None = None
    """``[events]``: a webhook that receives token events (docs/deployment.md)."""
    on_token_event: ImportString[Callable[..., Any]] | None = None
    """``on_token_event(event)``: called when a connector token is refreshed, rotated,
    fails to refresh, is revoked or needs reauthorization; sync, or ``async`` under ASGI."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(describe(exc, Settings)) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate a mapping; raise :class:`ConfigurationError` naming each bad field."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise ConfigurationError(describe(exc, Settings)) from None

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
    ) -> Self:
        """Load a TOML file; ``${VAR}`` in strings is replaced from the environment."""
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"{file}: no such settings file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{file}: not valid TOML ({exc})") from None
        missing: list[str] = []
        data = _interpolate(data, os.environ if env is None else env, missing, "")
        if missing:
            raise ConfigurationError(missing)
        return cls.model_validate(data)

    @classmethod
    def from_env(
        cls,
        prefix: str = "AUTHRELAY_",
        *,
        env: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Load from environment variables: ``AUTHRELAY_BEARER__ISSUER=...``.

        Read with pydantic-settings: nested fields are separated by ``__``; string
        settings stay strings (``AUTHRELAY_CLIENT__CLIENT_ID=1234567``); list and dict
        settings take JSON (``AUTHRELAY_SERVICES='{"orders": {...}}'``), and
        ``AUTHRELAY_SECRET_KEYS`` also a comma-separated list. ``env`` replaces
        ``os.environ``; ``env_file`` names a ``.env`` file read first (the environment
        wins; a missing file is skipped). A variable with the prefix that names no
        setting is an error.
        """
        from .env import env_data  # pydantic-settings is imported only when used

        return cls.model_validate(env_data(cls, prefix, env, env_file))

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, ("**********" if name == "secret_keys" and value else value)

    @field_validator("connectors", "agents")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r}: names are lower-case letters, digits, '-' or '_'")
        return value

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Mixed case as Entra configs write them ("Graph", "MyApi"); lookups ignore case,
        # so two names that differ only by case would be one service.
        seen: dict[str, str] = {}
        for name in value:
            if not _SERVICE_NAME.match(name):
                raise ValueError(f"{name!r}: names are letters, digits, '-' or '_'")
            other = seen.setdefault(name.lower(), name)
            if other != name:
                raise ValueError(
                    f"{other!r} and {name!r} differ only by case; service names are "
                    "looked up without regard to case"
                )
        return value

    @field_validator("secret_keys")
    @classmethod
    def _key_strength(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, key in enumerate(value):
            if len(key.get_secret_value().encode()) < 32:
                raise ValueError(f"secret_keys[{index}] must be at least 32 bytes")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        problems: list[str] = []
        if not self.secret_keys and not (self.dev_mode and self.store.url == "memory://"):
            problems.append(
                "secret_keys: at least one key is required (only dev_mode with the memory "
                "store may run without; ST-02)"
            )
        problems.extend(self._url_problems())
        default = self.routes.default_connector
        if default is not None and default not in self.connectors:
            problems.append(f"routes.default_connector: {default!r} is not a configured connector")
        for name, service in self.services.items():
            problems.extend(self._service_problems(name, service))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _url_problems(self) -> list[str]:
        loopback = self.http.allow_insecure_loopback
        urls: list[tuple[str, str | None, str]] = [
            ("public_base_url", self.public_base_url, "https://app.example"),
            ("bearer.issuer", self.bearer.issuer if self.bearer else None, "https://idp.example"),
        ]
        for name, connector in self.connectors.items():
            issuer = connector.issuer
            if issuer is not None:
                issuer = issuer.replace("{tenant}", connector.tenant or "common")
            urls.append((f"connectors.{name}.issuer", issuer, "https://sso.example"))
        problems = []
        for where, url, example in urls:
            problem = (
                None
                if url is None
                else url_problem(url, allow_insecure_loopback=loopback, example=example)
            )
            if problem is not None:
                problems.append(f"{where}: {problem}")
        return problems

    def _service_problems(self, name: str, service: ServiceSettings) -> list[str]:
        where = f"services.{name}"
        problems: list[str] = []
        needs_endpoint = service.flow in ("client_credentials", "token_exchange", "on_behalf_of")
        if needs_endpoint and not (self.bearer or service.token_endpoint):
            problems.append(
                f"{where}.flow: {service.flow!r} needs bearer.issuer or {where}.token_endpoint"
            )
        if needs_endpoint and not (self.client or service.client):
            problems.append(f"{where}.flow: {service.flow!r} needs client or {where}.client")
        if service.flow == "forward" and self.bearer is None:
            problems.append(f"{where}.flow: 'forward' needs [bearer] (the caller's token)")
        if service.flow == "connector" and service.connector not in self.connectors:
            problems.append(
                f"{where}.connector: {service.connector!r} is not a configured connector"
            )
        if service.actor is not None and service.actor not in self.agents:
            problems.append(f"{where}.actor: {service.actor!r} is not a configured agent")
        elif service.actor is not None and service.flow != "token_exchange":
            instead = (
                f"to call as the agent, put its credentials in {where}.client"
                if service.flow == "client_credentials"
                else "remove it, or use flow 'token_exchange'"
            )
            problems.append(
                f"{where}.actor: flow {service.flow!r} cannot carry an actor (only "
                f"'token_exchange' sends it, as the RFC 8693 actor_token); {instead}"
            )
        elif service.actor is not None and self.agents[service.actor].kind == "entra":
            problems.append(
                f"{where}.actor: {service.actor!r} is an Entra agent identity, which Entra "
                "never puts in an RFC 8693 act claim; ask per call for its app token or its "
                "agent user's token instead"
            )
        return problems


def _interpolate(value: Any, env: Mapping[str, str], missing: list[str], path: str) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                missing.append(f"{path}: environment variable {name} is not set")
                return ""
            return env[name]

        return _VAR.sub(replace, value)
    if isinstance(value, dict):
        return {
            key: _interpolate(item, env, missing, f"{path}.{key}" if path else key)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(item, env, missing, f"{path}[{i}]") for i, item in enumerate(value)]
    return value
