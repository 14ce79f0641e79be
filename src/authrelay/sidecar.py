"""The sidecar: authrelay over HTTP for apps in other languages, Entra SDK compatible.

``authrelay sidecar --settings authrelay.toml --host 127.0.0.1 --port 5000`` serves the
endpoints of the Microsoft Entra SDK for AgentID, so clients written for it work
unchanged::

    GET  /Validate                                   the caller's token claims
    GET  /AuthorizationHeader/{service}              header for the caller
    GET  /AuthorizationHeaderUnauthenticated/{service}  app (or agent) header
    ANY  /DownstreamApi/{service}                    call the service for the caller
    ANY  /DownstreamApiUnauthenticated/{service}     call it as the app (or agent)
    GET  /healthz                                    alive
    GET  /readyz                                     store and providers reachable (503 if not)
    GET  /metrics                                    Prometheus exposition

Query parameters (names case-insensitive, as in ASP.NET): ``optionsOverride.Scopes``
(repeatable), ``optionsOverride.RequestAppToken``,
``optionsOverride.AcquireTokenOptions.Tenant``, ``optionsOverride.RelativePath``,
``optionsOverride.HttpMethod``, ``AgentIdentity`` (an agent under ``[agents]``, by name or
client id; a 400 on a flow that cannot carry an actor), ``AgentUsername`` /
``AgentUserId`` (mutually exclusive, need an Entra ``AgentIdentity``: its agent user's
token by the ``user_fic`` grant). ``{service}`` matches a configured name whatever its
case (``Graph``).
Errors are RFC 7807 problem JSON.

Defends against: exposure beyond the host (binds to loopback by default and warns
otherwise), server-side request forgery through ``RelativePath`` (absolute URLs and
``//host`` paths are refused, and credentials only ever go to the service's origin),
the caller's own ``Authorization``/``Cookie`` reaching a downstream (never copied,
DS-02), downstream ``Set-Cookie`` headers leaking back, and exception text in answers.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import AuthRelayError, ConfigurationError, UnknownService
from .pipeline import Pass, Pipeline, Reject, RequestView, Resolve
from .principal import ANONYMOUS, NO_CREDENTIALS, Credentials, Principal
from .prometheus import PrometheusMetrics, prometheus_metrics
from .relay import Relay
from .settings import Settings

__all__ = ["create_sidecar_app", "sidecar_main"]

logger = logging.getLogger("authrelay.sidecar")

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_GUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
_DROPPED = frozenset(
    {"set-cookie", "connection", "keep-alive", "transfer-encoding", "content-encoding",
     "content-length", "upgrade", "proxy-authenticate", "www-authenticate"}
)  # fmt: skip
_MAX_BODY = 4 * 1024 * 1024
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    413: "Content Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Problem(Exception):
    def __init__(self, status: int, detail: str, error: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error = error


def _problem(status: int, detail: str, *, error: str | None = None, **headers: str) -> Response:
    """An RFC 7807 problem answer."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if error:
        body["error"] = error
    response = JSONResponse(body, status, media_type="application/problem+json")
    response.headers["cache-control"] = "no-store"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _from_error(error: AuthRelayError) -> Response:
    headers: dict[str, str] = {}
    retry_after = getattr(error, "retry_after", None)
    if error.status == 503:
        headers["retry_after"] = str(retry_after or 5)
    if error.status == 401:
        headers["www_authenticate"] = 'Bearer realm="authrelay"'
    status = error.status
    detail = error.description if status < 500 or status in (502, 503, 504) else "server error"
    return _problem(status, detail, error=error.error, **headers)


class _Query:
    """Case-insensitive access to the query string (ASP.NET binds names that way)."""

    def __init__(self, request: Request) -> None:
        self._items = [(k.lower(), v) for k, v in request.query_params.multi_items()]

    def all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self._items if k == key]

    def one(self, name: str) -> str | None:
        values = self.all(name)
        return values[-1] if values and values[-1] != "" else None


