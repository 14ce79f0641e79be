"""``python -m benchmarks [--quick] [--phases ...] [--out DIR] [--no-docs]``.

Prints one table, writes ``results/latest.json`` and ``results/overhead.png`` and, for a
full run, ``docs/performance.md`` and the README's table (between its bench markers).
A quick run writes ``results/quick.json`` only, so a smoke run never replaces the
published figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .report import markdown, table, write_json, write_plot
from .report_more import splice_readme
from .run import Config, run

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "performance.md"
README = HERE.parent / "README.md"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (1 when a phase failed)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run, small counts")
    parser.add_argument(
        "--phases",
        default=None,
        help="comma-separated subset of: direct,services,wsgi,wsgi_servers,server,scale,"
        "growth,redis",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    args = parser.parse_args(argv)
    config = Config.quick_config() if args.quick else Config()
    if args.phases:
        phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
        config = Config(**{**config.__dict__, "phases": phases})

    def progress(message: str) -> None:
        print(f"… {message}", file=sys.stderr, flush=True)

    figures = run(config, progress=progress)
    print(table(figures), end="")
    name = "quick.json" if args.quick else "latest.json"
    write_json(figures, args.out / name)
    if not args.quick:
        write_plot(figures, args.out / "overhead.png")
        if not args.no_docs and args.phases is None:
            DOCS.parent.mkdir(parents=True, exist_ok=True)
            DOCS.write_text(markdown(figures), encoding="utf-8")
            if README.exists():
                text = README.read_text(encoding="utf-8")
                README.write_text(splice_readme(text, figures), encoding="utf-8")
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
