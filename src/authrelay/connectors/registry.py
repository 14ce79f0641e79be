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
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._crypto import KeyRing, b64url_encode, random_token
from .._io import Flow, Hook
from ..errors import AuthRelayError, ConfigurationError, TokenStoreUnavailable
from ..settings import ConnectorSettings
from ..settings.urls import url_problem
from ..stores.tokens import StoredTokens, TokenStore
from .connector import Connector
from .events import TokenEventHook
from .guards import RuleEntry, check_rules, guard_config
from .metadata import ConnectorRecord, Profile
from .records import RecordRefused, effective_config, merge_change

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
        if settings.admin.enabled and settings.bearer is None:
            problems.append(
                "admin.enabled: the admin API accepts only bearer tokens carrying "
                f"{settings.admin.scope!r}; configure [bearer]"
            )
        if problems:
            raise ConfigurationError(problems)
        self.connectors.update(connectors)
        self.base = {name: c.settings for name, c in connectors.items()}
        self.disabled: set[str] = set()
        self._applied: dict[str, dict[str, Any]] = {}
        self._stamp: int | None = None
        self._checked_at = -math.inf
        self._dirty = True
        self.records = {
            name: ConnectorRecord.new(c.metadata.id, {}, sync_profile=c.settings.sync_profile)
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
            user = yield Hook(hook, (profile, connector.name))
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

    # -- runtime changes (records in the store, after Logto's connector rows) -----------

    def is_enabled(self, name: str) -> Connector | None:
        """The connector called ``name`` unless it is disabled."""
        return None if name in self.disabled else self.connectors.get(name)

    def forget(self, key: str | None) -> None:
        """Store invalidation: a connector record changed in another process (or maybe)."""
        if key is None or key.startswith(self.store.connectors_prefix):
            self._dirty = True

    def refresh(self, *, force: bool = False) -> Flow[None]:
        """Read back the stored records when they may have changed elsewhere.

        At most one store read per ``admin.refresh_interval`` (the change stamp's
        version), sooner after an invalidation; the records themselves are read only
        when the stamp moved. The first call (the first request) always reads them.
        """
        now = self.relay.clock()
        interval = self.relay.settings.admin.refresh_interval
        if not (force or self._dirty or now - self._checked_at >= interval):
            return
        self._checked_at, self._dirty = now, False
        try:
            stamp = yield from self.store.connectors_stamp()
            if stamp == 0:  # made once, so every later change is an overwrite Redis publishes
                stamp = yield from self.store.start_connectors_stamp()
            if stamp == self._stamp and not force:
                return
            stored = yield from self.store.load_connector_records()
        except TokenStoreUnavailable:
            # Serve what we have; the routes that need the store answer 503 themselves.
            logger.warning("connector_records_unreadable: keeping the connectors as they are")
            return
        self._stamp = stamp
        for name in self.base:
            self._apply(name, stored.get(name))

    def _apply(self, name: str, data: dict[str, Any] | None) -> None:
        if data == self._applied.get(name):
            return
        base = self.base[name]
        try:
            if data is None:
                record = self.records[name]
                record = replace(record, config={}, metadata={}, enabled=True)
                connector = self._build(name, base.model_dump(mode="python", exclude_unset=True))
            else:
                record = ConnectorRecord.from_dict(data)
                target = self.connectors[name].target
                if record.metadata.get("target", target) != target:
                    logger.warning("connector_record_target_ignored connector=%s", name)
                    record = replace(
                        record, metadata={k: v for k, v in record.metadata.items() if k != "target"}
                    )
                connector = self._build(name, effective_config(base, record))
        except (ConfigurationError, KeyError, TypeError, ValueError):
            # Settings changed under a stored record: keep serving what we have.
            logger.error("connector_record_unusable connector=%s", name)
            return
        if data is None:
            self._applied.pop(name, None)
        else:
            self._applied[name] = data
        self.connectors[name] = connector
        self.records[name] = record
        if record.enabled:
            self.disabled.discard(name)
        else:
            self.disabled.add(name)
        logger.info("connector_record_applied connector=%s enabled=%s", name, record.enabled)

    def _build(self, name: str, config: Mapping[str, Any]) -> Connector:
        settings = guard_config(name, config)
        if settings.issuer is not None:  # the same rule as at start (Settings)
            issuer = settings.issuer.replace("{tenant}", settings.tenant or "common")
            loopback = self.relay.settings.http.allow_insecure_loopback
            problem = url_problem(
                issuer, allow_insecure_loopback=loopback, example="https://sso.example"
            )
            if problem is not None:
                raise ConfigurationError(f"connectors.{name}.issuer: {problem}")
        return Connector(
            name,
            settings,
            http=self.relay.settings.http,
            clock=self.relay.clock,
            metrics=self.relay.metrics,
        )

    def update(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        sync_profile: bool | None = None,
        enabled: bool | None = None,
        check_only: bool = False,
    ) -> Flow[ConnectorRecord]:
        """Validate and save a change of ``name``'s record; refuse (saving nothing) if bad.

        ``config`` members override the settings' (``None`` drops an override);
        ``metadata`` overrides ``name``, ``logo``, ``logo_dark`` of standard connectors;
        ``target`` never changes (:class:`~.records.TargetImmutable`). The record is
        written compare-and-set, so concurrent changes from other workers are not lost,
        and every worker reads it back (:meth:`refresh`). Raises
        :class:`~.records.RecordRefused` (a :class:`ConfigurationError`). With
        ``check_only`` the change is validated and returned, not saved.
        """
        base = self.base.get(name)
        if base is None:
            raise RecordRefused(f"connectors.{name}: not a configured connector")
        for _ in range(5):
            data, version = yield from self.store.load_connector_record(name)
            current = ConnectorRecord.from_dict(data) if data is not None else self.records[name]
            live = self.connectors[name]
            overrides, meta, sync = merge_change(
                name,
                base,
                current,
                config=config,
                metadata=metadata,
                target=live.target,
                is_standard=live.metadata.is_standard,
            )
            if sync is None:
                sync = sync_profile if sync_profile is not None else current.sync_profile
            record = replace(
                current,
                connector_id=live.metadata.id,
                config=overrides,
                metadata=meta,
                sync_profile=sync,
                created_at=current.created_at or self.relay.clock(),
                enabled=current.enabled if enabled is None else enabled,
            )
            try:
                connector = self._build(name, effective_config(base, record))
            except RecordRefused:
                raise
            except ConfigurationError as exc:
                raise RecordRefused(exc.problems) from None
            others = [c for n, c in self.connectors.items() if n != name]
            problems = check_rules(_entry(c) for c in [*others, connector])
            if problems:
                raise RecordRefused(problems)
            if check_only:
                return record
            stored = record.to_dict()
            written = yield from self.store.save_connector_record(
                name, stored, expected_version=version
            )
            if written is not None:
                self._applied[name] = stored
                self.connectors[name] = connector
                self.records[name] = record
                (self.disabled.discard if record.enabled else self.disabled.add)(name)
                self.refresher.reload()
                logger.info("connector_record_saved connector=%s", name)
                return record
        raise RecordRefused(f"connectors.{name}: changed concurrently too often; try again")

    def settings_of(self, name: str) -> ConnectorSettings | None:
        """The validated settings of ``name`` (with its record's overrides)."""
        connector = self.connectors.get(name)
        return None if connector is None else connector.settings
