"""The benchmark run: phases in order, figures gathered into one JSON document.

Phases: direct ASGI calls (scenarios 1 to 4 and peers), services (5, 6, sidecar, client
count), WSGI (7), throughput under uvicorn, the scale figures (storm, memory) and
issue #6's figures (1, 2, 4 workers sharing Redis; Redis round trips per request). A
phase that cannot run here (a part not built yet, a missing tool) is recorded under
``skipped`` with the reason; a phase that fails is recorded under ``errors``. Neither is
ever reported as a met target.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authrelay.relay import Relay
from authrelay.testing.servers import serve_asgi

from .apps import relay_settings
from .direct import run_direct
from .idp import BenchIdP
from .targets import evaluate
from .timing import Series, ratio, summary

__all__ = ["Config", "run"]

logger = logging.getLogger("authrelay.benchmarks")


@dataclass(frozen=True)
class Config:
    """Sizes of one run. :meth:`quick` is the smoke run; :meth:`tiny` is for the test."""

    rounds: int = 15
    inner: int = 200
    wsgi_inner: int = 2000
    server_seconds: float = 4.0
    server_rounds: int = 3
    server_concurrency: int = 16
    storm_size: int = 1000
    storm_token_delay: float = 0.05
    storm_rounds: int = 5
    memory_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    cache_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    rss_users: int = 100_000
    quick: bool = False
    phases: tuple[str, ...] = (
        "direct",
        "services",
        "wsgi",
        "wsgi_servers",
        "server",
        "scale",
        "growth",
        "redis",
    )

    @classmethod
    def quick_config(cls) -> Config:
        """A smoke run: every phase, small counts (well under a minute)."""
        return cls(
            rounds=3,
            inner=50,
            wsgi_inner=300,
            server_seconds=1.0,
            server_rounds=1,
            storm_size=200,
            storm_rounds=2,
            memory_sizes=(1_000, 5_000),
            cache_sizes=(10_000,),
            rss_users=2_000,
            quick=True,
        )

    @classmethod
    def tiny(cls, phases: tuple[str, ...]) -> Config:
        """The test's run: tiny counts, chosen phases."""
        return cls(
            rounds=2,
            inner=5,
            wsgi_inner=20,
            server_seconds=0.3,
            server_rounds=1,
            server_concurrency=4,
            storm_size=50,
            storm_token_delay=0.02,
            storm_rounds=1,
            memory_sizes=(200, 400),
            cache_sizes=(1_000, 2_000),
            rss_users=100,
            quick=True,
            phases=phases,
        )


def _as_dict(series: dict[str, Series]) -> dict[str, dict[str, float]]:
    return {name: summary(s.values) for name, s in series.items()}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_before": [round(x, 2) for x in load],
    }


def _direct_ratios(series: dict[str, Series]) -> dict[str, Any]:
    s = series
    ratios: dict[str, Any] = {
        "anonymous_vs_bare": ratio(s["anonymous_ab"], s["bare_ab"]),
        "anonymous_vs_bare_shuffled": ratio(s["anonymous"], s["bare"]),
        "session_vs_starlette_session": ratio(s["session"], s["starlette_session"]),
        "session_added_vs_itsdangerous": ratio(
            s["session"], s["itsdangerous_unsign"], minus=s["bare"]
        ),
        "bearer_rs256_first_added_vs_verify": ratio(
            s["bearer_rs256_first"], s["crypto_verify_rs256"], minus=s["bare"]
        ),
        "bearer_es256_first_added_vs_verify": ratio(
            s["bearer_es256_first"], s["crypto_verify_es256"], minus=s["bare"]
        ),
        "bearer_cache_hit_vs_ttlcache": ratio(s["bearer_cache_hit"], s["ttlcache_get"]),
        "bearer_repeat_added_vs_ttlcache": ratio(
            s["bearer_rs256_repeat"], s["ttlcache_get"], minus=s["anonymous"]
        ),
    }
    for name in (
        "anonymous",
        "session",
        "starlette_session",
        "authlib_peer",
        "bearer_rs256_repeat",
        "bearer_es256_repeat",
        "bearer_rs256_first",
        "bearer_es256_first",
    ):
        ratios.setdefault("vs_bare", {})[name] = ratio(s[name], s["bare"])
    return ratios