class Sidecar:
    """The sidecar's endpoints over one :class:`~authrelay.relay.Relay`."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._agents_by_client = {
            agent.client_id: name for name, agent in relay.settings.agents.items()
        }
        self._prometheus: PrometheusMetrics | None = None
        self.pipeline = Pipeline(relay, asynchronous=True)

    async def _caller(self, request: Request) -> tuple[Principal, Credentials]:
        authorization = request.headers.getlist("authorization")
        if not authorization:
            raise _Problem(401, "this endpoint needs a bearer token", "unauthorized")
        # The sidecar's own paths are never the router's: no path, no cookie, no query.
        decision = self.pipeline.begin(RequestView(request.method, "", b"", authorization, None))
        if type(decision) is Resolve:
            decision = await self.relay.async_driver.run(decision.flow)
        if type(decision) is Reject:
            raise decision.error
        if type(decision) is not Pass or decision.principal.kind != "bearer":
            raise _Problem(401, "this endpoint needs a bearer token", "unauthorized")
        return decision.principal, decision.credentials

    def _client(
        self, name: str, principal: Principal, credentials: Credentials, query: _Query, *,
        unauthenticated: bool,
    ) -> Any:  # fmt: skip
        try:
            client = self.relay.services.client(name, principal, credentials, asynchronous=True)
        except UnknownService:
            raise _Problem(400, f"Not able to resolve '{name}'.", "unknown_service") from None
        scopes = query.all("optionsOverride.Scopes")
        app_token = (query.one("optionsOverride.RequestAppToken") or "").lower() == "true"
        agent = query.one("AgentIdentity")
        actor: str | None = None
        if agent is not None:
            actor = agent if agent in self.relay.settings.agents else None
            actor = actor or self._agents_by_client.get(agent)
            if actor is None:
                raise _Problem(400, f"AgentIdentity {agent!r} is not a configured agent")
        # The Entra SDK's rules: AgentUsername and AgentUserId are mutually exclusive and
        # either needs AgentIdentity; the agent user's token ignores the caller.
        username, user_id = query.one("AgentUsername"), query.one("AgentUserId")
        if username is not None and user_id is not None:
            raise _Problem(400, "AgentUsername and AgentUserId are mutually exclusive.")
        if (username is not None or user_id is not None) and actor is None:
            raise _Problem(400, "AgentUsername and AgentUserId need AgentIdentity.")
        if user_id is not None and (not _GUID.match(user_id) or not user_id.strip("0-")):
            raise _Problem(400, "AgentUserId must be a non-empty GUID.")
        try:
            return client.with_options(
                scopes=scopes or None,
                tenant=query.one("optionsOverride.AcquireTokenOptions.Tenant"),
                actor=actor,
                app_token=app_token or unauthenticated or None,
                agent_user=username,
                agent_user_id=user_id,
            )
        except ValueError as exc:
            raise _Problem(400, str(exc)) from None

    async def _principal(
        self, request: Request, unauthenticated: bool
    ) -> tuple[Principal, Credentials]:
        if unauthenticated:
            return ANONYMOUS, NO_CREDENTIALS
        return await self._caller(request)

    async def validate(self, request: Request) -> Response:
        """``GET /Validate``: the caller's verified claims."""
        principal, credentials = await self._caller(request)
        return JSONResponse(
            {"protocol": "Bearer", "token": credentials.token, "claims": dict(principal.claims)},
            headers={"cache-control": "no-store"},
        )

    async def authorization_header(self, request: Request) -> Response:
        """``GET /AuthorizationHeader[Unauthenticated]/{service}``."""
        unauthenticated = request.url.path.lower().startswith("/authorizationheaderunauth")
        principal, credentials = await self._principal(request, unauthenticated)
        client = self._client(
            request.path_params["service"], principal, credentials, _Query(request),
            unauthenticated=unauthenticated,
        )  # fmt: skip
        header = await client.authorization_header()
        return JSONResponse({"authorizationHeader": header}, headers={"cache-control": "no-store"})

    async def downstream(self, request: Request) -> Response:
        """``/DownstreamApi[Unauthenticated]/{service}``: call the service, wrap the answer."""
        unauthenticated = request.url.path.lower().startswith("/downstreamapiunauth")
        principal, credentials = await self._principal(request, unauthenticated)
        query = _Query(request)
        client = self._client(
            request.path_params["service"], principal, credentials, query,
            unauthenticated=unauthenticated,
        )  # fmt: skip
        path = query.one("optionsOverride.RelativePath") or ""
        if "://" in path or path.startswith(("//", "\\")) or "\\" in path:
            raise _Problem(400, "RelativePath must be a path relative to the service")
        if path and not path.startswith("/"):
            path = "/" + path
        method = (query.one("optionsOverride.HttpMethod") or request.method).upper()
        if method not in _METHODS:
            raise _Problem(400, f"HttpMethod {method!r} is not supported")
        kwargs: dict[str, Any] = {}
        content_type = request.headers.get("content-type")
        if content_type:
            body = await request.body()
            if len(body) > _MAX_BODY:
                raise _Problem(413, "the request body is too large")
            kwargs["content"] = body
            kwargs["headers"] = {"content-type": content_type}
        try:
            answer = await client.request(method, client.base_url + path, **kwargs)
        except httpx.HTTPError as exc:
            logger.warning("downstream_failed service=%s error=%s", client.name, type(exc).__name__)
            raise _Problem(502, "the downstream service cannot be reached") from None
        headers: dict[str, list[str]] = {}
        for name, value in answer.headers.multi_items():
            if name.lower() not in _DROPPED:
                headers.setdefault(name, []).append(value)
        return JSONResponse(
            {
                "statusCode": answer.status_code,
                "headers": headers,
                "content": answer.text if answer.content else None,
            },
            headers={"cache-control": "no-store"},
        )

    async def healthz(self, request: Request) -> Response:
        """Liveness probe: the process answers."""
        return JSONResponse({"status": "Healthy"}, headers={"cache-control": "no-store"})

    async def readyz(self, request: Request) -> Response:
        """Readiness probe: the store answers, provider metadata and keys load (503 if not)."""
        readiness = await self.relay.aready()
        return JSONResponse(
            readiness.to_json(),
            200 if readiness.ok else 503,
            headers={"cache-control": "no-store"},
        )

    async def metrics(self, request: Request) -> Response:
        """Prometheus text exposition of the relay's counters (needs prometheus-client)."""
        if self._prometheus is None:
            try:
                self._prometheus = prometheus_metrics(self.relay)
            except ImportError:
                return _problem(501, "metrics need prometheus-client: authrelay[prometheus]")
        body, content_type = self._prometheus.exposition()
        return Response(body, media_type=content_type, headers={"cache-control": "no-store"})


