"""The sidecar peer (target T12): one loopback HTTP hop per header against the in-process call.

authrelay's own sidecar mode (``authrelay.sidecar``, the Entra SDK's API) runs under
uvicorn in its own process on 127.0.0.1 with the same service ``x``. The app side is
what an app in another language does per request: ``GET /AuthorizationHeader/x`` with
the caller's token in ``Authorization``, on one keep-alive ``httpx.AsyncClient``.
Measured, interleaved in the same rounds:

- ``sidecar_header``: that hop alone, against ``authorization_header``: the in-process
  warm call on this process's relay (T12 is their ratio, "times faster");
- ``sidecar_route``: the bare Starlette app with a route fetching its header from the
  sidecar, against ``bare`` (the cost a route pays, comparable with scenario 5).

Defends against a flattering peer or a flattering authrelay: both sides hold a warm
token acquired through the real token exchange before timing; the sidecar must answer
200 with a ``Bearer`` header, twice (the second from its cache, one token call in all),
before it is timed; the hop reuses one connection, as a real app would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authrelay.relay import Relay

from .apps import asgi_call, asgi_get, bare_app, make_scope, relay_settings
from .idp import BenchIdP
from .serve import spawn
from .services import service_settings
from .timing import Series, interleave_async, ratio, summary

__all__ = ["run_phase"]


async def _fetch(client: httpx.AsyncClient, url: str, authorization: str) -> str:
    response = await client.get(url, headers={"Authorization": authorization})
    if response.status_code != 200:
        raise RuntimeError(f"sidecar answered {response.status_code}")
    return str(response.json()["authorizationHeader"])


async def _measure(
    idp: BenchIdP, relay: Relay, sidecar: str, config: Any
) -> tuple[dict[str, Series], dict[str, Any]]:
    token = idp.mint("RS256")
    authorization = f"Bearer {token}"
    url = f"{sidecar}/AuthorizationHeader/x"
    async with httpx.AsyncClient() as hop:
        before = idp.token_calls
        first = await _fetch(hop, url, authorization)
        second = await _fetch(hop, url, authorization)
        sidecar_token_calls = idp.token_calls - before
        if not first.startswith("Bearer ") or first != second:
            raise RuntimeError("the sidecar did not answer one cached bearer header")

        async def route(request: Request) -> Response:
            header = await _fetch(hop, url, authorization)
            return JSONResponse({"ok": bool(header)})

        routed = bare_app([Route("/sidecar", route)])
        status, body = await asgi_get(routed, make_scope("/sidecar"))
        if status != 200 or body != {"ok": True}:
            raise RuntimeError(f"the sidecar route answered {status} {body!r}")

        resolution = relay.identity.fast([authorization], None)
        if resolution is None:
            resolution = await relay.async_driver.run(
                relay.identity.resolve([authorization], None, b"")
            )
        if resolution.principal.subject != "alice":
            raise RuntimeError("the bearer token did not resolve to alice")
        client = relay.services.for_request(
            resolution.principal, resolution.credentials, asynchronous=True
        )["x"]
        if not (await client.authorization_header()).startswith("Bearer "):
            raise RuntimeError("authorization_header() did not answer a bearer header")

        async def hop_once() -> None:
            await hop.get(url, headers={"Authorization": authorization})

        series = await interleave_async(
            {
                "bare": asgi_call(bare_app(), make_scope("/open")),
                "sidecar_route": asgi_call(routed, make_scope("/sidecar")),
                "sidecar_header": hop_once,
                "authorization_header": client.authorization_header,
            },
            rounds=config.rounds,
            inner=config.inner,
        )
    facts = {"sidecar_token_calls_for_two_headers": sidecar_token_calls}
    return series, facts


def run_phase(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    """Time the sidecar hop against ``authorization_header()``; store T12's ratio."""
    downstream = "http://127.0.0.1:9"  # only headers are fetched: never called
    with spawn("sidecar", issuer=idp.issuer, downstream=downstream) as (sidecar, _):
        relay = Relay(relay_settings(idp, service_settings(downstream)))

        async def measure() -> tuple[dict[str, Series], dict[str, Any]]:
            try:
                return await _measure(idp, relay, sidecar, config)
            finally:
                await relay.aclose()

        try:
            series, facts = asyncio.run(measure())
        finally:
            relay.close()
    s = series
    figures["sidecar"] = {"calls": {name: summary(v.values) for name, v in s.items()}}
    figures["direct"]["sidecar_route"] = summary(s["sidecar_route"].values)
    figures["direct"]["sidecar_header"] = summary(s["sidecar_header"].values)
    figures["ratios"]["vs_bare"]["sidecar_route"] = ratio(s["sidecar_route"], s["bare"])
    figures["ratios"]["sidecar_vs_authorization_header"] = ratio(
        s["sidecar_header"], s["authorization_header"]
    )
    figures["facts"].update(facts)
