"""Acquiring a service's credential: cache, single-flight, then the service's flow.

Rules (each checked by the tests):

1. A cold key costs one token request however many requests (tasks or threads) want it
   at once: the acquisition runs under :class:`~authrelay._io.Shared`, and the leader
   re-checks the cache first, so waiters that arrive late find the fresh entry.
2. A failure is shared by the waiters and remembered for ``negative_cache_ttl`` seconds;
   during that window the same key raises at once without a request.
3. Tokens derived from the caller's bearer token (exchange, on-behalf-of) are keyed by
   SHA-256 of that token (TX-03) and expire no later than it does (TX-04); only a
   verified bearer token (``Principal.kind == "bearer"``) is ever exchanged, or for a
   session caller the access token its connector obtained from the exchange's own
   authorization server (refreshed first when due); those are keyed by the session and
   dropped when it ends (``subject``, docs/security.md TX-04).
4. The caller's token is forwarded only by ``forward`` services, only from a verified
   bearer caller (never a session), and only when its ``aud`` names the service's
   audience (FW-01).
5. With a shared store (SQLite, Redis), ``client_credentials``, ``token_exchange`` and
   ``on_behalf_of`` tokens go through the store after the in-process single-flight
   (:mod:`.shared`): one token request across processes. A store failure is a 503
   (``TokenStoreUnavailable``) unless this process still holds an unexpired token.
6. Counters (``relay.metrics``, target = service, flow = the service's flow): a cache
   hit is a plain integer on the runtime (no lock on the hot path), folded into the
   stats when they are read; misses, token-endpoint calls, refreshes (after expiry or a
   401), store hits and failures (flow label = the error code) go through ``Stats``.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .._crypto import fingerprint_of
from .._io import Flow, Shared
from ..errors import (
    AuthRelayError,
    MissingCredentials,
    ReauthorizationRequired,
    TokenStoreUnavailable,
    UpstreamError,
    failure_code,
)
from ..observability import bounded, token_request_metrics
from ..principal import Credentials, Principal
from ..tokens import SAFE, AccessToken, CachedToken, ErrorContext, RetryPolicy, request_token
from ..tokens.client_auth import ClientAuthenticator
from ..tokens.grants import (
    client_credentials_form,
    on_behalf_of_form,
    token_exchange_form,
    user_fic_form,
)
from .options import CallOptions
from .shared import SHARED_FLOWS, acquire_shared, record_key

if TYPE_CHECKING:
    from .agents import AgentRuntime
    from .runtime import ServiceRuntime

__all__ = ["header_flow"]

logger = logging.getLogger("authrelay.services")


def header_flow(
    runtime: ServiceRuntime,
    principal: Principal,
    credentials: Credentials,
    options: CallOptions,
    key: Hashable | None,
    *,
    stale: str | None = None,
) -> Flow[str]:
    """The credential (header value) for one call; ``stale`` is a value a 401 refused."""
    if runtime.static_header is not None:
        return runtime.static_header
    if key is None:
        return forward_header(runtime, principal, credentials)
    if stale is not None:
        runtime.cache.discard(key, stale)
        entry = runtime.cache.get(key)
        if entry is not None and entry.header != stale:
            runtime.hits += 1
            return entry.header
    else:
        hit = runtime.cache.get(key)
        if hit is not None:
            runtime.hits += 1
            return hit.header
    runtime.registry.relay.metrics.incr("cache_misses", target=runtime.name, flow=runtime.flow)
    shared: CachedToken = yield Shared(
        ("authrelay.token", runtime.name, key, stale is not None),
        lambda: _acquire_once(runtime, principal, credentials, options, key, stale),
    )
    return shared.header


def forward_header(runtime: ServiceRuntime, principal: Principal, credentials: Credentials) -> str:
    """The caller's own bearer token, if it may go to this service (FW-01)."""
    token = credentials.token
    if principal.kind != "bearer" or not token:
        raise MissingCredentials("this service needs the caller's bearer token")
    audience = principal.claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or runtime.settings.audience not in audiences:
        raise UpstreamError(
            "the caller's token is not meant for this service; it is not forwarded",
            service=runtime.name,
        )
    return f"Bearer {token}"


