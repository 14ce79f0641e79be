"""Counters, log redaction and optional OpenTelemetry spans.

Defends against secrets in logs (INV-1): every ``authrelay.*`` logger carries a
:class:`RedactingFilter` that masks bearer tokens, JWTs, authorization codes, refresh
tokens, client secrets and cookie values in messages and arguments, even if a caller
formats one in by mistake. Counters never use a token or a subject as a label.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from .errors import failure_code

__all__ = [
    "BUCKETS",
    "LazyCounters",
    "RedactingFilter",
    "Stats",
    "bounded",
    "grant_label",
    "install_redaction",
    "span",
    "token_request_metrics",
]

_PATTERNS = (
    # JWS / JWE compact serializations
    re.compile(
        r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)?"
    ),
    # Authorization header values
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*"),
    # key=value pairs of known secrets (form bodies, query strings, JSON)
    re.compile(
        r"(?i)(\"?(?:access_token|refresh_token|id_token|code|code_verifier|client_secret|"
        r"client_assertion|subject_token|actor_token|assertion|password|api_key|token)\"?\s*[=:]\s*\"?)"
        r"[^&\s\",;]+"
    ),
    # session cookies
    re.compile(r"((?:__Host-)?authrelay=)[^;\s]+"),
)
_MASK = "[redacted]"


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential masked."""
    text = _PATTERNS[0].sub(_MASK, text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)} {_MASK}", text)
    text = _PATTERNS[2].sub(lambda m: f"{m.group(1)}{_MASK}", text)
    return _PATTERNS[3].sub(lambda m: f"{m.group(1)}{_MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks credentials in a record's message, arguments and ``extra`` strings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = redact(record.getMessage())
            record.args = None
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                record.__dict__[key] = redact(value)
        return True


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
_FILTER = RedactingFilter()


def install_redaction() -> None:
    """Attach the redacting filter to the ``authrelay`` logger and every child logger."""
    names = [
        "authrelay",
        *(n for n in logging.Logger.manager.loggerDict if n.startswith("authrelay.")),
    ]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


LazyCounters = Callable[[], Iterable[tuple[str, str, str, int]]]
"""A source of ``(name, target, flow, value)`` counters read only when stats are read."""

Labels = tuple[tuple[str, str], ...]
"""Extra labels of a counter, as ``(("grant", "refresh_token"), ("outcome", "success"))``."""

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the latency histogram buckets."""

_CodeKey = tuple[str, str, str, Labels]

# Error codes that may label a counter; anything else (a provider's own code, a query
# parameter) is counted as "other", so labels stay a small, known set.
KNOWN_CODES = frozenset(
    {
        "access_denied", "authorization_pending", "consent_required", "expired_token",
        "interaction_required", "invalid_client", "invalid_grant", "invalid_request",
        "invalid_scope", "invalid_target", "login_required", "server_error",
        "slow_down", "temporarily_unavailable", "unauthorized_client",
        "unsupported_grant_type", "unsupported_response_type", "unsupported_token_type",
        "account_selection_required", "request_not_supported", "registration_not_supported",
        "invalid_token", "insufficient_scope", "unauthorized", "configuration_error",
        "connector_authorization_required", "unknown_service", "upstream_token_error",
        "upstream_timeout", "downstream_error", "request_header_too_large",
        "invalid_state", "invalid_id_token", "invalid_issuer", "token_store_unavailable",
    }
)  # fmt: skip


def bounded(code: str) -> str:
    """``code`` if it is a known error code, else ``"other"`` (never an unbounded label)."""
    return code if code in KNOWN_CODES else "other"


_GRANTS = {
    "authorization_code": "authorization_code",
    "refresh_token": "refresh_token",
    "client_credentials": "client_credentials",
    "urn:ietf:params:oauth:grant-type:jwt-bearer": "jwt_bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange": "token_exchange",
    "urn:ietf:params:oauth:grant-type:device_code": "device_code",
    "user_fic": "user_fic",
}


def grant_label(grant_type: str) -> str:
    """A short label for an OAuth ``grant_type`` (``jwt_bearer``, ...), else ``"other"``."""
    return _GRANTS.get(grant_type, "other")


@contextmanager
def token_request_metrics(
    stats: Stats | None, target: str, flow: str, grant_type: str
) -> Iterator[None]:
    """Count and time the token-endpoint request made inside the block (nothing if no stats).

    The outcome is ``success``, else the failure's code (:func:`~authrelay.errors.failure_code`:
    the provider's OAuth error, else authrelay's, else ``other``).
    """
    if stats is None:
        yield
        return
    started = time.perf_counter()
    outcome = "other"
    try:
        yield
    except Exception as exc:
        outcome = failure_code(exc)
        raise
    else:
        outcome = "success"
    finally:
        seconds = time.perf_counter() - started
        stats.token_request(target, flow, grant_label(grant_type), outcome, seconds)


class Stats:
    """Thread-safe counters and latency histograms, labelled by service/connector and flow.

    Hot paths that must not take a lock (a warm token-cache hit) keep a plain integer of
    their own and :meth:`register` a source that reports it; such counters are folded
    in when the stats are read. They may miss an increment under heavy thread contention
    (an unlocked ``+=``), which a counter meant for dashboards can afford. The JSON of
    :meth:`snapshot` and the Prometheus exposition (:mod:`authrelay.prometheus`) both
    read these same counters.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: defaultdict[_CodeKey, int] = defaultdict(int)
        self._latency: dict[tuple[str, str, str], list[float]] = {}
        self._sources: list[LazyCounters] = []
        self._baseline: dict[_CodeKey, int] = {}

    def register(self, source: LazyCounters) -> None:
        """Fold the counters ``source()`` reports into every read (:meth:`snapshot`, ...)."""
        with self._lock:
            if source not in self._sources:
                self._sources.append(source)

    def _lazy(self) -> dict[_CodeKey, int]:
        found: defaultdict[_CodeKey, int] = defaultdict(int)
        for source in list(self._sources):
            for name, target, flow, value in source():
                found[(name, target, flow, ())] += value
        return {
            labels: value - self._baseline.get(labels, 0)
            for labels, value in found.items()
            if value - self._baseline.get(labels, 0)
        }

    def _merged(self) -> dict[_CodeKey, int]:
        merged = dict(self._counters)
        for labels, value in self._lazy().items():
            merged[labels] = merged.get(labels, 0) + value
        return merged

    def incr(
        self, name: str, *, target: str = "", flow: str = "", by: int = 1, labels: Labels = ()
    ) -> None:
        """Add ``by`` to counter ``name`` for ``target`` (a service or connector) and ``flow``."""
        with self._lock:
            self._counters[(name, target, flow, labels)] += by

    def observe(self, name: str, seconds: float, *, target: str = "", flow: str = "") -> None:
        """Record one latency sample."""
        with self._lock:
            self._observe((name, target, flow), seconds)

    def _observe(self, key: tuple[str, str, str], seconds: float) -> None:
        entry = self._latency.get(key)
        if entry is None:
            entry = self._latency[key] = [0, 0.0, 0.0] + [0] * len(BUCKETS)
        entry[0] += 1
        entry[1] += seconds
        entry[2] = max(entry[2], seconds)
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                entry[3 + index] += 1
                break

    def token_request(
        self, target: str, flow: str, grant: str, outcome: str, seconds: float
    ) -> None:
        """One answered (or failed) token-endpoint request: counter and latency together."""
        outcome = "success" if outcome == "success" else bounded(outcome)
        with self._lock:
            counters = self._counters
            counters[
                ("token_requests", target, flow, (("grant", grant), ("outcome", outcome)))
            ] += 1
            if outcome == "invalid_grant":
                counters[("invalid_grant", target, flow, ())] += 1
            self._observe(("token_endpoint", target, grant), seconds)

    def count(
        self, name: str, *, target: str | None = None, flow: str | None = None, **labels: str
    ) -> int:
        """Sum of counter ``name`` over matching labels (None or absent = any)."""
        with self._lock:
            return sum(
                value
                for (n, t, f, extra), value in self._merged().items()
                if n == name
                and (target is None or t == target)
                and (flow is None or f == flow)
                and all(dict(extra).get(k) == v for k, v in labels.items())
            )

    def counters(self) -> list[tuple[str, str, str, dict[str, str], int]]:
        """Every counter as ``(name, target, flow, extra labels, value)``, sorted."""
        with self._lock:
            merged = sorted(self._merged().items())
        return [(n, t, f, dict(extra), v) for (n, t, f, extra), v in merged]

    def histograms(self) -> list[tuple[str, str, str, int, float, list[int]]]:
        """Every latency series as ``(name, target, flow, count, sum, per-bucket counts)``.

        The per-bucket counts are not cumulative; samples above the last bound are
        ``count - sum(buckets)``.
        """
        with self._lock:
            items = sorted((key, list(entry)) for key, entry in self._latency.items())
        return [(n, t, f, int(e[0]), e[1], [int(b) for b in e[3:]]) for (n, t, f), e in items]

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view: ``{"counters": [...], "latency": [...]}``."""
        counters = [
            {"name": n, "target": t, "flow": f, **extra, "value": v}
            for n, t, f, extra, v in self.counters()
        ]
        with self._lock:
            latency = [
                {
                    "name": n,
                    "target": t,
                    **({"flow": f} if f else {}),
                    "count": int(entry[0]),
                    "mean_ms": round(entry[1] / entry[0] * 1000, 3) if entry[0] else 0.0,
                    "max_ms": round(entry[2] * 1000, 3),
                }
                for (n, t, f), entry in sorted(self._latency.items())
            ]
        return {"counters": counters, "latency": latency}

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            baseline: defaultdict[_CodeKey, int] = defaultdict(int)
            for source in list(self._sources):
                for name, target, flow, value in source():
                    baseline[(name, target, flow, ())] += value
            self._baseline = dict(baseline)
            self._counters.clear()
            self._latency.clear()


try:
    from opentelemetry import trace as _trace
except ImportError:  # the otel extra is optional
    _tracer: Any = None
else:
    _tracer = _trace.get_tracer("authrelay")


_NO_SPAN: AbstractContextManager[Any] = nullcontext()


def span(name: str, **attributes: str) -> AbstractContextManager[Any]:
    """An OpenTelemetry span when a tracer provider is configured, else nothing.

    With ``opentelemetry-api`` alone (no SDK) the tracer is a no-op: the span is skipped
    rather than built and thrown away (a few µs on every downstream call).
    """
    if _tracer is None or isinstance(getattr(_tracer, "_tracer", _tracer), _trace.NoOpTracer):
        return _NO_SPAN
    return _otel_span(name, attributes)


@contextmanager
def _otel_span(name: str, attributes: dict[str, str]) -> Iterator[Any]:
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current
