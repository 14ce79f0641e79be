"""Authorization endpoint, login form and RP-initiated logout of the test provider.

Defends against the classic front-channel mistakes of clients: redirect URIs are compared
exactly and a bad one gets an error page, never a redirect (RFC 6749 §3.1.2.4, §4.1.2.1,
RFC 9700 §4.1); PKCE is S256 only and mandatory for public clients (RFC 7636 §4.2,
RFC 9700 §2.1.1); every authorization response carries ``iss`` (RFC 9207 §2); only
``response_type=code`` exists (RFC 9700 §2.1.2). The login form is bound to a cookie so a
cross-site POST cannot sign a victim in. A pushed request (RFC 9126 §4) is used once, with
``client_id`` and ``request_uri`` only; with ``require_par`` a plain request is refused.
"""

from __future__ import annotations

import hashlib
import html
import re
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..state import CodeRecord
from ._common import OAuthError, parse_params
from .targets import resolve_target

if TYPE_CHECKING:
    from ..models import OAuthClient
    from ..provider import IdentityProvider

__all__ = ["authorize_routes", "check_request", "resources_of"]

SESSION_COOKIE = "authrelay_idp_session"
CSRF_COOKIE = "authrelay_idp_csrf"
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=_PAGE_HEADERS)


def _error_page(description: str) -> HTMLResponse:
    return _page("Authorization error", f"<p>{html.escape(description)}</p>", 400)


def session_sid(session_cookie: str) -> str:
    """The public ``sid`` of a browser session at the provider (never the cookie itself)."""
    return hashlib.sha256(session_cookie.encode()).hexdigest()[:24]


