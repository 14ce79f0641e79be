"""The connectors of one relay: built and checked once at start, changed only through guards.

Defends against: invalid connector configs or rule violations discovered at the first
login (they fail at start with the field path, :mod:`.guards`), redirect URIs built
from ``Host`` in production (``public_base_url`` is required unless ``dev_mode``,
AC-07), a store without an encryption key (ST-02), a runtime change that breaks
the rules (refused, nothing saved), and an application sign-in hook that fails or
answers nonsense (the sign-in fails cleanly; no session, no identity link).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._crypto import KeyRing, b64url_encode, random_token
from .._io import Call, Flow
from ..errors import AuthRelayError, ConfigurationError
from ..settings import ConnectorSettings
from ..stores.tokens import StoredTokens, TokenStore
from .connector import Connector
from .events import TokenEventHook
from .guards import RuleEntry, check_rules, guard_config
from .metadata import ConnectorRecord, Profile

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = ["ConnectorRegistry", "SignInHook"]

logger = logging.getLogger("authrelay.connectors")

SignInHook = Callable[[Profile, str], "str | Awaitable[str]"]
"""``on_sign_in(profile, connector_name) -> user id`` for apps that keep their own users.

A plain function, or (under ASGI only) a coroutine function.
"""


def _entry(connector: Connector) -> RuleEntry:
    meta = connector.metadata
    return RuleEntry(connector.name, meta.target, meta.type, meta.platform)


class ConnectorRegistry:
    """Every configured connector, the sealed token store, the routes and the token source."""

    def __init__(self, relay: Relay, *, on_sign_in: SignInHook | None = None) -> None:
        from .background import Background
        from .events import TokenEvents
        from .maintenance import Maintenance
        from .refresher import Refresher
        from .routes import ConnectorRoutes
        from .usertokens import ConnectorTokenSource

        self.relay = relay
        self.connectors: dict[str, Connector] = {}
        settings = relay.settings
        problems: list[str] = []
        connectors: dict[str, Connector] = {}
        for name, config in settings.connectors.items():
            try:
                connectors[name] = Connector(
                    name,
                    guard_config(name, config),
                    http=settings.http,
                    clock=relay.clock,
                    metrics=relay.metrics,
                )
            except ConfigurationError as exc:
                problems.extend(exc.problems)
        problems.extend(check_rules(_entry(c) for c in connectors.values()))
        if connectors and settings.public_base_url is None and not settings.dev_mode:
            problems.append(
                "public_base_url: required for connectors (redirect URIs are never built "
                "from the Host header, AC-07)"
            )
        if problems:
            raise ConfigurationError(problems)
        self.connectors.update(connectors)
        self.records = {
            name: ConnectorRecord.new(
                c.metadata.id,
                c.settings.model_dump(mode="json", exclude_none=True),
                metadata={"target": c.target},
                sync_profile=c.settings.sync_profile,
                created_at=relay.clock(),
            )
            for name, c in connectors.items()
        }
        secrets = [key.get_secret_value().encode() for key in settings.secret_keys]
        if not secrets:
            secrets = [random_token(32).encode()]  # dev_mode + memory only (ST-02)
        self.store = TokenStore(
            KeyRing(secrets, "authrelay-store-v1"),
            prefix=settings.store.key_prefix,
            clock=relay.clock,
        )
        self._csrf_key = hashlib.sha256(b"authrelay-csrf-v1" + secrets[0]).digest()
        self.on_sign_in: SignInHook | None = (
            on_sign_in if on_sign_in is not None else settings.on_sign_in
        )
        self.background = Background(relay)
        self.events = TokenEvents(self)
        self.routes = ConnectorRoutes(self)
        self.tokens = ConnectorTokenSource(self)
        self.refresher = Refresher(self)
        self.maintenance = Maintenance(self)

    def __repr__(self) -> str:
        return f"ConnectorRegistry({sorted(self.connectors)!r})"

    def get(self, name: str) -> Connector | None:
        """The connector called ``name``."""
        return self.connectors.get(name)

    def issuers(self) -> Mapping[str, str | None]:
        """Connector name → issuer (for reading sealed records)."""
        return {name: c.issuer for name, c in self.connectors.items()}

    def set_token_event_hook(self, hook: TokenEventHook | None) -> None:
        """Replace ``settings.on_token_event`` (a function, or a coroutine function under ASGI)."""
        self.events.hook = hook

    def set_sign_in_hook(self, hook: SignInHook | None) -> None:
        """Replace ``settings.on_sign_in`` (a function, or a coroutine function under ASGI)."""
        self.on_sign_in = hook

    def sign_in_user(self, profile: Profile, connector: Connector) -> Flow[str]:
        """The user id for a first sign-in: the hook's answer, else ``target|sub``.

        Called only for an identity (target, sub) not linked yet, so every connector of
        the same target finds the user the first sign-in chose. An :class:`AuthRelayError`
        raised by the hook (``CallbackError("access_denied")``) refuses the sign-in as it
        is; any other failure is logged and answered with a 500.
        """
        hook = self.on_sign_in
        if hook is None:
            return f"{connector.target}|{profile.sub}"
        try:
            user = yield Call(hook, (profile, connector.name))
        except AuthRelayError:
            raise
        except TypeError as exc:
            if "under WSGI" in str(exc):  # the sync driver refuses awaitables
                logger.error(
                    "on_sign_in_async_under_wsgi connector=%s: the hook is a coroutine "
                    "function, which only the ASGI middleware can await; give the WSGI "
                    "middleware a plain function",
                    connector.name,
                )
            else:
                logger.error(
                    "on_sign_in_failed connector=%s error=TypeError", connector.name, exc_info=True
                )
            raise AuthRelayError("the application could not complete the sign-in") from None
        except Exception as exc:
            logger.error(
                "on_sign_in_failed connector=%s error=%s",
                connector.name,
                type(exc).__name__,
                exc_info=True,
            )
            raise AuthRelayError("the application could not complete the sign-in") from None
        if not isinstance(user, str) or not user:
            logger.error(
                "on_sign_in_bad_answer connector=%s: the hook must return a non-empty str user id",
                connector.name,
            )
            raise AuthRelayError("the application could not complete the sign-in")
        return user

    def csrf_token(self, session_id: str) -> str:
        """The logout CSRF token of a session (for clients that send no ``Origin``)."""
        return b64url_encode(hmac.new(self._csrf_key, session_id.encode(), "sha256").digest())

    def save_tokens(self, user: str, tokens: StoredTokens) -> Flow[None]:
        """Write a fresh token set for (user, connector), compare-and-set against races."""
        for _ in range(5):
            current, version = yield from self.store.load_tokens(
                user, tokens.connector, tokens.issuer
            )
            if current is not None and current.linked_at:
                tokens = replace(tokens, linked_at=current.linked_at)
            written = yield from self.store.save_tokens(user, tokens, expected_version=version)
            if written is not None:
                return
        logger.error("token_save_contended connector=%s", tokens.connector)

    # -- runtime changes ------------------------------------------------------------------

    def update(
        self,
        name: str,
        config: Mapping[str, Any],
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> Flow[ConnectorRecord]:
        """Validate and apply a changed config for ``name``; refuse (saving nothing) if bad."""
        overrides = dict(metadata or {})
        merged: dict[str, Any] = {
            **config,
            **{k: overrides[k] for k in ("logo", "logo_dark", "target", "name") if k in overrides},
        }
        settings = guard_config(name, merged)
        connector = Connector(
            name,
            settings,
            http=self.relay.settings.http,
            clock=self.relay.clock,
            metrics=self.relay.metrics,
        )
        others = [c for n, c in self.connectors.items() if n != name]
        problems = check_rules(_entry(c) for c in [*others, connector])
        if problems:
            raise ConfigurationError(problems)
        previous = self.records.get(name)
        record = ConnectorRecord(
            id=previous.id if previous else random_token(12),
            connector_id=connector.metadata.id,
            config=settings.model_dump(mode="json", exclude_none=True),
            metadata=overrides,
            sync_profile=settings.sync_profile,
            created_at=previous.created_at if previous else self.relay.clock(),
        )
        stored = record.to_dict()
        for field in ("client_secret", "private_key"):  # model_dump masks secrets
            secret = getattr(settings, field)
            if secret is not None:
                stored["config"][field] = secret.get_secret_value()
        yield from self.store.save_connector_record(record.id, stored)
        self.connectors[name] = connector
        self.records[name] = record
        self.refresher.reload()
        return record

    def settings_of(self, name: str) -> ConnectorSettings | None:
        """The validated settings of ``name``."""
        connector = self.connectors.get(name)
        return None if connector is None else connector.settings
