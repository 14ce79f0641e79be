"""Service tokens shared by worker processes through the store (SQLite or Redis).

Defends against (CL-01, TX-03, RT-02, ST-04, ST-06, INV-3):

- N processes each asking the token endpoint for the same cold key: after the
  in-process cache and the in-process single-flight (:mod:`.acquire`), acquisition goes
  through :func:`~authrelay.stores.locks.single_flight` over a sealed shared record, so
  one process calls the token endpoint and the others read its result from the store;
- a late writer overwriting a newer token: the record is written with compare-and-set
  at the version read under the lock, with a TTL at the token's expiry;
- a token a downstream refused staying in use elsewhere: after a 401 the record holding
  that token is deleted (at its version), which Redis publishes so the other processes
  drop their in-process copy (:meth:`ServiceRegistry.forget`); a refused token is never
  read back from the store;
- a store outage read as "no token" (ST-04): store failures raise
  :class:`~authrelay.errors.TokenStoreUnavailable` (503 with ``Retry-After``); the
  caller in :mod:`.acquire` serves an in-process token instead while one is unexpired;
- cross-principal bleed and raw tokens in keys (ST-06, TX-03): record keys digest the
  client, token endpoint, audience/resource and sorted scopes, and for exchanged
  tokens SHA-256 of the subject token and the actor, never a token.

Only ``client_credentials``, ``token_exchange`` and ``on_behalf_of`` tokens are shared:
connector tokens have their own store records (:mod:`authrelay.connectors`), and
``forward``/``api_key`` credentials are never stored.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._io import Flow
from ..errors import TokenStoreUnavailable
from ..principal import Credentials, Principal
from ..stores.locks import single_flight
from ..stores.shared_tokens import SharedToken
from ..tokens import AccessToken
from ..tokens.cache import use_until
from .options import CallOptions

if TYPE_CHECKING:
    from .runtime import ServiceRuntime

__all__ = ["LOCK_MARGIN", "SHARED_FLOWS", "acquire_shared", "lock_ttl", "record_key"]

logger = logging.getLogger("authrelay.services")

SHARED_FLOWS = frozenset({"client_credentials", "token_exchange", "on_behalf_of"})
"""Flows whose tokens are shared through the store when the store is shared."""
LOCK_MARGIN = 5.0
"""Seconds the lock outlives the longest acquisition, and waiters outwait the lock."""


def lock_ttl(runtime: ServiceRuntime) -> float:
    """How long one acquisition may hold the lock: discovery, an actor token, the token
    request with its retries, and :data:`LOCK_MARGIN`."""
    http = runtime.registry.relay.settings.http
    return (
        http.metadata_timeout
        + 2 * http.token_timeout
        + runtime.settings.token_retry_deadline
        + LOCK_MARGIN
    )


def record_key(
    runtime: ServiceRuntime,
    principal: Principal,
    credentials: Credentials,
    options: CallOptions,
    flow: str,
) -> str:
    """The shared record key of a call (ST-06, TX-03, CL-01); needs ``runtime.registry.shared``."""
    registry = runtime.registry
    shared = registry.shared
    assert shared is not None
    settings = runtime.settings
    scopes = sorted(options.scopes if options.scopes is not None else runtime.scopes)
    tenant = options.tenant or settings.tenant
    endpoint = settings.token_endpoint
    if endpoint is None:
        bearer = registry.relay.settings.bearer
        endpoint = "discovery:" + (bearer.issuer if bearer is not None else "")
    params = dict(settings.token_endpoint_params)
    params.update(options.token_endpoint_params)
    param_list = [f"{name}={value}" for name, value in sorted(params.items())]
    if flow == "client_credentials":
        if options.actor:
            client = registry.agent(options.actor).settings.client_id
        else:
            client = runtime.client_settings.client_id if runtime.client_settings else ""
        if options.agent_user is not None or options.agent_user_id is not None:
            param_list += [f"agent_user={options.agent_user or ''}",
                           f"agent_user_id={options.agent_user_id or ''}"]  # fmt: skip
        return shared.key_for(
            ["app", client, endpoint, tenant, settings.audience, settings.resource, scopes,
             param_list]
        )  # fmt: skip
    if runtime.subject_of(principal, credentials) == "session":
        # The session's record key (a digest) and connector: never the token itself.
        assert principal.session_id is not None
        session = registry.relay.sessions.record_key(principal.session_id)
        subject = f"session:{session}:{runtime.session_connector}"
    else:
        subject = hashlib.sha256((credentials.token or "").encode()).hexdigest()
    actor = options.actor if options.actor is not None else settings.actor
    client = runtime.client_settings.client_id if runtime.client_settings else ""
    return shared.key_for(
        [flow, subject, actor, client, endpoint, tenant, settings.audience, settings.resource,
         scopes, settings.requested_token_type, param_list]
    )  # fmt: skip


def acquire_shared(
    runtime: ServiceRuntime,
    key: str,
    fetch: Callable[[], Flow[AccessToken]],
    *,
    stale: str | None,
) -> Flow[tuple[SharedToken, bool]]:
    """The token for ``key`` from the store, or from ``fetch`` in one process at a time.

    Returns the token with its use-until time, and True when this process fetched it.
    ``stale`` is a header value a downstream refused: its record is deleted first and it
    is never taken from the store again.
    """
    store = runtime.registry.shared
    assert store is not None
    clock = runtime.clock
    if stale is not None:
        found, version = yield from store.load(key)
        if found is not None and runtime.header_for(found.token) == stale:
            # Deleting publishes the key (Redis): other processes drop their copy.
            yield from store.delete(key, expected_version=version)
    fetched: list[bool] = []

    def read() -> Flow[SharedToken | None]:
        found, _ = yield from store.load(key)
        if found is None or found.use_until <= clock():
            return None
        if stale is not None and runtime.header_for(found.token) == stale:
            return None
        return found

    def produce() -> Flow[SharedToken]:
        _, version = yield from store.load(key)  # the version under the lock: CAS below
        token = yield from fetch()
        fetched.append(True)
        until = use_until(clock(), token.expires_at, runtime.margin)
        try:
            written = yield from store.save(key, token, until, expected_version=version)
        except TokenStoreUnavailable:
            # The token is good; this process uses it, the others acquire their own.
            logger.warning("shared_token_write_failed service=%s", runtime.name)
        else:
            if written is None:
                logger.info("shared_token_write_lost service=%s", runtime.name)
        return SharedToken(token, until)

    ttl = lock_ttl(runtime)
    result: SharedToken = yield from single_flight(
        store.lock_key(key), read=read, produce=produce, ttl=ttl, wait=ttl + LOCK_MARGIN
    )
    return result, bool(fetched)
