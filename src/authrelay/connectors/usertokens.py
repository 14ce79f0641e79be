"""User-delegated tokens for services with ``flow = "connector"``: read, refresh, rotate.

Defends against (SECURITY §7, §14; DESIGN lessons on rotation races):

- two refreshes racing with one refresh token (RT-02): single-flight per (user,
  connector) in the process (``Shared``), plus a lock in the store across processes
  (:func:`~authrelay.stores.locks.single_flight`); waiters re-read the store after the
  lock is released and use what the winner wrote;
- a dead lock holder failing other requests: the lock's TTL (:func:`lock_ttl`) outlasts
  the longest refresh (two token requests at ``http.token_timeout``, discovery and
  JWKS) by a margin, and waiters wait longer than the TTL, so a crashed holder costs
  one slow request; past that budget the answer is 503 ``TokenStoreUnavailable``
  with ``Retry-After``, never a 502;
- a rotated refresh token lost (RT-01, INV-4): the new set replaces the old with
  compare-and-set on the record version; a response without ``refresh_token`` keeps
  the old one; if the write fails the new set stays pinned in the process and is
  written again on the next use (ST-09) while the current request goes on;
- logging a user out because another worker rotated first (RT-03): after
  ``invalid_grant`` the store is re-read and, if the refresh token changed, the refresh
  is retried once with it; otherwise the link is marked expired (tokens dropped) and
  :class:`~authrelay.errors.ReauthorizationRequired` points at the connect URL;
- configuration errors deleting user tokens (RT-06): ``invalid_client``,
  ``unauthorized_client`` and ``unsupported_grant_type`` are upstream errors, nothing
  is deleted;
- replays that revoke a token family (RT-04): retries only when the request never
  reached the server, or on 429/503;
- a refreshed ID token for someone else (RT-05): ``iss``, ``sub``, ``aud``, ``azp`` must
  match the original or the whole response is discarded;
- a refresh resurrecting tokens after logout (ST-10): the write is conditional on the
  version read under the lock; a deleted record stays deleted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import quote

from .._io import Flow, Shared, Spawn
from ..errors import (
    AuthRelayError,
    CallbackError,
    ConsentRequired,
    ReauthorizationRequired,
    TokenStoreUnavailable,
    UpstreamError,
    failure_code,
)
from ..observability import bounded
from ..principal import Principal
from ..settings import HttpSettings
from ..stores.locks import single_flight
from ..stores.tokens import StoredTokens
from ..tokens.model import AccessToken
from .connector import Connector, TokenEndpointError
from .idtoken import same_identity, validate_id_token
from .pinning import UNWRITTEN, PinnedTokens

if TYPE_CHECKING:
    from .registry import ConnectorRegistry

__all__ = ["ConnectorTokenSource"]

logger = logging.getLogger("authrelay.connectors.tokens")

REFRESH_MARGIN = 60.0
"""Refresh this many seconds before the access token expires."""
DEFAULT_LIFETIME = 300.0
"""Assumed lifetime of an access token issued without ``expires_in``."""
LOCK_MARGIN = 5.0
"""Seconds the refresh lock outlives the longest refresh, and waiters outwait the lock."""
_CONFIG_ERRORS = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type"})


def lock_ttl(http: HttpSettings) -> float:
    """How long a refresh may hold its lock: discovery, two token requests with the
    backoff between them, the JWKS for a new ID token, and :data:`LOCK_MARGIN`."""
    return 2 * http.metadata_timeout + 2 * http.token_timeout + 2.0 + LOCK_MARGIN


class ConnectorTokenSource:
    """Implements :class:`authrelay.tokens.UserTokenSource` over the sealed token store."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        self.registry = registry
        self.store = registry.store
        self._clock = registry.relay.clock
        self._prefix = registry.relay.settings.routes.prefix
        self.lock_ttl = lock_ttl(registry.relay.settings.http)
        self.metrics = registry.relay.metrics
        self.pins = PinnedTokens(self.store)
        self.events = registry.events

    def __repr__(self) -> str:
        return f"ConnectorTokenSource(pinned={len(self.pins)})"

    def _connect_url(self, connector: str, scopes: tuple[str, ...] = ()) -> str:
        url = f"{self._prefix}/{connector}/connect"
        return f"{url}?scope={quote(' '.join(scopes))}" if scopes else url

    def _reauth(self, connector: str, why: str) -> ReauthorizationRequired:
        return ReauthorizationRequired(
            why, connector=connector, login_url=self._connect_url(connector)
        )

    def _fresh(self, record: StoredTokens) -> bool:
        if record.access_token is None:
            return False
        return record.expires_at is None or record.expires_at - REFRESH_MARGIN > self._clock()

    def _token(self, record: StoredTokens) -> AccessToken:
        assert record.access_token is not None
        expires = record.expires_at
        if expires is None:
            expires = self._clock() + DEFAULT_LIFETIME
        return AccessToken(record.access_token, expires, "Bearer", record.scopes)

    def user_token(
        self,
        principal: Principal,
        connector: str,
        scopes: tuple[str, ...],
        *,
        force_refresh: bool,
    ) -> Flow[AccessToken]:
        """The user's token at ``connector`` with ``scopes``; refreshed when due."""
        yield from self.registry.refresh()  # a client secret changed in another worker
        target = self.registry.get(connector)
        if target is None:
            raise UpstreamError("the service names an unknown connector", connector=connector)
        user = principal.subject
        if principal.kind == "anonymous" or user is None:
            raise self._reauth(connector, "sign in to use this service")
        record, _ = yield from self.pins.load(user, target)
        if record is None or record.status != "active" or record.access_token is None:
            raise self._reauth(connector, "connect this account to use this service")
        missing = tuple(s for s in scopes if s not in record.scopes)
        if missing:
            raise ConsentRequired(
                "more permissions are needed for this service",
                connector=connector,
                login_url=self._connect_url(connector, missing),
                scopes=missing,
            )
        if self._fresh(record) and not force_refresh:
            return self._token(record)
        if record.refresh_token is None:
            if self._fresh(record):
                return self._token(record)
            raise self._reauth(connector, "the access to this account has expired")
        reason = "forced" if force_refresh else "expiring"
        token: AccessToken = yield Shared(
            ("authrelay.connector-refresh", user, connector),
            lambda: self._refresh(target, user, record, force_refresh, reason),
        )
        return token

    def refresh_due(
        self, connector: Connector, user: str, record: StoredTokens, reason: str
    ) -> Flow[AccessToken]:
        """Refresh ``record`` now, unless another worker replaced it meanwhile (the
        proactive refresher: same lock, same rotation rules as a request)."""
        token: AccessToken = yield Shared(
            ("authrelay.connector-refresh", user, connector.name),
            lambda: self._refresh(connector, user, record, True, reason),
        )
        return token

    def _refresh(
        self, connector: Connector, user: str, used: StoredTokens, force: bool, reason: str
    ) -> Flow[AccessToken]:
        name = connector.name

        def read() -> Flow[AccessToken | None]:
            record, _ = yield from self.pins.load(user, connector)
            if record is None or record.status != "active" or record.access_token is None:
                raise self._reauth(name, "connect this account to use this service")
            replaced = (record.access_token, record.refresh_token) != (
                used.access_token,
                used.refresh_token,
            )
            if self._fresh(record) and (replaced or not force):
                return self._token(record)  # another worker refreshed meanwhile
            if record.refresh_token is None:
                raise self._reauth(name, "the access to this account has expired")
            return None

        try:
            token: AccessToken = yield from single_flight(
                self.store.lock_key(user, name),
                read=read,
                produce=lambda: self._refresh_locked(connector, user, reason),
                ttl=self.lock_ttl,
                wait=self.lock_ttl + LOCK_MARGIN,
            )
        except TokenStoreUnavailable as exc:
            self.metrics.incr("failures", target=name, flow=bounded(exc.error))
            yield from self.events.emit("refresh_failed", name, user, exc.error)
            # The store is down, or another worker held the lock past the whole budget.
            raise TokenStoreUnavailable(
                exc.description, connector=name, retry_after=exc.retry_after or 1
            ) from None
        except AuthRelayError as exc:
            self.metrics.incr("failures", target=name, flow=bounded(exc.error))
            if not isinstance(exc, ReauthorizationRequired):
                yield from self.events.emit("refresh_failed", name, user, failure_code(exc))
            raise
        return token

    def _refresh_locked(self, connector: Connector, user: str, reason: str) -> Flow[AccessToken]:
        """Under the lock, after ``read`` found nothing usable: one refresh grant."""
        name = connector.name
        record, version = yield from self.pins.load(user, connector)
        if record is None or record.status != "active" or record.refresh_token is None:
            raise self._reauth(name, "connect this account to use this service")
        started = time.perf_counter()
        endpoints = yield from connector.endpoints()
        refresh_token = record.refresh_token
        for attempt in range(2):
            try:
                # RFC 6749 §6
                response = yield from connector.call_token_endpoint(
                    endpoints.token,
                    {"grant_type": "refresh_token", "refresh_token": refresh_token},
                    retry=True,
                )
                break
            except TokenEndpointError as exc:
                if exc.code in _CONFIG_ERRORS:  # RT-06
                    logger.error("refresh_config_error connector=%s error=%s", name, exc.code)
                    raise UpstreamError(
                        "the provider refused this app's credentials",
                        connector=name,
                        oauth_error=exc.code,
                    ) from None
                if exc.code != "invalid_grant":
                    raise UpstreamError(
                        "the token endpoint failed", connector=name, oauth_error=exc.code
                    ) from None
                # RT-03: another worker may have rotated the token meanwhile
                latest, version = yield from self.store.load_tokens(user, name, connector.issuer)
                if (
                    attempt == 0
                    and latest is not None
                    and latest.status == "active"
                    and latest.refresh_token is not None
                    and latest.refresh_token != refresh_token
                ):
                    refresh_token = latest.refresh_token
                    record = latest
                    continue
                if latest is not None:
                    yield from self.store.save_tokens(
                        user, latest.expired_link(self._clock()), expected_version=version
                    )
                logger.info("connector_link_expired connector=%s", name)
                yield from self.events.emit("reauthorization_required", name, user, "invalid_grant")
                raise self._reauth(name, "the access to this account was revoked") from None
        else:  # pragma: no cover - the loop always breaks or raises
            raise UpstreamError("the token endpoint failed", connector=name)
        now = self._clock()
        id_claims = dict(record.id_claims)
        if response.id_token is not None and connector.kind == "oidc":
            # RT-05 (OIDC Core §12.2): a bad or foreign ID token discards the whole
            # response; the stored set stays as it was.
            try:
                claims = yield from validate_id_token(
                    connector, endpoints, response.id_token, now=now, nonce=None
                )
            except CallbackError:
                raise UpstreamError("the refreshed ID token is not valid", connector=name) from None
            if not same_identity(record.id_claims, claims):
                logger.error("refresh_id_token_mismatch connector=%s", name)
                raise UpstreamError("the refreshed ID token names someone else", connector=name)
        updated = replace(
            record,
            access_token=response.access_token,
            # RT-01: keep the old refresh token when none is returned (RFC 6749 §6)
            refresh_token=response.refresh_token or record.refresh_token,
            expires_at=None if response.expires_in is None else now + response.expires_in,
            scopes=tuple(response.scope.split()) if response.scope is not None else record.scopes,
            id_claims=id_claims,
            updated_at=now,
        )
        self.metrics.incr("refreshes", target=name, flow="connector")
        if response.refresh_token is not None and response.refresh_token != refresh_token:
            self.metrics.incr("rotations", target=name, flow="connector")
        self.metrics.observe("refresh", time.perf_counter() - started, target=name)
        try:
            written = yield from self.store.save_tokens(user, updated, expected_version=version)
        except TokenStoreUnavailable:
            written = UNWRITTEN
        if version == UNWRITTEN or written == UNWRITTEN:
            # ST-09: the provider spent the old refresh token; keep the new set and write
            # it after the response, while this request goes on with it.
            if self.pins.pin(user, updated, base=record.refresh_token):
                started = yield Spawn(
                    "persist-tokens", lambda: self.pins.persist_later(user, connector)
                )
                if not started:  # dropped: the next pin may start a writer again
                    self.pins.writer_dropped(user, connector.name)
        elif written is None:
            # Changed or deleted while the lock was held (logout, ST-10): not resurrected.
            logger.warning("refresh_write_conflict connector=%s", name)
            return self._token(updated)
        rotated = updated.refresh_token != record.refresh_token
        yield from self.events.emit("rotated" if rotated else "refreshed", name, user, reason)
        return self._token(updated)