def _acquire_once(
    runtime: ServiceRuntime,
    principal: Principal,
    credentials: Credentials,
    options: CallOptions,
    key: Hashable,
    stale: str | None,
) -> Flow[CachedToken]:
    cache = runtime.cache
    if stale is None:
        entry = cache.get(key)
        if entry is not None:
            return entry
    failure = cache.failure(key)
    if failure is not None:
        try:
            raise copy.copy(failure)
        except TypeError:
            raise failure from None
    flow = runtime.effective_flow(options)
    metrics = runtime.registry.relay.metrics
    if stale is not None or key in cache.entries:  # dropped after a 401, or expired
        metrics.incr("refreshes", target=runtime.name, flow=flow)
    started = time.perf_counter()
    force = stale is not None
    record: str | None = None
    until: float | None = None
    try:
        if runtime.registry.shared is not None and flow in SHARED_FLOWS:
            record = record_key(runtime, principal, credentials, options, flow)
            found, fetched = yield from acquire_shared(
                runtime,
                record,
                lambda: _fetch(runtime, flow, principal, credentials, options, force),
                stale=stale,
            )
            token, until = found.token, found.use_until
            if not fetched:
                metrics.incr("store_hits", target=runtime.name, flow=flow)
        else:
            token = yield from _fetch(runtime, flow, principal, credentials, options, force)
    except TokenStoreUnavailable as exc:
        metrics.incr("failures", target=runtime.name, flow=exc.error)
        metrics.observe("acquire", time.perf_counter() - started, target=runtime.name)
        live = cache.entries.get(key)
        if live is not None and live.expires_at > runtime.clock() and live.header != stale:
            # ST-04: the store is down, but this process still holds an unexpired token.
            logger.warning("token_store_down_serving_cached service=%s", runtime.name)
            return live
        # Not negative-cached: the next request tries the store again.
        raise TokenStoreUnavailable(
            "the token store is unavailable", service=runtime.name, retry_after=exc.retry_after or 1
        ) from None
    except AuthRelayError as exc:
        metrics.incr("failures", target=runtime.name, flow=bounded(failure_code(exc)))
        metrics.observe("acquire", time.perf_counter() - started, target=runtime.name)
        if isinstance(exc, UpstreamError):
            cache.fail(key, exc, runtime.settings.negative_cache_ttl)
        raise
    metrics.observe("acquire", time.perf_counter() - started, target=runtime.name)
    logger.debug(
        "token_acquired service=%s flow=%s fingerprint=%s expires_in=%d",
        runtime.name,
        flow,
        fingerprint_of(token.value),
        int(token.expires_at - runtime.clock()),
    )
    entry = cache.put(key, token, runtime.header_for(token), runtime.margin, until=until)
    runtime.registry.note_session_entry(runtime, key, record)
    if record is not None:
        runtime.registry.remember(record, runtime, key)
    return entry


