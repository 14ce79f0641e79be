"""Output of a run: one text table, the JSON document, the PNG plot and docs/performance.md.

Defends against figures that cannot be compared or trusted later: the JSON keeps every
median with its spread and the machine it ran on; the table and the Markdown are made
from that JSON alone, so what is printed is what is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .report_more import extra_sections, growth_curves, prose, storm_rows

__all__ = ["markdown", "table", "write_json", "write_plot"]

DIRECT_ROWS = [
    ("bare", "1. bare Starlette app (floor)"),
    ("anonymous", "2. authrelay, anonymous, open route"),
    ("session", "3. authrelay, valid session cookie"),
    ("starlette_session", "   peer: Starlette SessionMiddleware"),
    ("authlib_peer", "   peer: Authlib + SessionMiddleware + BaseHTTPMiddleware"),
    ("bearer_rs256_repeat", "4. authrelay, bearer RS256, repeated (cache)"),
    ("bearer_es256_repeat", "4. authrelay, bearer ES256, repeated (cache)"),
    ("bearer_rs256_first", "4. authrelay, bearer RS256, first sight"),
    ("bearer_es256_first", "4. authrelay, bearer ES256, first sight"),
    ("header_route", "5. route awaiting authorization_header() (warm)"),
    ("downstream_authrelay", "6. downstream call through authrelay (warm)"),
    ("downstream_hardcoded", "   floor: same call, hard-coded header"),
    ("sidecar_route", "   peer: sidecar hop for the header"),
]
FLOOR_ROWS = [
    ("itsdangerous_unsign", "itsdangerous TimestampSigner.unsign"),
    ("crypto_verify_rs256", "cryptography RS256 verify (raw)"),
    ("crypto_verify_es256", "cryptography ES256 verify (raw)"),
    ("ttlcache_get", "cachetools TTLCache lookup"),
    ("bearer_cache_hit", "authrelay verified-token cache hit"),
    ("authorization_header", "authrelay authorization_header() (warm)"),
    ("sidecar_header", "sidecar GET /AuthorizationHeader (loopback)"),
]
WSGI_ROWS = [
    ("bare", "bare WSGI callable (floor)"),
    ("anonymous", "7. authrelay WSGI, anonymous"),
    ("flask", "bare Flask app"),
    ("flask_anonymous", "7. Flask + authrelay, anonymous"),
    ("flask_session", "7. Flask + authrelay, session cookie"),
    ("flask_bearer", "7. Flask + authrelay, bearer (cache)"),
    ("flask_header", "7. Flask + authrelay, authorization_header() (warm)"),
]
SERVER_ROWS = [
    ("bare", "1. bare Starlette"),
    ("bare_bearer_bytes", "   floor of T17: bare Starlette sent the bearer request's bytes"),
    ("anonymous", "2. authrelay anonymous"),
    ("session", "3. authrelay session cookie"),
    ("bearer", "4. authrelay bearer (cache)"),
    ("header", "5. authrelay authorization_header()"),
    ("authlib_peer", "peer: Authlib tutorial stack"),
    ("bare@httptools", "1. bare Starlette [httptools]"),
    ("bare_bearer_bytes@httptools", "   floor of T17h: the bearer request's bytes [httptools]"),
    ("anonymous@httptools", "2. authrelay anonymous [httptools]"),
    ("bearer@httptools", "4. authrelay bearer (cache) [httptools]"),
]


NOTES = {
    "T01": "What is left on the anonymous path is the header scan, one coroutine frame and "
    "the four documented scope writes: about 0.9 µs on a ~13-15 µs bare request. The ratio "
    "is taken in alternating rounds; a loaded machine can still tip it over the limit.",
    "T03": "Flask's own request handling is ~70 µs; authrelay's anonymous WSGI path adds "
    "well under a microsecond of it, so a miss here is noise (see the spread).",
    "T06": "After the fixes (one parse and one hash per token, keys extracted once with "
    "prebuilt padding and hash objects, validated headers remembered) fresh tokens cost "
    "~1.2x the floor in tight loops; the floor verifies one fixed signature in a loop, and "
    "Python code right after an OpenSSL verify runs 2-4x slower than in a tight loop "
    "(likely cache eviction; a hypothesis, not measured with counters). About 4 µs is the "
    "frozen Principal, Credentials and Resolution objects, which are public types.",
    "T11": "See 'The warm downstream call (T11)' below and the table of its parts: what "
    "authrelay adds is measured without the network; over loopback the floor itself swings "
    "by more than that between rounds.",
    "T15": "Not the single-flight (one token call, asserted). Traced with gc callbacks and the "
    "event loop's iterations: the leader's token request yields inside httpcore (anyio "
    "checkpoints) before it is written, so it goes out only after every other request's "
    "first step; while 999 requests sit suspended, their objects set off a full "
    "(generation 2) collection, which took 90-180 ms inside the cold storm and was most "
    "of the 251 ms the token call seemed to take there (55 ms alone). Whether that "
    "collection fell inside the cold storm depended on the allocation counts earlier "
    "work left, hence the 0.78-2.46 spread; each timed part now starts from a collected "
    "heap. Side by side on this machine (5 rounds each): 3.2-4.4 before, 1.31 and 1.65 "
    "after; with the collector off during both storms, 1.32. The rest is the cost of "
    "1,000 interleaved requests against 1,000 run one after another (the same calls, "
    "each slower under cProfile); httpx offers no way to write the token request before "
    "its first yield, so the token call cannot overlap the other requests' first steps.",
    "T17": "Profiled in the uvicorn process (cProfile, httptools, against the bare app sent "
    "the same bytes): authrelay's share per request is `AuthRelayMiddleware.__call__`, "
    "the b64token check, SHA-256 of the token (the cache key, IN-05), the cache hit and "
    "a `Services`, ~5-6 µs without the profiler; the bare server's own work is ~60-80 "
    "µs of CPU a request, so 0.95 leaves ~3.5 µs. The token is now encoded once for the "
    "check and the hash, and the Resolution is reused while the verdict is the same "
    "(lookup 3.3 -> 2.4 µs); an A/B of the server phase did not move T17h (0.86 -> "
    "0.87). Skipping the check and the hash would need a cache keyed by the raw token, "
    "which IN-05 forbids.",
    "T17h": "As T17: httptools makes the server's share smaller, so the same µs weigh more.",
}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _rows(figures: dict[str, Any]) -> list[tuple[str, list[list[str]]]]:
    sections: list[tuple[str, list[list[str]]]] = []
    direct = figures.get("direct", {})
    vs_bare = figures.get("ratios", {}).get("vs_bare", {})
    rows = [["scenario", "µs/request", "p25-p75", "x floor"]]
    for key, label in DIRECT_ROWS:
        if key in direct:
            d = direct[key]
            factor = 1.0 if key == "bare" else vs_bare.get(key, {}).get("median")
            rows.append([label, _fmt(d["median"]), f"{d['p25']:.1f}-{d['p75']:.1f}", _fmt(factor)])
    if len(rows) > 1:
        sections.append(("Direct ASGI calls (no server)", rows))
    rows = [["floor", "µs/call", "p25-p75", ""]]
    for key, label in FLOOR_ROWS:
        if key in direct:
            d = direct[key]
            rows.append([label, _fmt(d["median"], 3), f"{d['p25']:.2f}-{d['p75']:.2f}", ""])
    if len(rows) > 1:
        sections.append(("Floors named by the targets", rows))
    wsgi = figures.get("wsgi", {}).get("calls", {})
    rows = [["scenario", "µs/request", "p25-p75", "x floor"]]
    for key, label in WSGI_ROWS:
        if key in wsgi:
            d = wsgi[key]
            factor = figures["wsgi"].get("vs_floor", {}).get(key, {}).get("median")
            rows.append([label, _fmt(d["median"]), f"{d['p25']:.1f}-{d['p75']:.1f}", _fmt(factor)])
    if len(rows) > 1:
        sections.append(("WSGI direct calls", rows))
    server = figures.get("server", {}).get("rps", {})
    rows = [["scenario", "req/s", "p25-p75", "x floor"]]
    for key, label in SERVER_ROWS:
        if key in server:
            d = server[key]
            factor = figures["server"].get("vs_bare", {}).get(key, {}).get("median")
            rows.append(
                [label, _fmt(d["median"], 0), f"{d['p25']:.0f}-{d['p75']:.0f}", _fmt(factor)]
            )
    if len(rows) > 1:
        sections.append(("Throughput under uvicorn, 1 worker", rows))
    scale = figures.get("scale", {})
    rows = [["figure", "value", "", ""]]
    storm = scale.get("storm")
    if storm:
        rows += storm_rows(storm)
    for kind in ("token_cache", "bearer_cache"):
        for size, entry in (scale.get("memory", {}).get(kind) or {}).items():
            rows.append(
                [
                    f"{kind} at {size}: bytes/entry, lookup µs",
                    f"{entry['bytes_per_entry']:.0f}",
                    f"{entry['lookup_us']:.3f} µs",
                    "",
                ]
            )
    if len(rows) > 1:
        sections.append(("Scale", rows))
    redis_rows = _redis_rows(figures.get("redis", {}))
    if len(redis_rows) > 1:
        sections.append(("Several workers sharing Redis (issue #6)", redis_rows))
    sections += extra_sections(figures)
    rows = [["target", "measured (p25-p75)", "limit", "result"]]
    for t in figures.get("targets", []):
        spread = f" ({t['spread'][0]:.2f}-{t['spread'][1]:.2f})" if t.get("spread") else ""
        result = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        rows.append(
            [
                f"{t['id']} {t['text']}",
                _fmt(t["value"]) + spread,
                f"{t['op']} {t['limit']:g}",
                result,
            ]
        )
    sections.append(("Targets (issues #7 and 19)", rows))
    return sections


_PATHS = [
    ("warm", "Redis round trips per request: warm (in-process cache)"),
    ("worker_cold", "Redis round trips: first request in a worker, token in Redis"),
    ("cold", "Redis round trips: cold everywhere (token endpoint called)"),
]


_TOPOLOGY = {"cluster": "Redis Cluster", "sentinel": "Redis behind Sentinel"}


def _redis_rows(section: dict[str, Any]) -> list[list[str]]:
    rows = [["figure", "value", "p25-p75 / detail", "x 1 worker"]]
    servers = sorted(section.get("rps", {}).items(), key=lambda item: (len(item[0]), item[0]))
    for name, d in servers:
        workers, _, topology = name.partition(" ")
        factor = section.get("vs_one_worker", {}).get(name, {}).get("median")
        plural = "" if workers == "1" else "s"
        where = _TOPOLOGY.get(topology, "Redis")
        rows.append(
            [
                f"req/s, /header (warm), {workers} worker{plural} on {where}",
                _fmt(d["median"], 0),
                f"{d['p25']:.0f}-{d['p75']:.0f}",
                _fmt(factor),
            ]
        )
    if "token_calls_for_all_workers" in section:
        stores = section.get("stores_served", 1)
        rows.append(
            [
                f"token-endpoint calls for all workers of all servers ({stores} stores)",
                str(section["token_calls_for_all_workers"]),
                "one per store is the minimum",
                "",
            ]
        )
    groups = [("", section.get("round_trips", {}))] + [
        (f" [{_TOPOLOGY.get(name, name)}]", entry.get("round_trips", {}))
        for name, entry in sorted(section.get("topologies", {}).items())
    ]
    for suffix, trips in groups:
        for key, label in _PATHS:
            d = trips.get("per_request", {}).get(key)
            if d is not None:
                commands = trips.get("commands", {}).get(key, {})
                detail = ", ".join(f"{name} {n}" for name, n in sorted(commands.items())) or "none"
                rows.append([label + suffix, _fmt(d["median"], 1), f"sent: {detail}", ""])
    return rows


def _header(figures: dict[str, Any]) -> str:
    meta = figures["meta"]
    m = meta["machine"]
    kind = "quick run" if meta.get("quick") else "full run"
    return (
        f"{meta['started']} · {m['cpu']} · {m['cores']} cores · Python {m['python']} · "
        f"{kind} · {meta.get('seconds', 0):.0f} s · load before {m['load_before']}"
    )


def table(figures: dict[str, Any]) -> str:
    """The plain-text table printed at the end of a run."""
    out = ["authrelay benchmarks — " + _header(figures), ""]
    for title, rows in _rows(figures):
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out.append(title)
        for row in rows:
            out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        out.append("")
    for key in ("skipped", "errors"):
        for phase, why in figures.get(key, {}).items():
            out.append(f"{key[:-1] if key == 'errors' else 'skipped'}: {phase}: {why}")
    return "\n".join(out).rstrip() + "\n"


def markdown(figures: dict[str, Any]) -> str:
    """The "Performance" document: the same tables as Markdown, machine noted."""
    out = [
        "# Performance",
        "",
        "Generated by `make bench` (`python -m benchmarks`); do not edit by hand. Every",
        "figure is measured side by side in one run: variants interleaved in shuffled",
        "rounds, medians over rounds with the 25th-75th percentile spread, and each ratio",
        "taken within a round before its median. Raw figures: `benchmarks/results/latest.json`.",
        "",
        f"Machine: {_header(figures)}.",
        "",
        "![per-request overhead by scenario](../benchmarks/results/overhead.png)",
        "",
    ]
    for title, rows in _rows(figures):
        out.append(f"## {title}")
        out.append("")
        out.append("| " + " | ".join(rows[0]) + " |")
        out.append("|" + "---|" * len(rows[0]))
        for row in rows[1:]:
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        out.append("")
    for key in ("skipped", "errors"):
        items = figures.get(key, {})
        if items:
            out.append(f"## {'Skipped' if key == 'skipped' else 'Errors'}")
            out.append("")
            out.extend(f"- {phase}: {why}" for phase, why in items.items())
            out.append("")
    missed = [t for t in figures.get("targets", []) if t["met"] is False]
    if missed:
        out.append("## Targets not met: where the time goes")
        out.append("")
        for t in missed:
            note = NOTES.get(t["id"], "not profiled yet.")
            out.append(f"- **{t['id']}** ({t['text']}): {note}")
        out.append("")
    out.extend(prose(figures))
    out.append("## How to read these figures")
    out.append("")
    out.extend(
        [
            "- The machine is shared: `load before` in the header is the load average when",
            "  the run started. Absolute µs move with load; ratios taken within a round move",
            "  much less, which is why targets are judged on ratios.",
            "- Direct calls run the ASGI app with a scope and no server; throughput runs each",
            "  variant in its own uvicorn process (1 worker, asyncio loop; h11, and",
            "  httptools for the rows marked so) loaded by a raw asyncio keep-alive client",
            "  from this process. The WSGI servers close every connection (gunicorn's sync",
            "  worker, werkzeug), so their rows include a TCP connect per request.",
            "- Token-cache sizes and resident memory are measured each in a fresh process",
            "  (`VmRSS` before and after, after a garbage collection).",
            "- `cachetools.TTLCache.get` (the floor of T08/T09) takes its timer as a context",
            "  manager on every lookup, so it is several times a plain dict lookup.",
            "- First-sight bearer figures are request time minus the bare app, divided by",
            "  `cryptography`'s verify of the same signature with the key parsed once.",
            "- The storm and the downstream servers run in their own processes. Storm",
            "  latencies are each request's answer time since all of them arrived.",
            "- The sidecar peer (T12) is authrelay's own sidecar under uvicorn in its own",
            "  process, asked for the header over one keep-alive `httpx` connection.",
            "- Redis round trips are counted in the measuring process by wrapping redis-py's",
            "  `send_packed_command` (one send is one round trip; a pipeline is one send).",
            "  `sent:` lists the first command of every send during those requests, over",
            "  all users measured; connection set-up (`CLIENT`, `HELLO`) and the",
            "  invalidation listener (`SUBSCRIBE`, health-check `PING`) are not counted as",
            "  per-request round trips.",
            "- The multi-worker servers listen on a socket made with `IPPROTO_TCP` (see",
            "  `benchmarks/workers.py`): uvicorn's own `--workers` socket leaves `proto` 0,",
            "  so asyncio skips `TCP_NODELAY` and each response waits ~40 ms for a delayed ACK.",
            "",
        ]
    )
    return "\n".join(out)


def write_json(figures: dict[str, Any], path: Path) -> None:
    """Write the figures as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_plot(figures: dict[str, Any], path: Path) -> bool:
    """A PNG of per-request overhead over the bare app, by scenario; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    direct = figures.get("direct", {})
    if "bare" not in direct:
        return False
    floor = direct["bare"]["median"]
    labels, values, low, high = [], [], [], []
    for key, label in DIRECT_ROWS[1:]:
        if key in direct and not key.startswith("downstream"):
            d = direct[key]
            labels.append(label.strip())
            values.append(d["median"] - floor)
            low.append(d["median"] - d["p25"])
            high.append(d["p75"] - d["median"])
    curves = growth_curves(figures.get("growth", {}))
    height = 0.45 * len(labels) + 1.5
    if curves:
        fig, (ax, gx) = plt.subplots(
            1, 2, figsize=(15, max(height, 4.5)), gridspec_kw={"width_ratios": [3, 2]}
        )
        for name, points in curves.items():
            xs, ys = zip(*points, strict=True)
            gx.plot(xs, ys, marker="o", label=name)
        gx.set_xscale("log")
        gx.set_xlabel("services + connectors · JWKS keys · cached tokens")
        gx.set_ylabel("x the smallest size (median)")
        gx.set_title("cost as work grows")
        gx.axhline(1.0, color="black", linewidth=0.8)
        gx.legend(fontsize=8)
    else:
        fig, ax = plt.subplots(figsize=(9, height))
    ax.barh(range(len(labels)), values, xerr=[low, high], color="#4c72b0", capsize=3)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel(f"µs added per request over the bare Starlette app ({floor:.1f} µs), median")
    ax.set_title("authrelay per-request overhead by scenario (direct ASGI calls)")
    ax.axvline(0, color="black", linewidth=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
