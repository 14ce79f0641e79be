"""Login, connect and callback: the authorization code flow with PKCE, as sans-IO flows.

Defends against (SECURITY §1, §2, §11, §12, §13):

- CSRF on the callback and login injection (AC-04, AC-05): ``state`` is 256 random
  bits carrying no meaning; the transaction (connector, issuer, redirect URI, nonce,
  PKCE verifier, ``next``, mode, time) is stored server-side under it, single-use, for
  10 minutes, and bound to the browser by an entry in the one pre-auth cookie whose
  hash the record holds. Up to ten parallel logins share that bounded cookie
  (:mod:`.preauth`);
- code interception (AC-01..AC-03): PKCE S256 always, verifier never sent to the browser;
- mix-up (MU-01..MU-03): RFC 9207 ``iss`` compared exactly with the stored issuer
  before any token request, required when the provider declares support; states are
  only valid on their own connector's callback;
- code replay and retries (AC-08): the code is redeemed once, never retried;
- forged ID tokens (ID-01..ID-10, see :mod:`.idtoken`);
- session fixation (SE-04): sign-in and linking issue a new session id and end the old;
- open redirects (RD-01..RD-05): ``next`` validated at login and again at callback;
- account takeover by linking (DESIGN lessons): an identity is linked to another user
  only by an explicit ``connect`` from a signed-in session, never by matching e-mails.

Every callback failure answers E-CALLBACK (400, ``no-store``, ``no-referrer``) and leaves
the session as it was. A callback refused before its transaction is consumed (polluted
parameters, see :mod:`.params`; a ``state`` from a browser that does not own it, or on
another connector's callback) leaves the transaction and its cookie to their owner;
other failures clear the cookie.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from .._crypto import constant_time_equals, random_token
from .._io import Flow
from ..errors import AuthRelayError, CallbackError, MissingCredentials, UpstreamError
from ..identity.session import SessionRecord
from ..observability import bounded
from ..redirects import safe_next
from ..responses import Response, error_response, redirect
from ..routing import AuthRequest
from ..stores.tokens import StoredTokens, Transaction
from .connector import Connector, TokenEndpointError
from .idtoken import checked_userinfo, fetch_userinfo, validate_id_token
from .metadata import Profile
from .par import front_channel_uri, push_authorization_request, uses_par
from .params import VSCHAR, Untouched, check_callback_parameters, unconfigured_issuer
from .preauth import PreAuthCookie

if TYPE_CHECKING:
    from .registry import ConnectorRegistry

__all__ = ["LoginFlows"]

logger = logging.getLogger("authrelay.connectors.login")

TRANSACTION_TTL = 600
_MAX_QUERY = 4096
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3 scope-token
_AUTHZ_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "login_required",
        "consent_required",
        "interaction_required",
        "account_selection_required",
    }
)  # RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class LoginFlows:
    """The login, connect and callback routes of every connector."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        self.registry = registry
        relay = registry.relay
        self.settings = relay.settings
        self.sessions = relay.sessions
        self.store = registry.store
        self._clock = relay.clock
        self.metrics = relay.metrics
        self._cookie_base = self.sessions.cookie_name
        secure = "" if self.settings.session.dev_insecure_cookies else "; Secure"
        self._tx_attributes = f"Path=/; HttpOnly; SameSite=Lax{secure}"
        self._preauth = PreAuthCookie(self._cookie_base, self._tx_attributes)

    # -- cookies and URLs ---------------------------------------------------------------

    @property
    def tx_cookie_name(self) -> str:
        """The one pre-auth cookie (up to ten parallel logins: :mod:`.preauth`)."""
        return self._preauth.name

    def redirect_uri(self, connector: Connector, request: AuthRequest) -> str:
        """``{public_base_url}{prefix}/{connector}/callback`` (AC-07, never from Host)."""
        base = self.settings.public_base_url
        if base is None:
            # dev_mode only (checked at start): the request's own scheme and host
            base = f"{request.scheme}://{request.headers.get('host', 'localhost')}"
        return f"{base.rstrip('/')}{self.settings.routes.prefix}/{connector.name}/callback"

    # -- login and connect --------------------------------------------------------------

    def login(self, connector: Connector, request: AuthRequest, *, connect: bool) -> Flow[Response]:
        """Send the browser to the provider (``/login`` or ``/connect``)."""
        principal = request.identity.principal
        if connect and (principal.kind != "session" or principal.subject is None):
            raise MissingCredentials("connecting an account needs a signed-in user")
        routes = self.settings.routes
        # RD-04: validated before it is stored
        next_url = safe_next(
            request.param("next"), routes.after_login, routes.allowed_redirect_origins
        )
        scopes = list(connector.scopes)
        extra = request.param("scope")
        if extra:
            for scope in extra.split(" ")[:32]:
                if _SCOPE.fullmatch(scope) and scope not in scopes:
                    scopes.append(scope)
        endpoints = yield from connector.endpoints()
        pushed = uses_par(connector, endpoints)  # RFC 9126 (PAR-02)
        state, nonce, verifier, binding = (random_token(32) for _ in range(4))
        redirect_uri = self.redirect_uri(connector, request)
        tx = Transaction(
            connector=connector.name,
            mode="connect" if connect else "login",
            issuer=connector.issuer,
            redirect_uri=redirect_uri,
            nonce=nonce,
            code_verifier=verifier,
            next=next_url,
            binding=_sha(binding),
            created_at=self._clock(),
            scopes=tuple(scopes),
            user=principal.subject if connect else None,
            session_id=principal.session_id if connect else None,
            max_age=connector.settings.max_age,
            acr_values=tuple(connector.settings.acr_values)
            if connector.settings.acr_essential
            else (),
        )
        yield from self.store.put_transaction(state, tx, ttl=TRANSACTION_TTL)
        params: dict[str, str] = dict(connector.settings.authorize_params)
        params.update(
            response_type="code",  # AC-10: no implicit or hybrid
            client_id=connector.client_id,
            redirect_uri=redirect_uri,
            scope=" ".join(scopes),
            state=state,
            code_challenge=create_s256_code_challenge(verifier),  # RFC 7636 §4.2, AC-01
            code_challenge_method="S256",
        )
        if connector.kind == "oidc":
            params["nonce"] = nonce  # ID-06
            if connector.settings.max_age is not None:
                params["max_age"] = str(connector.settings.max_age)
            acr_values = connector.settings.acr_values
            if acr_values:
                params["acr_values"] = " ".join(acr_values)
            if connector.settings.acr_essential:  # OIDC Core §5.5.1.1
                claims = {"id_token": {"acr": {"essential": True, "values": acr_values}}}
                params["claims"] = json.dumps(claims, separators=(",", ":"))
        if pushed:  # PAR-01: everything goes over the back channel
            request_uri = yield from push_authorization_request(connector, endpoints, params)
            uri = front_channel_uri(endpoints.authorization, connector.client_id, request_uri)
        else:
            uri = prepare_grant_uri(  # RFC 6749 §4.1.1: added to the endpoint's own query
                endpoints.authorization,
                params.pop("client_id"),
                params.pop("response_type"),
                redirect_uri=params.pop("redirect_uri"),
                scope=params.pop("scope"),
                state=params.pop("state"),
                **params,
            )
        response = redirect(
            uri, 302, [("referrer-policy", "no-referrer")]
        )  # the provider never sees our URL
        cookies = request.headers.get("cookie", "")
        response.set_cookie(self._preauth.add(cookies, state, binding, TRANSACTION_TTL))
        return response

    # -- callback -----------------------------------------------------------------------

    def callback(self, connector: Connector, request: AuthRequest) -> Flow[Response]:
        """Finish a login or connect; every failure is E-CALLBACK and changes nothing."""
        state = request.param("state")
        clear = None
        if state and len(state) <= 256:
            pending = self._preauth.entries(request.headers.get("cookie", ""))
            clear = self._preauth.remove(pending, state, TRANSACTION_TTL)
        try:
            response = yield from self._callback(connector, request, state)
        except Untouched as exc:  # the owner's transaction and cookie stay (AC-04)
            clear = None
            response = self._failed(connector, request, exc)
        except AuthRelayError as exc:
            response = self._failed(connector, request, exc)
        if clear is not None:
            response.set_cookie(clear)
        return response

    def _failed(self, connector: Connector, request: AuthRequest, exc: AuthRelayError) -> Response:
        code = exc.code if isinstance(exc, CallbackError) else exc.error
        self.metrics.incr("failures", target=connector.name, flow=bounded(code))
        if isinstance(exc, CallbackError):
            logger.info("callback_failed connector=%s error=%s", connector.name, code)
        else:
            logger.warning("callback_failed connector=%s error=%s", connector.name, code)
        response = error_response(exc, accept=request.headers.get("accept"))
        if ("referrer-policy", "no-referrer") not in response.headers:
            response.headers.append(("referrer-policy", "no-referrer"))
        return response

    def _transaction(
        self, connector: Connector, request: AuthRequest, state: str | None
    ) -> Flow[Transaction]:
        if len(request.query_string) > _MAX_QUERY:
            raise Untouched("invalid_request", "the callback query is too large")
        check_callback_parameters(request.query())
        if not state or len(state) > 256:
            raise Untouched("invalid_state", "the callback has no usable state parameter")
        seen = yield from self.store.peek_transaction(state, connector.name)
        if seen is None:
            raise Untouched("invalid_state", "this sign-in is unknown, expired or already used")
        entries = self._preauth.entries(request.headers.get("cookie", ""))
        binding = self._preauth.binding(entries, state)
        owned = binding is not None and constant_time_equals(_sha(binding), seen.binding)
        if not owned or seen.connector != connector.name:  # AC-04: the owner can still finish
            raise Untouched("invalid_state", "this sign-in was not started in this browser")
        tx = yield from self.store.take_transaction(state, connector.name)  # single use
        if tx is None or not constant_time_equals(tx.binding, seen.binding):
            raise CallbackError("invalid_state", "this sign-in is unknown, expired or already used")
        if self._clock() - tx.created_at > TRANSACTION_TTL:
            raise CallbackError("invalid_state", "this sign-in has expired; please start again")
        return tx

    def _callback(
        self, connector: Connector, request: AuthRequest, state: str | None
    ) -> Flow[Response]:
        tx = yield from self._transaction(connector, request, state)
        endpoints = yield from connector.endpoints()
        query = request.query()
        # RFC 9207 §2.4 (MU-01, MU-02): exact comparison, before any token request
        if "iss" in query:
            iss = request.param("iss")
            if tx.issuer is None and iss is not None:
                raise unconfigured_issuer(connector.name, iss)
            if iss is None or iss != tx.issuer:
                raise CallbackError("invalid_issuer", "the response came from another issuer")
        elif endpoints.iss_parameter_supported:
            raise CallbackError("invalid_issuer", "the response lacks the issuer")
        if "error" in query:
            error = request.param("error") or ""
            reason = error if error in _AUTHZ_ERRORS else "access_denied"
            raise CallbackError(reason, "the identity provider did not authorize the sign-in")
        code = request.param("code")
        if not code or len(code) > 2048 or not VSCHAR.fullmatch(code):  # RFC 6749 §A.11
            raise CallbackError("invalid_request", "the callback has no valid authorization code")
        try:
            # RFC 6749 §4.1.3; AC-07 the same redirect_uri; AC-08 never retried
            tokens = yield from connector.call_token_endpoint(
                endpoints.token,
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": tx.redirect_uri,
                    "code_verifier": tx.code_verifier,
                },
            )
        except TokenEndpointError as exc:
            if exc.code == "invalid_grant":
                raise CallbackError("invalid_grant", "the authorization code was refused") from None
            raise UpstreamError(
                "the token endpoint refused the sign-in",
                connector=connector.name,
                oauth_error=exc.code,
            ) from None
        now = self._clock()
        id_claims: dict[str, Any] = {}
        info: dict[str, Any] = {}
        if connector.kind == "oidc":
            if tokens.id_token is None:
                raise CallbackError("invalid_id_token", "the provider returned no ID token")
            id_claims = yield from validate_id_token(
                connector,
                endpoints,
                tokens.id_token,
                now=now,
                nonce=tx.nonce,
                access_token=tokens.access_token,
                max_age=tx.max_age,
                acr_values=tx.acr_values,
            )
            if endpoints.userinfo:
                info = yield from checked_userinfo(
                    connector, endpoints.userinfo, tokens.access_token, id_claims["sub"]
                )
        else:
            if endpoints.userinfo is None:
                raise UpstreamError(
                    "the connector has no user-info endpoint", connector=connector.name
                )
            info = yield from fetch_userinfo(connector, endpoints.userinfo, tokens.access_token)
        try:
            profile = connector.map_profile({**id_claims, **info})
        except ValueError:
            raise UpstreamError(
                "the provider did not say who signed in", connector=connector.name
            ) from None
        granted = tuple(tokens.scope.split()) if tokens.scope is not None else tx.scopes
        stored = StoredTokens(
            connector=connector.name,
            target=connector.target,
            issuer=connector.issuer,
            external_sub=profile.sub,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=None if tokens.expires_in is None else now + tokens.expires_in,
            scopes=granted,
            id_claims={
                k: id_claims[k] for k in ("iss", "sub", "aud", "azp", "sid") if k in id_claims
            },
            linked_at=now,
            updated_at=now,
        )
        if tx.mode == "connect":
            set_cookie = yield from self._finish_connect(connector, request, tx, profile, stored)
        else:
            hint = tokens.id_token if connector.settings.rp_initiated_logout else None
            set_cookie = yield from self._finish_login(connector, request, profile, stored, hint)
        routes = self.settings.routes
        target = safe_next(tx.next, routes.after_login, routes.allowed_redirect_origins)  # RD-04
        response = redirect(target, 303, [("referrer-policy", "no-referrer")])  # AC-12
        response.set_cookie(set_cookie)
        return response

    def _finish_login(
        self,
        connector: Connector,
        request: AuthRequest,
        profile: Profile,
        stored: StoredTokens,
        id_token: str | None,
    ) -> Flow[str]:
        link = yield from self.store.find_link(connector.target, profile.sub)
        if link is None:
            user = yield from self.registry.sign_in_user(profile, connector)
            link = yield from self.store.create_link(
                connector.target, profile.sub, user, connector.name
            )
        user = link.user
        yield from self.registry.save_tokens(user, stored)
        yield from self.store.save_profile(
            user, profile.to_dict(), sync=connector.settings.sync_profile
        )
        stored_profile = yield from self.store.load_profile(user)
        record = SessionRecord(
            subject=user,
            issuer=connector.issuer or connector.target,
            connector=connector.name,
            claims=stored_profile or profile.to_dict(),
            created_at=self._clock(),
            provider_session=_provider_session(connector, stored.id_claims),
            id_token=id_token if connector.kind == "oidc" else None,  # sealed in the store
        )
        old = request.identity.principal.session_id
        cookie, key = yield from self.sessions.create_keyed(record, replaces=old)  # SE-04
        yield from self._index(connector.name, record, key)
        self.metrics.incr("sign_ins", target=connector.name, flow="connector")
        logger.info("sign_in connector=%s", connector.name)
        return cookie

    def _finish_connect(
        self,
        connector: Connector,
        request: AuthRequest,
        tx: Transaction,
        profile: Profile,
        stored: StoredTokens,
    ) -> Flow[str]:
        principal = request.identity.principal
        if principal.kind != "session" or principal.subject != tx.user or tx.user is None:
            raise CallbackError("invalid_state", "the signed-in user changed during linking")
        link = yield from self.store.find_link(connector.target, profile.sub)
        if link is None:
            link = yield from self.store.create_link(
                connector.target, profile.sub, tx.user, connector.name
            )
        if link.user != tx.user:
            raise CallbackError("access_denied", "this account is already linked to another user")
        yield from self.registry.save_tokens(tx.user, stored)
        session_id = principal.session_id
        current = None
        if session_id is not None:
            current = yield from self.sessions.load(session_id)
        record = current or SessionRecord(
            subject=tx.user,
            issuer=principal.issuer,
            connector=principal.connector,
            claims=dict(principal.claims),
            created_at=self._clock(),
        )
        cookie, key = yield from self.sessions.create_keyed(record, replaces=session_id)  # SE-04
        if record.connector is not None:  # the renewed session keeps its back-channel logout
            yield from self._index(record.connector, record, key)
        logger.info("connector_linked connector=%s", connector.name)
        return cookie

    def _index(self, name: str, record: SessionRecord, key: str) -> Flow[None]:
        """Index session ``key`` by the provider session it came from (back-channel logout)."""
        connector = self.registry.get(name)
        origin = record.provider_session
        if connector is None or origin is None or not connector.settings.backchannel_logout:
            return
        issuer, sub, sid = origin
        yield from self.store.index_session(
            name, issuer, key, sub=sub, sid=sid, ttl=self.settings.session.max_age
        )


def _provider_session(
    connector: Connector, id_claims: Mapping[str, Any]
) -> tuple[str, str, str | None] | None:
    """``(iss, sub, sid)`` from a validated ID token; None for OAuth 2.0 connectors."""
    iss, sub, sid = id_claims.get("iss"), id_claims.get("sub"), id_claims.get("sid")
    if connector.kind != "oidc" or not isinstance(iss, str) or not isinstance(sub, str):
        return None
    return iss, sub, sid if isinstance(sid, str) and sid else None
