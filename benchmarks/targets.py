"""The targets of issue #7 (and #6's warm-path rule), computed from this run's figures, judged.

Defends against a target quietly judged on a different measure than the one it names:
every target states here what is divided by what, and a figure that was not measured
in this run is reported as "not measured", never as met.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Target", "evaluate"]


@dataclass(frozen=True)
class Target:
    """One target: ``value op limit`` where ``value`` is this run's median ratio (or count)."""

    id: str
    text: str
    measure: str
    limit: float
    op: Literal["<=", ">=", "=="]
    value: float | None
    spread: tuple[float, float] | None = None

    @property
    def met(self) -> bool | None:
        """True / False, or None when the figure was not measured in this run."""
        if self.value is None:
            return None
        if self.op == "<=":
            return self.value <= self.limit
        if self.op == ">=":
            return self.value >= self.limit
        return self.value == self.limit

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "text": self.text,
            "measure": self.measure,
            "limit": self.limit,
            "op": self.op,
            "value": self.value,
            "spread": list(self.spread) if self.spread else None,
            "met": self.met,
        }


def _get(figures: dict[str, Any], path: str) -> tuple[float | None, tuple[float, float] | None]:
    node: Any = figures
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None, None
        node = node[part]
    if isinstance(node, dict):
        spread = (node["p25"], node["p75"]) if "p25" in node else None
        value = node.get("median", node.get("value"))
        return (None if value is None else float(value)), spread
    if node is None:
        return None, None
    return float(node), None


_SPECS: list[tuple[str, str, str, str, Literal["<=", ">=", "=="], float]] = [
    ("T01", "anonymous request vs bare Starlette (direct calls)",
     "ratios.anonymous_vs_bare", "request time ratio", "<=", 1.10),
    ("T02", "anonymous request/s vs bare Starlette (uvicorn, 1 worker)",
     "ratios.rps_anonymous_vs_bare", "req/s ratio", ">=", 0.93),
    ("T03", "anonymous request, Flask + authrelay vs bare Flask (WSGI)",
     "wsgi.vs_floor.flask_anonymous", "call time ratio", "<=", 1.05),
    ("T04", "session cookie never slower than Starlette's SessionMiddleware",
     "ratios.session_vs_starlette_session", "request time ratio", "<=", 1.0),
    ("T05", "session cookie added cost vs an itsdangerous signature check",
     "ratios.session_added_vs_itsdangerous", "added µs / unsign µs", "<=", 1.5),
    ("T06", "bearer first sight RS256 added cost vs raw cryptography verify",
     "ratios.bearer_rs256_first_added_vs_verify", "added µs / verify µs", "<=", 4.0),
    ("T07", "bearer first sight ES256 added cost vs raw cryptography verify",
     "ratios.bearer_es256_first_added_vs_verify", "added µs / verify µs", "<=", 2.5),
    ("T08", "repeated bearer: verified-token cache hit vs a TTLCache lookup",
     "ratios.bearer_cache_hit_vs_ttlcache", "lookup time ratio", "<=", 3.0),
    ("T09", "warm authorization_header() vs a TTLCache lookup",
     "ratios.authorization_header_vs_ttlcache", "call time ratio", "<=", 3.0),
    ("T10", "no lock taken on the authorization_header() hit path",
     "facts.locks_on_header_hit", "lock acquisitions per hit", "==", 0.0),
    ("T11", "warm downstream call vs the same call with a hard-coded header",
     "ratios.downstream_vs_hardcoded", "request time ratio", "<=", 1.05),
    ("T12", "getting a header: sidecar hop vs authorization_header()",
     "ratios.sidecar_vs_authorization_header", "times faster", ">=", 100.0),
    ("T13", "httpx clients constructed per service per process",
     "facts.httpx_clients_per_service", "clients", "<=", 1.0),
    ("T14", "cold-start storm of 1,000: token-endpoint calls",
     "scale.storm.token_calls", "calls", "==", 1.0),
    ("T15", "cold storm of 1,000: wall time minus the same storm warm, vs one token call",
     "scale.storm.cold_minus_warm_vs_one_spread", "(cold - warm) / one cold call", "<=", 1.2),
    ("T16", "session route request/s vs bare Starlette (uvicorn)",
     "ratios.rps_session_vs_bare", "req/s ratio", ">=", 0.75),
    ("T17", "warm-bearer route request/s vs bare Starlette sent the same bytes (h11)",
     "ratios.rps_bearer_vs_same_bytes", "req/s ratio", ">=", 0.95),
    ("T17h", "warm-bearer route request/s vs bare Starlette sent the same bytes (httptools)",
     "ratios.rps_bearer_vs_same_bytes_httptools", "req/s ratio", ">=", 0.95),
    ("T18", "warm service route on a Redis store: Redis round trips per request (#6)",
     "redis.round_trips.per_request.warm.max", "round trips", "==", 0.0),
]  # fmt: skip


def evaluate(figures: dict[str, Any]) -> list[Target]:
    """Judge every target against ``figures`` (the JSON document being built)."""
    targets = []
    for target_id, text, path, measure, op, limit in _SPECS:
        value, spread = _get(figures, path)
        targets.append(Target(target_id, text, measure, limit, op, value, spread))
    return targets
