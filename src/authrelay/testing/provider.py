"""A strict OAuth 2.0 / OpenID Connect identity provider for tests, in process or on loopback.

Every authrelay test, the demo and users' own suites run against this provider, so it is
strict on purpose: a lenient mock hides client bugs. It defends the tests themselves
against false passes: exact redirect URIs, S256-only PKCE, single-use codes, rotating
refresh tokens with family revocation, RFC 9207 ``iss`` on every authorization response,
typed access tokens (RFC 9068) distinct from ID tokens, and "other" keys that are never
published. State lives behind one lock so threads and 1000 concurrent requests are safe.

Rules:

1. Tokens are indexed by SHA-256; raw tokens are never logged.
2. Time comes only from ``clock``; tests move it instead of sleeping.
3. Faults and counters sit outside the endpoints, so faulted requests are counted too.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from starlette.applications import Starlette

from .endpoints.authorize import authorize_routes
from .endpoints.metadata import metadata_routes
from .endpoints.par import par_routes
from .endpoints.token import token_routes
from .faults import Counters, FaultLayer, Faults, issuer_path_of
from .keys import KeyChoice, SigningKeys
from .models import AgentIdentity, OAuthClient, Resource, TestUser
from .state import ProviderState, RefreshState, TokenRecord, token_hash
from .tokens import TokenIssuer, at_hash, merge_claims
from .transports import SyncASGITransport, transport_binding_protocol

__all__ = ["IdentityProvider", "serve_identity_provider"]

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"

_LOOPBACK_HOSTS = ("127.0.0.1", "::1")


class IdentityProvider:
    """A strict in-process OAuth 2.0 authorization server and OpenID Provider.

    Serve it with :func:`serve_identity_provider` or talk to ``idp.app`` in process via
    :meth:`transport` / :meth:`sync_transport`.
    """

    def __init__(
        self,
        *,
        issuer: str | None = None,
        clients: Sequence[OAuthClient] = (),
        users: Sequence[TestUser] = (),
        resources: Sequence[Resource] = (),
        auto_approve: str | None = None,
        login_form: bool = False,
        access_token_ttl: int = 300,
        refresh_token_ttl: int = 86400,
        id_token_ttl: int = 300,
        code_ttl: int = 60,
        refresh_reuse_grace: float = 0.0,
        clock: Callable[[], float] = time.time,
        key_algs: Sequence[str] = ("RS256", "ES256"),
        agent_identities: Sequence[AgentIdentity] = (),
        require_par: bool = False,
    ) -> None:
        self._issuer = issuer.rstrip("/") if issuer else None
        self.clients: dict[str, OAuthClient] = {c.client_id: c for c in clients}
        self.users: dict[str, TestUser] = {u.sub: u for u in users}
        self.users_by_name: dict[str, TestUser] = {u.username: u for u in users}
        self.resources: dict[str, Resource] = {r.identifier: r for r in resources}
        self.agent_identities: dict[str, AgentIdentity] = {a.client_id: a for a in agent_identities}
        for agent in agent_identities:
            if agent.blueprint not in self.clients or agent.client_id in self.clients:
                raise ValueError(f"agent identity {agent.client_id!r}: blueprint not a client")
            if agent.user is not None and agent.user not in self.users:
                raise ValueError(f"agent identity {agent.client_id!r}: agent user not a user")
        if auto_approve is not None and auto_approve not in self.users:
            raise ValueError(f"auto_approve={auto_approve!r} is not a registered user sub")
        self.auto_approve = auto_approve
        self.login_form = login_form
        self.require_par = require_par
        """Refuse authorization requests that were not pushed (RFC 9126 §5)."""
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.id_token_ttl = id_token_ttl
        self.code_ttl = code_ttl
        self.refresh_reuse_grace = refresh_reuse_grace
        self.clock = clock
        self.keys = SigningKeys(tuple(key_algs))
        self.state = ProviderState()
        self.faults = Faults()
        self.counters = Counters()
        self.backchannel_deliveries: list[dict[str, int]] = []
        """Statuses of the logout tokens the end-session endpoint delivered, in order."""
        self.issuer_ = TokenIssuer(
            keys=self.keys, state=self.state, issuer=lambda: self.issuer, clock=clock
        )
        self._lock = threading.Lock()
        self._next_logins: list[str] = []
        self._denials: list[str] = []
        routes = [
            *metadata_routes(self),
            *authorize_routes(self),
            *token_routes(self),
            *par_routes(self),
        ]
        self.app = FaultLayer(
            Starlette(routes=routes),
            faults=self.faults,
            counters=self.counters,
            issuer_path=lambda: issuer_path_of(self.issuer),
        )

    def __repr__(self) -> str:
        return f"IdentityProvider(issuer={self._issuer!r}, clients={sorted(self.clients)})"

    @property
    def issuer(self) -> str:
        """The issuer identifier (no trailing slash). Raises until it is set or served."""
        if self._issuer is None:
            raise RuntimeError(
                "IdentityProvider.issuer is not set: pass issuer=... or serve it with "
                "serve_identity_provider(idp), which picks http://127.0.0.1:<port>"
            )
        return self._issuer

    @issuer.setter
    def issuer(self, value: str) -> None:
        self._issuer = value.rstrip("/")

    # In-process access --------------------------------------------------------------

    def transport(self) -> httpx.ASGITransport:
        """An async in-process transport: ``httpx.AsyncClient(transport=idp.transport())``."""
        return httpx.ASGITransport(app=self.app)

    def sync_transport(self) -> httpx.BaseTransport:
        """A sync in-process transport for ``httpx.Client``; close it (or the client) after."""
        return SyncASGITransport(self.app)

    # Test steering --------------------------------------------------------------------

    def next_login(self, sub: str) -> None:
        """Make the next authorization request auto-approve as user ``sub``."""
        if sub not in self.users:
            raise ValueError(f"unknown user {sub!r}")
        with self._lock:
            self._next_logins.append(sub)

    def deny_next_authorization(self, error: str = "access_denied") -> None:
        """Make the next authorization request fail with ``error`` (redirected, with iss)."""
        with self._lock:
            self._denials.append(error)

    def _take_next_login(self) -> str | None:
        with self._lock:
            return self._next_logins.pop(0) if self._next_logins else None

    def _take_denial(self) -> str | None:
        with self._lock:
            return self._denials.pop(0) if self._denials else None

    def rotate_keys(self, *, keep_old: bool = True) -> None:
        """New signing keys (new kids); old public keys stay in the JWKS if ``keep_old``."""
        self.keys.rotate(keep_old=keep_old)

    def drop_old_keys(self) -> None:
        """Remove retired keys from the JWKS."""
        self.keys.drop_retired()

    # Inspection -----------------------------------------------------------------------

    def issued_refresh_tokens(self, sub: str) -> list[str]:
        """Refresh tokens issued to ``sub``, oldest first."""
        with self.state.lock:
            return list(self.state.refresh_by_sub.get(sub, []))

    def refresh_token_state(self, token: str) -> RefreshState:
        """``"active"``, ``"rotated"``, ``"revoked"`` or ``"unknown"``."""
        return self.state.refresh_state(token)

    @property
    def revoked(self) -> frozenset[str]:
        """SHA-256 hex digests of revoked tokens."""
        with self.state.lock:
            return frozenset(self.state.revoked)

    def is_revoked(self, token: str) -> bool:
        """True if ``token`` was revoked here, directly or through its grant."""
        with self.state.lock:
            if token_hash(token) in self.state.revoked:
                return True
            record = self.state.record(token)
            return record is not None and record.status == "revoked"

    def profile_claims(self, sub: str, scopes: Sequence[str]) -> dict[str, Any]:
        """Claims released about ``sub`` for ``scopes``."""
        user = self.users.get(sub)
        return user.profile(scopes) if user else {}

    def redirect_uri_allowed(self, client: OAuthClient, uri: str) -> bool:
        """Exact match (RFC 9700 §4.1.3), except loopback ports when opted in (RFC 8252 §7.3)."""
        if uri in client.redirect_uris:
            return True
        if not client.loopback_any_port or not uri.startswith("http://"):
            return False
        try:
            parsed = httpx.URL(uri)
        except httpx.InvalidURL:
            return False
        if parsed.host not in _LOOPBACK_HOSTS:
            return False
        portless = str(parsed.copy_with(port=None))
        return portless in client.redirect_uris

    # Minting for negative tests ------------------------------------------------------

    def mint_access_token(
        self,
        *,
        sub: str = "alice",
        audience: str | list[str] = "api://orders",
        scope: str = "orders.read",
        client_id: str = "test-client",
        expires_in: int = 300,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        alg: str = "RS256",
        key: KeyChoice = "current",
        typ: str | None = "at+jwt",
    ) -> str:
        """An RFC 9068 access token with chosen claims; ``claims`` merge last (None removes)."""
        now = int(self.clock())
        base = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,
            "exp": now + expires_in,
            "iat": now,
            "jti": secrets.token_urlsafe(12),
            "client_id": client_id,
            "scope": scope,
        }
        return self.keys.sign(
            merge_claims(base, claims), alg=alg, key=key, typ=typ, headers=headers
        )

    def mint_id_token(
        self,
        *,
        sub: str = "alice",
        audience: str | list[str] = "test-client",
        nonce: str | None = None,
        access_token: str | None = None,
        expires_in: int = 300,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        alg: str = "RS256",
        key: KeyChoice = "current",
        typ: str | None = "JWT",
    ) -> str:
        """An ID token with chosen claims (``aud``/``azp`` = ``audience``)."""
        now = int(self.clock())
        azp = audience if isinstance(audience, str) else audience[0]
        base: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,
            "azp": azp,
            "exp": now + expires_in,
            "iat": now,
            "auth_time": now,
            **self.profile_claims(sub, ("profile", "email")),
        }
        if nonce is not None:
            base["nonce"] = nonce
        if access_token is not None and alg in ("RS256", "PS256", "ES256", "EdDSA"):
            base["at_hash"] = at_hash(access_token, alg)
        return self.keys.sign(
            merge_claims(base, claims), alg=alg, key=key, typ=typ, headers=headers
        )

    def mint_logout_token(
        self,
        *,
        sub: str | None = "alice",
        sid: str | None = None,
        audience: str | list[str] = "test-client",
        expires_in: int = 120,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        alg: str = "RS256",
        key: KeyChoice = "current",
        typ: str | None = "logout+jwt",
    ) -> str:
        """A Back-Channel Logout 1.0 logout token; ``claims`` merge last (None removes)."""
        now = int(self.clock())
        base: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now + expires_in,
            "jti": secrets.token_urlsafe(12),
            "events": {LOGOUT_EVENT: {}},
        }
        if sub is not None:
            base["sub"] = sub
        if sid is not None:
            base["sid"] = sid
        return self.keys.sign(
            merge_claims(base, claims), alg=alg, key=key, typ=typ, headers=headers
        )

    def _backchannel_targets(self, sub: str, sid: str | None) -> list[tuple[str, str, str]]:
        """``(client_id, uri, logout token)`` for every client of the user's session."""
        with self.state.lock:
            grants = [
                g
                for g in self.state.grants.values()
                if g.sub == sub and not g.revoked and (sid is None or g.sid == sid)
            ]
        targets = []
        for client_id in sorted({g.client_id for g in grants}):
            client = self.clients.get(client_id)
            if client is None or client.backchannel_logout_uri is None:
                continue
            token = self.mint_logout_token(sub=sub, sid=sid, audience=client_id)
            targets.append((client_id, client.backchannel_logout_uri, token))
        return targets

    def backchannel_logout(self, *, sub: str, sid: str | None = None) -> dict[str, int]:
        """POST logout tokens to the clients of ``sub`` (of session ``sid`` only, if given).

        Returns each notified client's HTTP status (0 when it could not be reached). The
        end-session endpoint does the same for the session it ends.
        """
        statuses: dict[str, int] = {}
        with httpx.Client(timeout=5.0) as http:
            for client_id, uri, token in self._backchannel_targets(sub, sid):
                try:
                    statuses[client_id] = http.post(uri, data={"logout_token": token}).status_code
                except httpx.HTTPError:
                    statuses[client_id] = 0
        return statuses

    async def deliver_backchannel_logout(
        self, *, sub: str, sid: str | None = None
    ) -> dict[str, int]:
        """:meth:`backchannel_logout` from the event loop (the end-session endpoint)."""
        statuses: dict[str, int] = {}
        targets = self._backchannel_targets(sub, sid)
        if not targets:
            return statuses
        async with httpx.AsyncClient(timeout=5.0) as http:
            for client_id, uri, token in targets:
                try:
                    response = await http.post(uri, data={"logout_token": token})
                    statuses[client_id] = response.status_code
                except httpx.HTTPError:
                    statuses[client_id] = 0
        self.backchannel_deliveries.append(statuses)
        return statuses

    def mint_opaque_token(
        self,
        *,
        sub: str = "alice",
        scope: str = "orders.read",
        audience: str = "api://orders",
        expires_in: int = 300,
        active: bool = True,
        client_id: str = "test-client",
    ) -> str:
        """An opaque access token known to introspection (``active=False``: reported inactive)."""
        now = int(self.clock())
        record = TokenRecord(
            kind="access_token",
            grant_id="minted",
            sub=sub,
            client_id=client_id,
            scope=tuple(scope.split()),
            audience=(audience,),
            issued_at=now,
            expires_at=now + expires_in,
            active_override=active,
        )
        return self.issuer_.opaque(record)


@contextmanager
def serve_identity_provider(idp: IdentityProvider, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``idp`` under uvicorn on a free loopback port; yield its issuer URL.

    If ``idp.issuer`` was unset it becomes ``http://127.0.0.1:<port>``. ``drop`` faults
    close the socket without a response (the client sees ``httpx.RemoteProtocolError``).
    """
    from .servers import free_port, serve_asgi

    port = free_port(host)
    if idp._issuer is None:
        idp.issuer = f"http://{host}:{port}"
    with serve_asgi(idp.app, host=host, port=port, http=transport_binding_protocol()):
        yield idp.issuer