def _fetch(
    runtime: ServiceRuntime,
    flow: str,
    principal: Principal,
    credentials: Credentials,
    options: CallOptions,
    force: bool,
) -> Flow[AccessToken]:
    settings = runtime.settings
    scopes = options.scopes if options.scopes is not None else runtime.scopes
    if flow == "connector":
        connector = settings.connector
        assert connector is not None
        source = runtime.registry.user_tokens
        if source is None or principal.kind == "anonymous":
            raise ReauthorizationRequired(
                "connect this account first",
                connector=connector,
                login_url=_login_url(runtime, connector),
            )
        user_token: AccessToken = yield from source.user_token(
            principal, connector, scopes, force_refresh=force
        )
        return user_token
    agent = runtime.registry.agent(options.actor) if options.actor else None
    if agent is not None and agent.entra and flow == "client_credentials":
        return (yield from _entra_agent(runtime, agent, options, scopes))
    if flow == "client_credentials":
        auth = agent.auth if agent is not None else runtime.auth
        form = _app_form(runtime, options, scopes)
        response = yield from _post(runtime, options, form, auth, scopes, user_grant=False)
        return runtime.registry.token_from(response, runtime, scopes, not_after=None)
    token, not_after = yield from _subject_token(runtime, principal, credentials)
    try:
        exchanged: AccessToken = yield from _exchange(
            runtime, flow, options, scopes, token, not_after, agent
        )
    except ReauthorizationRequired as exc:
        connector = runtime.session_connector
        if runtime.subject_of(principal, credentials) != "session" or connector is None:
            raise
        # The provider refused the session's own token (revoked there): sign in again.
        raise ReauthorizationRequired(
            exc.description,
            connector=connector,
            login_url=_login_url(runtime, connector),
        ) from None
    return exchanged


def _exchange(
    runtime: ServiceRuntime,
    flow: str,
    options: CallOptions,
    scopes: tuple[str, ...],
    token: str,
    not_after: float | None,
    agent: AgentRuntime | None,
) -> Flow[AccessToken]:
    settings = runtime.settings
    if flow == "on_behalf_of":
        form = on_behalf_of_form(
            assertion=token,
            scopes=scopes,
            resource=settings.resource,
            extra=_extra(runtime, options),
        )
        auth = runtime.auth
        if agent is not None:
            # Entra agent on-behalf-of flow: the agent identity, authenticated by the
            # blueprint's exchange token, is the client of the user's request.
            endpoint, issuer = yield from token_endpoint(runtime, options)
            blueprint = yield from agent.blueprint_token(runtime.auth, endpoint, issuer)
            form, auth = agent.assertion_form(form, blueprint), None
        response = yield from _post(runtime, options, form, auth, scopes, user_grant=True)
        return runtime.registry.token_from(response, runtime, scopes, not_after=not_after)
    actor_name = options.actor if options.actor is not None else settings.actor
    actor_token: str | None = None
    if actor_name is not None:
        endpoint, issuer = yield from token_endpoint(runtime, options)
        actor_token = yield from runtime.registry.agent(actor_name).token(endpoint, issuer)
    form = token_exchange_form(
        subject_token=token,
        subject_token_type=settings.subject_token_type,
        requested_token_type=settings.requested_token_type,
        scopes=scopes,
        audience=settings.audience,
        resource=settings.resource,
        actor_token=actor_token,
        extra=_extra(runtime, options),
    )
    response = yield from _post(
        runtime, options, form, runtime.auth, scopes, user_grant=True,
        expect_issued=settings.requested_token_type,
    )  # fmt: skip
    return runtime.registry.token_from(response, runtime, scopes, not_after=not_after)


def _entra_agent(
    runtime: ServiceRuntime, agent: AgentRuntime, options: CallOptions, scopes: tuple[str, ...]
) -> Flow[AccessToken]:
    """An Entra agent identity's app token, or its agent user's (``user_fic``) token."""
    endpoint, issuer = yield from token_endpoint(runtime, options)
    blueprint = yield from agent.blueprint_token(runtime.auth, endpoint, issuer)
    if options.agent_user is None and options.agent_user_id is None:
        form = agent.assertion_form(_app_form(runtime, options, scopes), blueprint)
    else:
        credential = yield from agent.identity_token(blueprint, endpoint, issuer)
        form = user_fic_form(
            agent_identity=agent.settings.client_id,
            blueprint_token=blueprint,
            agent_token=credential,
            scopes=scopes,
            username=options.agent_user,
            user_id=options.agent_user_id,
            extra=_extra(runtime, options),
        )
    response = yield from _post(runtime, options, form, None, scopes, user_grant=False)
    return runtime.registry.token_from(response, runtime, scopes, not_after=None)


