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
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

__all__ = ["LazyCounters", "RedactingFilter", "Stats", "install_redaction", "span"]

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


class Stats:
    """Thread-safe counters and latency sums, labelled by service/connector and flow.

    Hot paths that must not take a lock (a warm token-cache hit) keep a plain integer of
    their own and :meth:`register` a source that reports it; such counters are folded
    in when the stats are read. They may miss an increment under heavy thread contention
    (an unlocked ``+=``), which a counter meant for dashboards can afford.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: defaultdict[tuple[str, str], list[float]] = defaultdict(
            lambda: [0, 0.0, 0.0]
        )
        self._sources: list[LazyCounters] = []
        self._baseline: dict[tuple[str, str, str], int] = {}

    def register(self, source: LazyCounters) -> None:
        """Fold the counters ``source()`` reports into every read (:meth:`snapshot`, ...)."""
        with self._lock:
            if source not in self._sources:
                self._sources.append(source)

    def _lazy(self) -> dict[tuple[str, str, str], int]:
        found: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        for source in list(self._sources):
            for name, target, flow, value in source():
                found[(name, target, flow)] += value
        return {
            labels: value - self._baseline.get(labels, 0)
            for labels, value in found.items()
            if value - self._baseline.get(labels, 0)
        }

    def _merged(self) -> dict[tuple[str, str, str], int]:
        merged = dict(self._counters)
        for labels, value in self._lazy().items():
            merged[labels] = merged.get(labels, 0) + value
        return merged

    def incr(self, name: str, *, target: str = "", flow: str = "", by: int = 1) -> None:
        """Add ``by`` to counter ``name`` for ``target`` (a service or connector) and ``flow``."""
        with self._lock:
            self._counters[(name, target, flow)] += by

    def observe(self, name: str, seconds: float, *, target: str = "") -> None:
        """Record one latency sample."""
        with self._lock:
            entry = self._latency[(name, target)]
            entry[0] += 1
            entry[1] += seconds
            entry[2] = max(entry[2], seconds)

    def count(self, name: str, *, target: str | None = None, flow: str | None = None) -> int:
        """Sum of counter ``name`` over matching labels (None = any)."""
        with self._lock:
            return sum(
                value
                for (n, t, f), value in self._merged().items()
                if n == name and (target is None or t == target) and (flow is None or f == flow)
            )

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view: ``{"counters": [...], "latency": [...]}``."""
        with self._lock:
            counters = [
                {"name": n, "target": t, "flow": f, "value": v}
                for (n, t, f), v in sorted(self._merged().items())
            ]
            latency = [
                {
                    "name": n,
                    "target": t,
                    "count": int(c),
                    "mean_ms": round(total / c * 1000, 3) if c else 0.0,
                    "max_ms": round(peak * 1000, 3),
                }
                for (n, t), (c, total, peak) in sorted(self._latency.items())
            ]
        return {"counters": counters, "latency": latency}

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            baseline: defaultdict[tuple[str, str, str], int] = defaultdict(int)
            for source in list(self._sources):
                for name, target, flow, value in source():
                    baseline[(name, target, flow)] += value
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