def create_sidecar_app(settings: Settings | None = None, *, relay: Relay | None = None) -> Any:
    """The sidecar as an ASGI app (``relay=`` lets tests inject transports and a clock)."""
    if relay is None:
        if settings is None:
            raise TypeError("create_sidecar_app needs settings= or relay=")
        relay = Relay(settings)
    sidecar = Sidecar(relay)

    def guarded(endpoint: Any) -> Any:
        async def run(request: Request) -> Response:
            try:
                response: Response = await endpoint(request)
            except _Problem as problem:
                headers = {}
                if problem.status == 401:
                    headers["www_authenticate"] = 'Bearer realm="authrelay"'
                return _problem(problem.status, problem.detail, error=problem.error, **headers)
            except AuthRelayError as error:
                return _from_error(error)
            return response

        return run

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await relay.aclose()

    routes = [
        Route("/Validate", guarded(sidecar.validate), methods=["GET"]),
        Route("/AuthorizationHeader/{service}", guarded(sidecar.authorization_header),
              methods=["GET"]),
        Route("/AuthorizationHeaderUnauthenticated/{service}",
              guarded(sidecar.authorization_header), methods=["GET"]),
        Route("/DownstreamApi/{service}", guarded(sidecar.downstream), methods=_METHODS),
        Route("/DownstreamApiUnauthenticated/{service}", guarded(sidecar.downstream),
              methods=_METHODS),
        Route("/healthz", sidecar.healthz, methods=["GET"]),
        Route("/readyz", sidecar.readyz, methods=["GET"]),
        Route("/metrics", sidecar.metrics, methods=["GET"]),
    ]  # fmt: skip
    app = Starlette(routes=routes, lifespan=lifespan)
    return _CaseInsensitivePaths(app, [r.path.split("/")[1] for r in routes])


class _CaseInsensitivePaths:
    """Routes match whatever the case of their first segment, as ASP.NET routes do."""

    def __init__(self, app: Any, names: list[str]) -> None:
        self.app = app
        self._names = {name.lower(): name for name in names}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            first, sep, tail = scope["path"][1:].partition("/")
            canonical = self._names.get(first.lower())
            if canonical is not None and canonical != first:
                scope = {**scope, "path": f"/{canonical}{sep}{tail}"}
        await self.app(scope, receive, send)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def sidecar_main(argv: Sequence[str] | None = None) -> int:
    """``authrelay sidecar (--settings authrelay.toml | --from-env) [--host] [--port]``."""
    parser = argparse.ArgumentParser(
        prog="authrelay sidecar", description="Run the Entra SDK compatible sidecar."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--settings", help="the authrelay TOML settings file")
    source.add_argument(
        "--from-env", action="store_true", help="settings from AUTHRELAY_* environment variables"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(list(argv) if argv is not None else None)
    origin = "environment" if args.from_env else args.settings
    try:
        settings = Settings.from_env() if args.from_env else Settings.from_toml(args.settings)
    except ConfigurationError as exc:
        sys.stderr.write(f"{origin}: invalid\n")
        for problem in exc.problems:
            sys.stderr.write(f"  {problem}\n")
        return 1
    try:
        import uvicorn
    except ImportError:
        sys.stderr.write("the sidecar needs uvicorn: pip install uvicorn\n")
        return 1
    if _is_loopback(args.host):
        sys.stderr.write(
            f"authrelay sidecar: listening on {args.host}:{args.port} (loopback only)\n"
        )
    else:
        sys.stderr.write(
            f"authrelay sidecar: listening on {args.host}:{args.port}, NOT loopback: anyone "
            "who reaches this address gets tokens; keep it on a private network\n"
        )
        logger.warning("sidecar_not_loopback host=%s: anyone who reaches it gets tokens", args.host)
    app = create_sidecar_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