def _subject_token(
    runtime: ServiceRuntime, principal: Principal, credentials: Credentials
) -> Flow[tuple[str, float | None]]:
    """The subject token to exchange and its expiry (TX-04)."""
    subject = runtime.subject_of(principal, credentials)
    if subject == "session":
        connector = runtime.session_connector
        source = runtime.registry.user_tokens
        assert connector is not None
        if source is None:
            raise ReauthorizationRequired(
                "sign in to use this service",
                connector=connector,
                login_url=_login_url(runtime, connector),
            )
        # Refreshed through the connector's rotation when due: never an expired token.
        user_token: AccessToken = yield from source.user_token(
            principal, connector, (), force_refresh=False
        )
        return user_token.value, user_token.expires_at
    token = credentials.token
    if subject != "bearer" or not token:
        # TX-04: only a verified bearer token, or a session's connector token from the
        # exchange's own authorization server, may be exchanged.
        if principal.kind == "bearer" and runtime.subject_mode == "session":
            raise MissingCredentials("this service exchanges the signed-in user's session")
        raise MissingCredentials("this service needs the caller's bearer token")
    not_after = credentials.expires_at
    if not_after is not None and not_after <= runtime.clock():
        raise MissingCredentials("the caller's bearer token has expired")
    return token, not_after


def _login_url(runtime: ServiceRuntime, connector: str) -> str:
    """Where the user (re)connects ``connector``."""
    return f"{runtime.registry.relay.prefix}/{connector}/login"


def _app_form(
    runtime: ServiceRuntime, options: CallOptions, scopes: tuple[str, ...]
) -> dict[str, str]:
    """The ``client_credentials`` form of an app token for this service."""
    settings = runtime.settings
    return client_credentials_form(
        scopes=scopes,
        audience=settings.audience,
        resource=settings.resource,
        extra=_extra(runtime, options),
    )


def _extra(runtime: ServiceRuntime, options: CallOptions) -> list[tuple[str, str]]:
    params = dict(runtime.settings.token_endpoint_params)
    params.update(options.token_endpoint_params)
    return sorted(params.items())


def token_endpoint(runtime: ServiceRuntime, options: CallOptions) -> Flow[tuple[str, str | None]]:
    """The token endpoint for a call and the issuer identifier (assertion audience)."""
    relay = runtime.registry.relay
    bearer = relay.settings.bearer
    issuer = bearer.issuer if bearer is not None else None
    configured = runtime.settings.token_endpoint
    if configured is not None:
        tenant = options.tenant or runtime.settings.tenant
        if tenant is not None:
            configured = configured.replace("{tenant}", quote(tenant, safe=""))
        return configured, issuer
    source: Any = relay.bearer
    metadata = yield from source.metadata()
    endpoint = metadata.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise UpstreamError(
            "the bearer issuer's metadata names no token_endpoint", service=runtime.name
        )
    return endpoint, issuer


def _post(
    runtime: ServiceRuntime,
    options: CallOptions,
    form: dict[str, str],
    auth: ClientAuthenticator | None,
    scopes: tuple[str, ...],
    *,
    user_grant: bool,
    expect_issued: str | None = None,
) -> Flow[Any]:
    endpoint, issuer = yield from token_endpoint(runtime, options)
    settings = runtime.settings
    relay = runtime.registry.relay
    http = relay.settings.http
    flow = runtime.effective_flow(options)
    relay.metrics.incr("token_endpoint_calls", target=runtime.name, flow=flow)
    with token_request_metrics(relay.metrics, runtime.name, flow, form.get("grant_type", "")):
        response = yield from request_token(
            endpoint,
            form,
            auth,
            issuer=issuer,
            policy=RetryPolicy(SAFE, settings.token_retries, settings.token_retry_deadline),
            context=ErrorContext(service=runtime.name, scopes=scopes, user_grant=user_grant),
            max_bytes=http.max_token_bytes,
            timeout=http.token_timeout,
            expect_issued_token_type=expect_issued,
        )
    return response
