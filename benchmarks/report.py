"""Output of a run: one text table, the JSON document, the PNG plot and docs/performance.md.

Defends against figures that cannot be compared or trusted later: the JSON keeps every
median with its spread and the machine it ran on; the table and the Markdown are made
from that JSON alone, so what is printed is what is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    ("anonymous", "2. authrelay anonymous"),
    ("session", "3. authrelay session cookie"),
    ("bearer", "4. authrelay bearer (cache)"),
    ("header", "5. authrelay authorization_header()"),
    ("authlib_peer", "peer: Authlib tutorial stack"),
]


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
        rows.append(
            [f"storm of {storm['size']}: token-endpoint calls", str(storm["token_calls"]), "", ""]
        )
        rows.append(
            [
                "storm: p50 / p99 latency (ms)",
                f"{storm['p50_ms']:.1f} / {storm['p99_ms']:.1f}",
                "",
                "",
            ]
        )
        rows.append(
            [
                "storm: wall / one cold request",
                _fmt(storm["wall_vs_one"]),
                f"{storm['wall_ms']:.0f} ms / {storm['one_ms']:.0f} ms",
                "",
            ]
        )
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
    sections.append(("Targets (issue #7)", rows))
    return sections


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
    notes = figures.get("notes")
    if notes:
        out.append("## Notes on the targets not met")
        out.append("")
        out.extend(f"- {note}" for note in notes)
        out.append("")
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
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(labels) + 1.5))
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
