"""Client-side helpers for tests that meet a real, certified OpenID Provider.

Interop tests must meet a provider authrelay did not write, so mistakes shared by our
client and a home-made fake cannot cancel out. :class:`OidcProvider` wraps a running
panva/oidc-provider (started by ``oidc_launcher``) and does the chores tests need:
client-credentials tokens, a scripted login through the provider's development login and
consent pages, a full code + PKCE flow, refresh, introspection, revocation, RP-initiated
logout and dynamic client registration.

It checks ``state`` and ``iss`` of every callback it redeems (RFC 6749 §10.12, RFC 9207),
so a harness flow never hides a mix-up that authrelay's own code would have to catch.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge

__all__ = [
    "AuthorizationRequest",
    "OidcClient",
    "OidcProvider",
    "OidcProviderError",
    "OidcProviderSettings",
]

DEFAULT_SCOPE = "openid profile email offline_access orders.read"


class OidcProviderError(RuntimeError):
    """The provider refused a request or answered in a way the harness cannot follow."""


class OidcClient(NamedTuple):
    """A client registered at the provider: its id and secret (kept out of ``repr``)."""

    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"OidcClient(client_id={self.client_id!r}, client_secret='***')"


RP_CLIENT = OidcClient("rp-client", "rp-secret")
API_CLIENT = OidcClient("api-client", "api-secret")


@dataclass(frozen=True)
class OidcProviderSettings:
    """What the provider is started with. Loopback redirect URIs match on any port."""

    redirect_uris: tuple[str, ...] = (
        "http://127.0.0.1/auth/op/callback",
        "http://127.0.0.1/auth/idp/callback",
        "http://127.0.0.1/auth/oidc/callback",
    )
    post_logout_redirect_uris: tuple[str, ...] = ("http://127.0.0.1/",)
    resources: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "api://orders": ("orders.read", "orders.write"),
            "https://notes.local": ("notes.read", "notes.write"),
        }
    )
    """Resources whose access tokens are RS256 JWTs (RFC 9068) with ``aud`` = the key."""
    opaque_resources: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {"api://inventory": ("inventory.read", "inventory.write")}
    )
    """Resources with opaque access tokens: the only kind oidc-provider introspects/revokes."""
    rp_client: OidcClient = RP_CLIENT
    api_client: OidcClient = API_CLIENT
    profile: str = "default"
    """``server.mjs`` profile: ``"default"``, or ``"resource-server"`` (resource indicators
    with a default resource: code-flow access tokens are JWTs for an API, which UserInfo
    refuses), or ``"token-exchange"`` (``"default"`` plus an RFC 8693 grant for the relying
    party's client), or ``"par"`` (pushed authorization requests required, RFC 9126)."""
    default_resource: str | None = None
    """The ``resource-server`` profile's default resource (else the first JWT resource)."""


@dataclass(frozen=True)
class AuthorizationRequest:
    """An authorization URL and the values the relying party keeps to finish the flow."""

    url: str
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str


class _FormParser(HTMLParser):
    """Collects the forms of a page: action, method and named input values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), values.get("method", "get"), {}))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1][2][values["name"]] = values.get("value", "")


def _raise_for_oauth_error(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        detail = f"{body.get('error')}: {body.get('error_description', '')}"
    except ValueError:
        detail = response.text[:300]
    raise OidcProviderError(f"{what} failed with HTTP {response.status_code} ({detail})")


class OidcProvider:
    """A running oidc-provider and client-side helpers for tests.

    ``client`` arguments take an :class:`OidcClient` or a ``(client_id, client_secret)``
    pair, such as :meth:`register_client` returns.
    """

    def __init__(self, issuer: str, settings: OidcProviderSettings, initial_access_token: str):
        self.issuer = issuer
        self.settings = settings
        self.rp_client = settings.rp_client
        self.api_client = settings.api_client
        self.client_id, self.client_secret = settings.rp_client
        self.api_client_id, self.api_client_secret = settings.api_client
        self.redirect_uris = settings.redirect_uris
        self.post_logout_redirect_uris = settings.post_logout_redirect_uris
        self.resources = settings.resources
        self.opaque_resources = settings.opaque_resources
        self._initial_access_token = initial_access_token
        self.http = httpx.Client(timeout=10.0)
        self.discovery: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"OidcProvider(issuer={self.issuer!r})"

    def close(self) -> None:
        """Close the harness's own HTTP connections."""
        self.http.close()

    def jwks(self) -> dict[str, Any]:
        """The provider's current public JWK Set."""
        response = self.http.get(self.discovery["jwks_uri"])
        _raise_for_oauth_error(response, "JWKS")
        result: dict[str, Any] = response.json()
        return result

    def register_client(
        self,
        redirect_uris: Sequence[str],
        post_logout_redirect_uris: Sequence[str] = (),
        *,
        application_type: str = "native",
        grant_types: Sequence[str] = ("authorization_code", "refresh_token"),
        **metadata: Any,
    ) -> tuple[str, str]:
        """Register a confidential client (RFC 7591); return ``(client_id, client_secret)``.

        A client registered with ``token_endpoint_auth_method="private_key_jwt"`` and its
        ``jwks`` has no secret: the second value is then empty.

        ``application_type="native"`` (the default) lets loopback redirect URIs match on
        any port; ``"web"`` makes them match exactly.
        """
        body = {
            "application_type": application_type,
            "redirect_uris": list(redirect_uris),
            "post_logout_redirect_uris": list(post_logout_redirect_uris),
            "grant_types": list(grant_types),
            "response_types": ["code"] if "authorization_code" in grant_types else [],
            "token_endpoint_auth_method": "client_secret_basic",
            **metadata,
        }
        response = self.http.post(
            self.discovery["registration_endpoint"],
            json=body,
            headers={"Authorization": f"Bearer {self._initial_access_token}"},
        )
        _raise_for_oauth_error(response, "client registration")
        registered = response.json()
        return registered["client_id"], registered.get("client_secret", "")

    def token_request(
        self, data: Mapping[str, str], client: tuple[str, str] | None = None
    ) -> httpx.Response:
        """POST ``data`` to the token endpoint with HTTP Basic client authentication."""
        return self.http.post(
            self.discovery["token_endpoint"],
            data=dict(data),
            auth=httpx.BasicAuth(*(client or self.rp_client)),
        )

    def client_credentials_token(
        self,
        resource: str = "api://orders",
        scope: str = "orders.read",
        client: tuple[str, str] | None = None,
    ) -> str:
        """A JWT access token for ``resource`` from the client credentials grant.

        The default client is ``api-client``, standing for another service calling an API.
        """
        response = self.token_request(
            {"grant_type": "client_credentials", "resource": resource, "scope": scope},
            client or self.api_client,
        )
        _raise_for_oauth_error(response, "client credentials grant")
        token: str = response.json()["access_token"]
        return token

    def authorization_request(
        self,
        *,
        scope: str = DEFAULT_SCOPE,
        resource: str | None = "api://orders",
        client_id: str | None = None,
        redirect_uri: str | None = None,
        **extra: str,
    ) -> AuthorizationRequest:
        """Build a code + PKCE (S256) authorization URL with fresh state and nonce."""
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        redirect_uri = redirect_uri or self.redirect_uris[0]
        params = {
            "response_type": "code",
            "client_id": client_id or self.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
            **({"resource": resource} if resource else {}),
            **extra,
        }
        url = f"{self.discovery['authorization_endpoint']}?{urlencode(params)}"
        return AuthorizationRequest(url, state, nonce, verifier, redirect_uri)

    def login(
        self, authorization_url: str, username: str = "alice", http: httpx.Client | None = None
    ) -> str:
        """Sign ``username`` in through the provider's login and consent pages.

        Follows redirects from ``authorization_url`` (an authorization endpoint URL, or an
        app's login route that redirects to it), fills and posts each form, and returns the
        first redirect that leaves the provider, normally the relying party's callback
        with ``code``, ``state`` and ``iss``, without requesting it. Pass ``http`` to keep
        the app's cookies (its login transaction) or the provider's session between calls.
        """
        own = http is None
        client = http or httpx.Client(timeout=10.0)
        try:
            return self._walk(client, authorization_url, username)
        finally:
            if own:
                client.close()

    def _walk(self, http: httpx.Client, url: str, username: str) -> str:
        origin = urlsplit(self.issuer)[:2]
        reached_provider = False
        response = http.get(url)
        for _ in range(20):
            reached_provider = reached_provider or urlsplit(str(response.url))[:2] == origin
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if reached_provider and urlsplit(target)[:2] != origin:
                    return target
                response = http.get(target)
                continue
            parser = _FormParser()
            parser.feed(response.text)
            if response.status_code == 200 and response.url.path.endswith("/session/end/success"):
                return str(response.url)
            if response.status_code != 200 or not parser.forms:
                _raise_for_oauth_error(response, f"login at {response.url.path}")
                raise OidcProviderError(f"no form to submit at {response.url.path}")
            action, method, fields = parser.forms[0]
            if "login" in fields:
                fields.update(login=username, password="any-password")
            if "xsrf" in fields:  # the RP-initiated logout confirmation; its button says yes
                fields["logout"] = "yes"
            target = urljoin(str(response.url), action)
            if method.lower() == "get":  # a GET form sends its fields as the query
                response = http.get(target.partition("?")[0], params=fields)
                continue
            response = http.request(method.upper(), target, data=fields)
        raise OidcProviderError("login did not return to the relying party within 20 steps")

    def end_session_url(
        self,
        *,
        id_token_hint: str | None = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
        client_id: str | None = None,
    ) -> str:
        """An RP-initiated logout URL (OpenID Connect RP-Initiated Logout 1.0 §2)."""
        params = {
            "id_token_hint": id_token_hint,
            "post_logout_redirect_uri": post_logout_redirect_uri,
            "state": state,
            "client_id": client_id,
        }
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"{self.discovery['end_session_endpoint']}?{query}"

    def logout(self, end_session_url: str, http: httpx.Client) -> str:
        """Confirm an RP-initiated logout in the provider session held by ``http``.

        Returns the post-logout redirect (not requested), or the provider's own success
        page URL when no ``post_logout_redirect_uri`` was given.
        """
        return self._walk(http, end_session_url, "")

    def redeem_code(
        self,
        callback_url: str,
        request: AuthorizationRequest,
        *,
        resource: str | None = None,
        client: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Check ``state`` and ``iss`` of a callback URL and redeem its code (RFC 6749 §4.1.3)."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(callback_url).query).items()}
        if "error" in query:
            raise OidcProviderError(f"authorization failed: {query['error']}")
        if query.get("state") != request.state:
            raise OidcProviderError("callback state does not match the request")
        if query.get("iss") != self.issuer:  # RFC 9207 §2.4
            raise OidcProviderError("callback iss does not name this provider")
        data = {
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": request.redirect_uri,
            "code_verifier": request.code_verifier,
            **({"resource": resource} if resource else {}),
        }
        response = self.token_request(data, client)
        _raise_for_oauth_error(response, "authorization code grant")
        tokens: dict[str, Any] = response.json()
        return tokens

    def authorization_code_tokens(
        self, username: str = "alice", scope: str = DEFAULT_SCOPE, resource: str = "api://orders"
    ) -> dict[str, Any]:
        """A whole code + PKCE flow as ``rp-client``; the token endpoint's JSON answer.

        ``access_token`` is a JWT for ``resource``; ``refresh_token`` and ``id_token`` are
        included (refresh tokens are issued whether or not ``offline_access`` is asked).
        """
        request = self.authorization_request(scope=scope, resource=resource)
        return self.redeem_code(self.login(request.url, username), request)

    def refresh(
        self,
        refresh_token: str,
        *,
        resource: str | None = None,
        client: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Redeem a refresh token (RFC 6749 §6); the provider rotates it on every use."""
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if resource:
            data["resource"] = resource
        response = self.token_request(data, client)
        _raise_for_oauth_error(response, "refresh token grant")
        tokens: dict[str, Any] = response.json()
        return tokens

    def introspect(
        self,
        token: str,
        *,
        token_type_hint: str | None = None,
        client: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """RFC 7662 introspection, by default as ``api-client`` (a resource server)."""
        data = {"token": token, **({"token_type_hint": token_type_hint} if token_type_hint else {})}
        response = self.http.post(
            self.discovery["introspection_endpoint"],
            data=data,
            auth=httpx.BasicAuth(*(client or self.api_client)),
        )
        _raise_for_oauth_error(response, "introspection")
        answer: dict[str, Any] = response.json()
        return answer

    def revoke(
        self,
        token: str,
        *,
        token_type_hint: str | None = None,
        client: tuple[str, str] | None = None,
    ) -> None:
        """RFC 7009 revocation, as ``rp-client`` unless another (owning) client is given."""
        data = {"token": token, **({"token_type_hint": token_type_hint} if token_type_hint else {})}
        response = self.http.post(
            self.discovery["revocation_endpoint"],
            data=data,
            auth=httpx.BasicAuth(*(client or self.rp_client)),
        )
        _raise_for_oauth_error(response, "revocation")