def with_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` added to its query, existing parameters kept."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _login_form(tx: str, csrf: str, error: str | None) -> HTMLResponse:
    message = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    body = (
        f'{message}<form method="post" action="authorize/login">'
        f'<input type="hidden" name="tx" value="{html.escape(tx)}">'
        f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
        '<label>Username <input name="username" autocomplete="username"></label>'
        '<label>Password <input name="password" type="password"></label>'
        '<button type="submit">Sign in</button></form>'
    )
    response = _page("Sign in", body)
    response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/")
    return response


def authorize_routes(idp: IdentityProvider) -> list[Route]:
    """Routes for ``/authorize``, ``/authorize/login`` and ``/end-session``."""

    def redirect(
        uri: str, params: dict[str, str], state: str | None, status: int = 302
    ) -> Response:
        if state is not None:
            params["state"] = state
        params["iss"] = idp.issuer  # RFC 9207 §2: on success and error alike
        return RedirectResponse(with_query(uri, params), status_code=status, headers=_PAGE_HEADERS)

    def issue_code(
        client: OAuthClient,
        request_params: dict[str, str],
        sub: str,
        auth_time: int,
        sid: str | None = None,
    ) -> Response:
        code = secrets.token_urlsafe(32)
        scopes = request_params.get("scope", "").split()
        target = resolve_target(
            idp, client, scopes, resources=resources_of(request_params), default_all_scopes=False
        )
        idp.state.put_code(
            code,
            CodeRecord(
                client_id=client.client_id,
                redirect_uri=request_params["redirect_uri"],
                sub=sub,
                scope=target.scopes,
                resources=target.audience,
                nonce=request_params.get("nonce"),
                code_challenge=request_params.get("code_challenge"),
                auth_time=auth_time,
                expires_at=idp.clock() + idp.code_ttl,
                sid=sid or secrets.token_urlsafe(12),  # no browser session: one of its own
            ),
        )
        status = 303 if request_params.get("_method") == "POST" else 302
        return redirect(
            request_params["redirect_uri"], {"code": code}, request_params.get("state"), status
        )

    async def authorize(request: Request) -> Response:
        try:
            params = parse_params(request.url.query)
        except OAuthError as error:
            return _error_page(error.description)
        pushed = "request_uri" in params
        if pushed:  # RFC 9126 §4: client_id and request_uri, nothing else
            if set(params) != {"client_id", "request_uri"}:
                return _error_page("with request_uri only client_id may be sent")
            found = idp.state.take_pushed(params["request_uri"], idp.clock())
            if found is None or found.get("client_id") != params["client_id"]:
                return _error_page("request_uri is unknown, expired, used or not this client's")
            params = found
        client = idp.clients.get(params.get("client_id", ""))
        if client is None:
            return _error_page("unknown or missing client_id")
        redirect_uri = params.get("redirect_uri", "")
        if not idp.redirect_uri_allowed(client, redirect_uri):
            return _error_page("redirect_uri is missing or not registered for this client")
        state = params.get("state")
        try:
            if idp.require_par and not pushed:
                raise OAuthError("invalid_request", "pushed authorization requests are required")
            check_request(client, params)
            resolve_target(
                idp, client, params.get("scope", "").split(), resources=resources_of(params)
            )
        except OAuthError as error:
            return redirect(
                redirect_uri, {"error": error.error, "error_description": error.description}, state
            )
        denial = idp._take_denial()
        if denial is not None:
            return redirect(redirect_uri, {"error": denial, "error_description": "denied"}, state)
        prompt = set(params.get("prompt", "").split())
        sub, auth_time, sid = idp._take_next_login(), int(idp.clock()), None
        if sub is None and "login" not in prompt:
            cookie = request.cookies.get(SESSION_COOKIE, "")
            session = idp.state.sessions.get(cookie)
            if session is not None:
                (sub, auth_time), sid = session, session_sid(cookie)
        if sub is None and idp.auto_approve is not None:
            sub = idp.auto_approve
        if sub is not None:
            return issue_code(client, params, sub, auth_time, sid)
        if "none" in prompt or not idp.login_form:
            description = "no signed-in user" if "none" in prompt else "login is disabled"
            return redirect(
                redirect_uri, {"error": "login_required", "error_description": description}, state
            )
        tx, csrf = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        with idp.state.lock:
            idp.state.login_transactions[tx] = {"params": params, "csrf": csrf}
        return _login_form(tx, csrf, None)

    async def login(request: Request) -> Response:
        if request.method != "POST":
            return _error_page("sign in through the authorization endpoint")
        try:
            form = parse_params((await request.body()).decode("utf-8"))
        except (OAuthError, UnicodeDecodeError):
            return _error_page("malformed login form")
        tx = form.get("tx", "")
        with idp.state.lock:
            pending = idp.state.login_transactions.get(tx)
        if pending is None:
            return _error_page("unknown or finished login transaction")
        csrf = pending["csrf"]
        if form.get("csrf", "") != csrf or request.cookies.get(CSRF_COOKIE) != csrf:
            return _error_page("login form was not posted from this browser")
        user = idp.users_by_name.get(form.get("username", ""))
        password = form.get("password", "")
        if user is None or not secrets.compare_digest(user.password.encode(), password.encode()):
            return _login_form(tx, csrf, "Wrong username or password.")
        with idp.state.lock:
            idp.state.login_transactions.pop(tx, None)
        session_id, auth_time = secrets.token_urlsafe(24), int(idp.clock())
        with idp.state.lock:
            idp.state.sessions[session_id] = (user.sub, auth_time)
        params = dict(pending["params"], _method="POST")
        client = idp.clients[params["client_id"]]
        response = issue_code(client, params, user.sub, auth_time, session_sid(session_id))
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="lax", path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    async def end_session(request: Request) -> Response:
        try:
            params = parse_params(request.url.query)
            if request.method == "POST":
                params.update(parse_params((await request.body()).decode("utf-8")))
        except (OAuthError, UnicodeDecodeError):
            return _error_page("malformed logout request")
        client_id = params.get("client_id")
        hint = params.get("id_token_hint")
        if hint is not None:
            verified = idp.keys.verify(hint)
            if verified is None or verified[1].get("iss") != idp.issuer:
                return _error_page("id_token_hint was not issued by this provider")
            hinted = verified[1].get("aud")
            if client_id is not None and hinted != client_id:
                return _error_page("id_token_hint audience differs from client_id")
            client_id = hinted if isinstance(hinted, str) else client_id
        target = params.get("post_logout_redirect_uri")
        cookie = request.cookies.get(SESSION_COOKIE)
        with idp.state.lock:
            session = idp.state.sessions.pop(cookie or "", None)
        # Back-Channel Logout 1.0: tell every client of this provider session.
        hinted_claims = verified[1] if hint is not None and verified is not None else {}
        sid = hinted_claims.get("sid") or (session_sid(cookie) if cookie and session else None)
        sub = hinted_claims.get("sub") or (session[0] if session else None)
        if isinstance(sub, str):
            await idp.deliver_backchannel_logout(sub=sub, sid=sid if isinstance(sid, str) else None)
        if target is None:
            response: Response = _page("Signed out", "<p>You are signed out.</p>")
        else:
            client = idp.clients.get(client_id or "")
            if client is None or target not in client.post_logout_redirect_uris:
                return _error_page("post_logout_redirect_uri is not registered for this client")
            extra = {"state": params["state"]} if "state" in params else {}
            response = RedirectResponse(with_query(target, extra), 302, headers=_PAGE_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return [
        Route("/authorize", authorize, methods=["GET"]),
        Route("/authorize/login", login, methods=["GET", "POST"]),
        Route("/end-session", end_session, methods=["GET", "POST"]),
    ]


def resources_of(params: dict[str, str]) -> list[str]:
    """The RFC 8707 ``resource`` values of a request."""
    return params["resource"].split(" ") if "resource" in params else []


def check_request(client: OAuthClient, params: dict[str, str]) -> None:
    """Refuse an authorization request this provider does not serve (RFC 6749 §4.1.2.1)."""
    response_type = params.get("response_type")
    if response_type is None:
        raise OAuthError("invalid_request", "response_type is required")
    if response_type != "code":
        raise OAuthError("unsupported_response_type", "only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        raise OAuthError("unauthorized_client", "client may not use the authorization code grant")
    if params.get("response_mode", "query") != "query":
        raise OAuthError("invalid_request", "only response_mode=query is supported")
    if "request" in params:
        raise OAuthError("request_not_supported", "request objects are not supported")
    if "request_uri" in params:
        raise OAuthError("request_uri_not_supported", "request_uri is not supported")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is not None:
        # RFC 7636 §4.3: a missing method means "plain", which is refused.
        if method != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        if not _CHALLENGE.match(challenge):
            raise OAuthError("invalid_request", "code_challenge is not a base64url SHA-256")
    elif method is not None:
        raise OAuthError("invalid_request", "code_challenge_method without code_challenge")
    if client.is_public and challenge is None:
        raise OAuthError("invalid_request", "PKCE (S256) is required for public clients")
    prompt = set(params.get("prompt", "").split())
    if "none" in prompt and len(prompt) > 1:
        raise OAuthError("invalid_request", "prompt=none cannot be combined")
