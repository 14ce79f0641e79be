"""INV-1: nothing that looks like a credential survives into a log record."""

from __future__ import annotations

import logging

import pytest

from authrelay import Settings
from authrelay.errors import ConsentRequired, UpstreamTimeout
from authrelay.observability import Stats, redact, token_request_metrics
from authrelay.relay import Relay

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWNhbmFyeQ"


@pytest.mark.parametrize(
    ("text", "canary"),
    [
        (f"token {JWT} rejected", "c2lnbmF0dXJlLWNhbmFyeQ"),
        ("Authorization: Bearer opaque-canary-123", "opaque-canary-123"),
        ("grant_type=refresh_token&refresh_token=rt-canary&client_id=x", "rt-canary"),
        ('{"access_token": "at-canary", "token_type": "Bearer"}', "at-canary"),
        ("code=code-canary&state=s", "code-canary"),
        ("client_secret=cs-canary", "cs-canary"),
        ("cookie __Host-authrelay=cookie-canary; other=1", "cookie-canary"),
    ],
)
def test_inv1_redact_masks_credentials(text: str, canary: str) -> None:
    assert canary not in redact(text)


def test_inv1_filter_applies_to_child_loggers(caplog: pytest.LogCaptureFixture) -> None:
    Relay(Settings(secret_keys=["k" * 32]))
    logger = logging.getLogger("authrelay.session")
    with caplog.at_level(logging.DEBUG, logger="authrelay"):
        logger.debug("got %s", f"Bearer {JWT}")
        logger.info("refresh failed", extra={"body": "refresh_token=rt-canary"})
    text = "\n".join(r.getMessage() + str(r.__dict__.get("body")) for r in caplog.records)
    assert JWT not in text and "rt-canary" not in text
    assert "[redacted]" in text


def test_stats_counts_by_label() -> None:
    stats = Stats()
    stats.incr("token_endpoint_calls", target="orders", flow="client_credentials")
    stats.incr("token_endpoint_calls", target="orders", flow="client_credentials")
    stats.incr("cache_hits", target="orders")
    stats.observe("acquire", 0.01, target="orders")
    assert stats.count("token_endpoint_calls", target="orders") == 2
    snapshot = stats.snapshot()
    assert {"name": "cache_hits", "target": "orders", "flow": "", "value": 1} in snapshot[
        "counters"
    ]
    assert snapshot["latency"][0]["count"] == 1


def test_token_request_metrics_label_each_outcome_by_its_code() -> None:
    stats = Stats()
    grant = "urn:ietf:params:oauth:grant-type:token-exchange"
    with token_request_metrics(stats, "orders", "token_exchange", grant):
        pass
    consent = ConsentRequired("more scopes")
    consent.oauth_error = "interaction_required"
    failures: list[Exception] = [consent, UpstreamTimeout("slow"), RuntimeError("bug")]
    for failure in failures:
        with (
            pytest.raises(type(failure)),
            token_request_metrics(stats, "orders", "token_exchange", grant),
        ):
            raise failure
    counted = {
        extra["outcome"]: value
        for name, target, _, extra, value in stats.counters()
        if name == "token_requests" and target == "orders" and extra["grant"] == "token_exchange"
    }
    assert counted == {
        "success": 1,
        "interaction_required": 1,
        "upstream_timeout": 1,
        "other": 1,
    }
    assert stats.histograms()[0][:4] == ("token_endpoint", "orders", "token_exchange", 4)


def test_token_request_metrics_without_stats_only_runs_the_block() -> None:
    stats = None
    with (
        pytest.raises(UpstreamTimeout),
        token_request_metrics(stats, "orders", "client_credentials", "client_credentials"),
    ):
        raise UpstreamTimeout("slow")
