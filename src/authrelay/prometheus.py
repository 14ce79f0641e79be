"""Prometheus exposition of the relay's counters (``pip install authrelay[prometheus]``).

One source of truth: the metrics below are read, at scrape time, from the same
:class:`~authrelay.observability.Stats` that ``relay.stats()`` and ``GET /auth/stats``
report. Nothing is counted twice and nothing is added to the request path.

Labels are service, connector and agent names from the settings, flows, grant types,
store backends and operations, and error codes from a fixed list (others are counted
as ``other``). Never a subject, a token, an e-mail address, a URL or any value a caller
or a provider can choose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .observability import BUCKETS, bounded

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["COUNTERS", "HISTOGRAMS", "PrometheusMetrics", "prometheus_metrics"]

_FREE = frozenset({"success", "valid", "cached"})


@dataclass(frozen=True, slots=True)
class Spec:
    """How one relay counter or latency series is exposed."""

    metric: str
    help: str
    labels: tuple[tuple[str, str], ...]
    """``(prometheus label, source)``: source is ``target``, ``flow`` or an extra label."""


COUNTERS: dict[str, Spec] = {
    "token_requests": Spec(
        "authrelay_token_requests", "Token-endpoint requests by outcome (retries inside one).",
        (("target", "target"), ("flow", "flow"), ("grant", "grant"), ("outcome", "outcome")),
    ),
    "token_endpoint_calls": Spec(
        "authrelay_token_endpoint_calls", "Token-endpoint requests started.",
        (("target", "target"), ("flow", "flow")),
    ),
    "cache_hits": Spec(
        "authrelay_token_cache_hits", "Service tokens served from the in-process cache.",
        (("service", "target"), ("flow", "flow")),
    ),
    "cache_misses": Spec(
        "authrelay_token_cache_misses", "Service token lookups the in-process cache missed.",
        (("service", "target"), ("flow", "flow")),
    ),
    "store_hits": Spec(
        "authrelay_shared_token_hits", "Service tokens another process had put in the store.",
        (("service", "target"), ("flow", "flow")),
    ),
    "singleflight_waits": Spec(
        "authrelay_singleflight_waiters", "Callers that waited for a call already running.",
        (("target", "target"), ("kind", "flow")),
    ),
    "refreshes": Spec(
        "authrelay_refreshes", "Tokens fetched again (expired, or refused by a service).",
        (("target", "target"), ("flow", "flow")),
    ),
    "rotations": Spec(
        "authrelay_refresh_token_rotations", "Refreshes that returned a new refresh token.",
        (("connector", "target"),),
    ),
    "invalid_grant": Spec(
        "authrelay_invalid_grant", "Token requests refused with invalid_grant.",
        (("target", "target"), ("flow", "flow")),
    ),
    "failures": Spec(
        "authrelay_failures", "Failed token acquisitions and sign-ins, by error code.",
        (("target", "target"), ("error", "flow")),
    ),
    "sign_ins": Spec(
        "authrelay_sign_ins", "Completed connector sign-ins and connects.",
        (("connector", "target"),),
    ),
    "backchannel_logouts": Spec(
        "authrelay_backchannel_logouts", "Accepted back-channel logout tokens.",
        (("connector", "target"),),
    ),
    "sessions_created": Spec("authrelay_sessions_created", "Sessions created.", ()),
    "sessions_ended": Spec("authrelay_sessions_ended", "Sessions ended (logout).", ()),
    "bearer_verifications": Spec(
        "authrelay_bearer_verifications", "Bearer tokens checked, by outcome (cached = hit).",
        (("outcome", "flow"),),
    ),
    "store_errors": Spec(
        "authrelay_store_errors", "Store operations that failed.",
        (("backend", "target"), ("operation", "flow")),
    ),
}  # fmt: skip

HISTOGRAMS: dict[str, Spec] = {
    "token_endpoint": Spec(
        "authrelay_token_endpoint_seconds", "Token-endpoint latency (with retries).",
        (("target", "target"), ("grant", "flow")),
    ),
    "acquire": Spec(
        "authrelay_token_acquire_seconds", "Time to get a service token on a cache miss.",
        (("service", "target"),),
    ),
    "refresh": Spec(
        "authrelay_connector_refresh_seconds", "Connector refresh latency.",
        (("connector", "target"),),
    ),
    "store": Spec(
        "authrelay_store_seconds", "Store operation latency.",
        (("backend", "target"), ("operation", "flow")),
    ),
}  # fmt: skip

_LABELLED_CODES = frozenset({"outcome", "error"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _value(spec_label: str, source: str, target: str, flow: str, extra: dict[str, str]) -> str:
    value = target if source == "target" else flow if source == "flow" else extra.get(source, "")
    if spec_label in _LABELLED_CODES and value not in _FREE:
        return bounded(value)
    return value


class RelayCollector:
    """A ``prometheus_client`` collector reading ``relay.metrics`` at each scrape."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def describe(self) -> list[Any]:
        """Nothing up front: the families depend on what was counted."""
        return []

    def collect(self) -> Iterator[Any]:
        """The counter and histogram families of this relay, as of now."""
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        stats = self.relay.metrics
        families: dict[str, Any] = {}
        for name, target, flow, extra, value in stats.counters():
            spec = COUNTERS.get(name)
            if spec is None:
                if not _NAME.match(name):
                    continue
                spec = Spec(f"authrelay_{name}", f"authrelay counter {name}.",
                            (("target", "target"), ("flow", "flow")))  # fmt: skip
            family = families.get(spec.metric)
            if family is None:
                family = families[spec.metric] = CounterMetricFamily(
                    spec.metric, spec.help, labels=[label for label, _ in spec.labels]
                )
            family.add_metric(
                [_value(label, source, target, flow, extra) for label, source in spec.labels],
                value,
            )
        yield from families.values()
        histograms: dict[str, Any] = {}
        for name, target, flow, count, total, buckets in stats.histograms():
            spec = HISTOGRAMS.get(name)
            if spec is None:
                continue
            family = histograms.get(spec.metric)
            if family is None:
                family = histograms[spec.metric] = HistogramMetricFamily(
                    spec.metric, spec.help, labels=[label for label, _ in spec.labels]
                )
            cumulative, running = [], 0
            for bound, hits in zip(BUCKETS, buckets, strict=True):
                running += hits
                cumulative.append((_bound(bound), running))
            cumulative.append(("+Inf", count))
            family.add_metric(
                [_value(label, source, target, flow, {}) for label, source in spec.labels],
                cumulative,
                total,
            )
        yield from histograms.values()


def _bound(value: float) -> str:
    return repr(float(value))


class PrometheusMetrics:
    """``prometheus_metrics(relay)``: a collector, its own registry, and apps serving it.

    - ``asgi`` / ``wsgi``: an app to mount at ``/metrics``;
    - ``registry``: a ``CollectorRegistry`` holding only this relay's metrics;
    - ``collector``: to add to the application's own registry instead
      (``prometheus_client.REGISTRY.register(metrics.collector)``).
    """

    def __init__(self, relay: Relay) -> None:
        from prometheus_client import CollectorRegistry, make_asgi_app, make_wsgi_app

        self.collector = RelayCollector(relay)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.asgi: Any = make_asgi_app(self.registry)
        self.wsgi: Any = make_wsgi_app(self.registry)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition now, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def prometheus_metrics(relay: Relay) -> PrometheusMetrics:
    """Expose ``relay``'s counters to Prometheus; needs ``authrelay[prometheus]``.

    Raises :class:`ImportError` naming the extra when ``prometheus-client`` is missing.
    """
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ImportError(
            "prometheus_metrics() needs prometheus-client: pip install 'authrelay[prometheus]'"
        ) from None
    return PrometheusMetrics(relay)
