"""Prometheus metrics and health probes of the sidecar, scraped over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from svc_support import APP_SECRET, caller_token

from authrelay import prometheus_metrics
from authrelay.relay import Relay
from authrelay.sidecar import create_sidecar_app
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider
from authrelay.testing.servers import free_port, serve_asgi, serve_wsgi

MakeRelay = Callable[..., tuple[Relay, FakeClock]]


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """GET ``url`` and parse it with prometheus-client's own parser."""
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def test_metrics_count_token_requests_hits_and_latency(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay()
    with serve_asgi(create_sidecar_app(relay=relay)) as url:
        for _ in range(3):
            answer = httpx.get(f"{url}/AuthorizationHeaderUnauthenticated/billing", timeout=30)
            assert answer.status_code == 200
        samples = scrape(f"{url}/metrics")
    token_requests = dict(
        target="billing", flow="client_credentials", grant="client_credentials", outcome="success"
    )
    assert value(samples, "authrelay_token_requests_total", **token_requests) == 1
    assert clean_idp.counters.count(endpoint="token", grant_type="client_credentials") == 1
    assert value(samples, "authrelay_token_cache_misses_total", service="billing") == 1
    assert value(samples, "authrelay_token_cache_hits_total", service="billing") == 2
    latency = dict(target="billing", grant="client_credentials")
    assert value(samples, "authrelay_token_endpoint_seconds_count", **latency) == 1
    assert value(samples, "authrelay_token_endpoint_seconds_bucket", le="+Inf", **latency) == 1
    # /auth/stats and the exposition read the same counters.
    stats = {
        (c["name"], c["target"], c["flow"]): c["value"]
        for c in relay.stats()["counters"]
        if c["name"] in ("cache_hits", "cache_misses")
    }
    assert stats == {
        ("cache_hits", "billing", "client_credentials"): 2,
        ("cache_misses", "billing", "client_credentials"): 1,
    }


def test_failed_token_request_is_labelled_by_its_oauth_error(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay(client={"client_id": "app", "client_secret": "not-the-secret"})
    with serve_asgi(create_sidecar_app(relay=relay)) as url:
        answer = httpx.get(f"{url}/AuthorizationHeaderUnauthenticated/billing", timeout=30)
        assert answer.status_code >= 400
        samples = scrape(f"{url}/metrics")
    assert value(samples, "authrelay_token_requests_total", outcome="invalid_client") == 1
    assert value(samples, "authrelay_token_requests_total", outcome="success") == 0


def test_labels_never_carry_subjects_tokens_or_secrets(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay()
    token = caller_token(clean_idp, "alice-subject-canary")
    with serve_asgi(create_sidecar_app(relay=relay)) as url:
        headers = {"Authorization": f"Bearer {token}"}
        for service in ("orders", "obo", "billing"):
            httpx.get(f"{url}/AuthorizationHeader/{service}", headers=headers, timeout=30)
        httpx.get(f"{url}/Validate", headers={"Authorization": "Bearer not.a.jwt"}, timeout=30)
        text = httpx.get(f"{url}/metrics", timeout=30).text
        samples = scrape(f"{url}/metrics")
    for canary in ("alice-subject-canary", token, token[:20], APP_SECRET, clean_idp.issuer):
        assert canary not in text
    assert value(samples, "authrelay_bearer_verifications_total", outcome="valid") == 1
    assert value(samples, "authrelay_bearer_verifications_total", outcome="invalid_token") == 1
    grants = {labels["grant"] for labels, _ in samples["authrelay_token_requests_total"]}
    assert grants == {"token_exchange", "jwt_bearer", "client_credentials"}
    allowed = set(relay.settings.services) | {"", "memory", "get", "put", "delete", "keys"}
    for name, series in samples.items():
        for labels, _ in series:
            for label, found in labels.items():
                if label in ("target", "service", "backend", "operation"):
                    assert found in allowed, (name, label, found)


def test_healthz_and_readyz(make_relay: MakeRelay, clean_idp: IdentityProvider) -> None:
    relay, _ = make_relay()
    with serve_asgi(create_sidecar_app(relay=relay)) as url:
        assert httpx.get(f"{url}/healthz", timeout=30).json() == {"status": "Healthy"}
        ready = httpx.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"store": "ok", "bearer": "ok", "connector:github": "ok"},
    }


def test_readyz_503_when_the_issuer_cannot_be_reached(make_relay: MakeRelay) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    relay, _ = make_relay(bearer={"issuer": issuer, "audience": "api://app"})
    with serve_asgi(create_sidecar_app(relay=relay)) as url:
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        ready = httpx.get(f"{url}/readyz", timeout=60)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["bearer"] == "temporarily_unavailable"
    assert issuer not in ready.text


def test_relay_ready_reports_an_unreachable_store(make_relay: MakeRelay) -> None:
    relay, _ = make_relay(
        store={"url": f"redis://127.0.0.1:{free_port()}/0", "timeout": 1},
        secret_keys=["a-session-key-for-this-test-only-0123456789abcdef"],
    )
    readiness = relay.ready()
    assert not readiness
    assert readiness.checks["store"] == "unreachable"
    assert readiness.checks["bearer"] == "ok"
    assert relay.metrics.count("store_errors", target="redis", flow="get") == 1


def test_singleflight_waiters_are_counted(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    relay, _ = make_relay()
    clean_idp.faults.add("token", delay=1.0)  # the first request stays in flight a while
    callers = 4
    barrier = threading.Barrier(callers)

    def call() -> None:
        client = relay.services.client("billing", *_anonymous(), asynchronous=False)
        barrier.wait()
        client.authorization_header()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    metrics = prometheus_metrics(relay)
    with serve_wsgi(metrics.wsgi) as url:
        samples = scrape(url + "/")
    requests = value(samples, "authrelay_token_requests_total", target="billing")
    waiters = value(samples, "authrelay_singleflight_waiters_total", target="billing", kind="token")
    hits = value(samples, "authrelay_token_cache_hits_total", service="billing")
    assert requests == clean_idp.counters.count(endpoint="token") == 1
    # Every caller either sent the request, waited for it, or found its result cached.
    assert requests + waiters + hits == callers


def test_prometheus_metrics_as_a_wsgi_app_and_a_collector(
    make_relay: MakeRelay, clean_idp: IdentityProvider
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    relay, _ = make_relay()
    client = relay.services.client("billing", *_anonymous(), asynchronous=False)
    client.authorization_header()
    metrics = prometheus_metrics(relay)
    with serve_wsgi(metrics.wsgi) as url:
        samples = scrape(url + "/")
    assert value(samples, "authrelay_token_requests_total", outcome="success") == 1
    own = CollectorRegistry()
    own.register(metrics.collector)
    assert (
        b'authrelay_token_cache_misses_total{flow="client_credentials",service="billing"} 1.0'
        in (generate_latest(own))
    )


def _anonymous() -> tuple[Any, Any]:
    from authrelay.principal import ANONYMOUS, NO_CREDENTIALS

    return ANONYMOUS, NO_CREDENTIALS


def test_prometheus_client_stays_optional(
    make_relay: MakeRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported = subprocess.run(
        [sys.executable, "-c",
         "import sys, authrelay, authrelay.sidecar; print('prometheus_client' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert imported.stdout.strip() == "False"
    relay, _ = make_relay()
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(ImportError, match=r"authrelay\[prometheus\]"):
        prometheus_metrics(relay)
    with serve_asgi(create_sidecar_app(relay=relay)) as url:
        answer = httpx.get(f"{url}/metrics", timeout=30)
    assert answer.status_code == 501
    assert "authrelay[prometheus]" in answer.json()["detail"]


def test_every_metric_is_in_the_deployment_docs() -> None:
    from pathlib import Path

    from authrelay.prometheus import COUNTERS, HISTOGRAMS

    docs = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text("utf-8")
    for spec in COUNTERS.values():
        labels = ", ".join(f"`{label}`" for label, _ in spec.labels) or "none"
        assert f"| `{spec.metric}_total` | counter | {labels}" in docs, spec.metric
    for spec in HISTOGRAMS.values():
        labels = ", ".join(f"`{label}`" for label, _ in spec.labels)
        assert f"| `{spec.metric}` | histogram | {labels} |" in docs, spec.metric