def run(config: Config, *, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run the phases of ``config``; return the figures (JSON-ready), targets judged."""
    started = time.time()
    figures: dict[str, Any] = {
        "meta": {
            "machine": machine(),
            "quick": config.quick,
            "config": {
                "rounds": config.rounds,
                "inner": config.inner,
                "server_seconds": config.server_seconds,
                "server_concurrency": config.server_concurrency,
                "storm_size": config.storm_size,
                "storm_token_delay": config.storm_token_delay,
            },
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        },
        "direct": {},
        "ratios": {"vs_bare": {}},
        "facts": {},
        "server": {},
        "wsgi": {},
        "scale": {},
        "redis": {},
        "growth": {},
        "skipped": {},
        "errors": {},
    }
    idp = BenchIdP()
    with serve_asgi(idp.app) as issuer:
        idp.issuer = issuer
        for phase in config.phases:
            progress(f"phase {phase}")
            try:
                _PHASES[phase](idp, config, figures)
            except Exception as exc:  # a broken phase is reported, the others still run
                figures["errors"][phase] = f"{type(exc).__name__}: {exc}"
                logger.debug("phase %s failed:\n%s", phase, traceback.format_exc())
    figures["meta"]["seconds"] = round(time.time() - started, 1)
    figures["targets"] = [t.as_dict() for t in evaluate(figures)]
    return figures


def _phase_direct(idp: BenchIdP, config: Config, figures: dict[str, Any]) -> None:
    relay = Relay(relay_settings(idp))

    async def measure() -> tuple[dict[str, Series], dict[str, Any]]:
        try:
            return await run_direct(idp, relay, rounds=config.rounds, inner=config.inner)
        finally:
            await relay.aclose()
            relay.close()

    series, facts = asyncio.run(measure())
    figures["direct"].update(_as_dict(series))
    figures["facts"].update(facts)
    ratios = _direct_ratios(series)
    figures["ratios"]["vs_bare"].update(ratios.pop("vs_bare"))
    figures["ratios"].update(ratios)


def _phase_services(idp: BenchIdP, config: Config, figures: dict[str, Any]) -> None:
    from . import services

    services.run_phase(idp, config, figures)


def _phase_wsgi(idp: BenchIdP, config: Config, figures: dict[str, Any]) -> None:
    from . import wsgi

    wsgi.run_phase(idp, config, figures)


def _phase_server(idp: BenchIdP, config: Config, figures: dict[str, Any]) -> None:
    from . import server

    server.run_phase(idp, config, figures)


def _phase_growth(idp: BenchIdP, config: Config, figures: dict[str, Any]) -> None:
    from . import growth

    growth.run_phase(idp, config, figures)


def _phase_wsgi_servers(idp: BenchIdP, config: Config, figures: dict[str, Any]) -> None:
    from . import wsgi_servers

    wsgi_servers.run_phase(idp, config, figures)


def _phase_redis(idp: BenchIdP, config: Config, figures: dict[str, Any]) -> None:
    from . import workers

    workers.run_phase(idp, config, figures)


def _phase_scale(idp: BenchIdP, config: Config, figures: dict[str, Any]) -> None:
    from . import scale

    scale.run_phase(idp, config, figures)


_PHASES: dict[str, Callable[[BenchIdP, Config, dict[str, Any]], None]] = {
    "direct": _phase_direct,
    "services": _phase_services,
    "wsgi": _phase_wsgi,
    "server": _phase_server,
    "scale": _phase_scale,
    "growth": _phase_growth,
    "wsgi_servers": _phase_wsgi_servers,
    "redis": _phase_redis,
}
