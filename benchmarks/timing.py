"""Side-by-side timing: variants interleaved in one run, medians and spread, ratios per round.

Defends against the usual ways a benchmark lies on a shared, noisy 2-core machine:
variants measured minutes apart (each round runs every variant once, in a shuffled
order), a single unlucky batch deciding the figure (medians over rounds, with the
interquartile spread reported), and ratios of medians hiding that two variants were
measured under different load (a ratio is taken within each round, then its median).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Series", "alternate_async", "interleave_async", "interleave_sync", "ratio", "summary"]


@dataclass(frozen=True)
class Series:
    """Per-round values of one variant (µs per call, or any unit; one value per round)."""

    name: str
    values: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median over rounds."""
        return statistics.median(self.values)

    @property
    def spread(self) -> tuple[float, float]:
        """25th and 75th percentiles over rounds."""
        return _quartiles(self.values)


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0])
    q = statistics.quantiles(values, n=4, method="inclusive")
    return (q[0], q[2])


def summary(values: Sequence[float]) -> dict[str, float]:
    """``{"median", "p25", "p75"}`` of some values."""
    low, high = _quartiles(values)
    return {"median": statistics.median(values), "p25": low, "p75": high}


def ratio(
    numerator: Series,
    denominator: Series,
    *,
    minus: Series | None = None,
) -> dict[str, float]:
    """Per-round ratio ``(numerator - minus) / denominator``, summarised over rounds.

    ``minus`` turns a whole-request time into an added cost (e.g. a request through the
    middleware minus the same request to the bare app).
    """
    rounds = min(len(numerator.values), len(denominator.values))
    values = []
    for i in range(rounds):
        top = numerator.values[i] - (minus.values[i] if minus is not None else 0.0)
        values.append(top / denominator.values[i])
    return summary(values)


def interleave_sync(
    variants: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    inner: int,
    warmup: int = 1,
    seed: int = 7,
) -> dict[str, Series]:
    """Time ``inner`` calls of each variant per round, variants shuffled every round.

    Returns µs per call for each round. ``warmup`` rounds run first and are discarded.
    """
    rng = random.Random(seed)
    names = list(variants)
    results: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for index in range(warmup + rounds):
        rng.shuffle(names)
        for name in names:
            fn = variants[name]
            start = clock()
            for _ in range(inner):
                fn()
            elapsed = clock() - start
            if index >= warmup:
                results[name].append(elapsed / inner / 1000.0)
    return {name: Series(name, tuple(values)) for name, values in results.items()}


async def interleave_async(
    variants: Mapping[str, Callable[[], Awaitable[object]]],
    *,
    rounds: int,
    inner: int,
    warmup: int = 1,
    seed: int = 7,
    sync_variants: Mapping[str, Callable[[], object]] | None = None,
    sync_inner: int | None = None,
) -> dict[str, Series]:
    """:func:`interleave_sync` for coroutine functions, in the running event loop.

    ``sync_variants`` (plain callables, e.g. the micro floors) are shuffled into the same
    rounds, so a ratio between an ASGI request and a floor is taken side by side; they
    run ``sync_inner`` calls per round (default ``inner``).
    """
    rng = random.Random(seed)
    plain = dict(sync_variants or {})
    names = [*variants, *plain]
    results: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    plain_inner = sync_inner or inner
    for index in range(warmup + rounds):
        rng.shuffle(names)
        for name in names:
            if name in plain:
                fn = plain[name]
                start = clock()
                for _ in range(plain_inner):
                    fn()
                elapsed = clock() - start
                count = plain_inner
            else:
                afn = variants[name]
                start = clock()
                for _ in range(inner):
                    await afn()
                elapsed = clock() - start
                count = inner
            if index >= warmup:
                results[name].append(elapsed / count / 1000.0)
    return {name: Series(name, tuple(values)) for name, values in results.items()}


async def alternate_async(
    floor: Callable[[], Awaitable[object]],
    subject: Callable[[], Awaitable[object]],
    *,
    rounds: int,
    inner: int,
    warmup: int = 1,
) -> tuple[Series, Series]:
    """A floor and a subject in alternating ABBA rounds, for a ratio close to 1.

    Each round runs ``inner // 2`` calls of the floor, then of the subject, then the subject
    again and the floor again, so a load change that drifts steadily through the round
    weighs on both alike. Returns µs per call (floor, subject), one value per round.
    """
    half = max(1, inner // 2)
    clock = time.perf_counter_ns
    values: tuple[list[float], list[float]] = ([], [])
    for index in range(warmup + rounds):
        spent = [0, 0]
        for which in (0, 1, 1, 0):
            fn = subject if which else floor
            start = clock()
            for _ in range(half):
                await fn()
            spent[which] += clock() - start
        if index >= warmup:
            for which in (0, 1):
                values[which].append(spent[which] / (2 * half) / 1000.0)
    return Series("floor", tuple(values[0])), Series("subject", tuple(values[1]))
