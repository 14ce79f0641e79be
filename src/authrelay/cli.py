"""The ``authrelay`` command: ``check`` a settings file, run the ``sidecar``, the ``demo``
or a local test identity provider (``idp``)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from .errors import ConfigurationError
from .settings import Settings

__all__ = ["main"]


def _check(path: str) -> int:
    """Load the file and run every start-up rule of the app, offline (no store, no IdP)."""
    from .relay import check_startup

    try:
        settings = Settings.from_toml(path)
        check_startup(settings)
    except ConfigurationError as exc:
        sys.stderr.write(f"{path}: invalid\n")
        for problem in exc.problems:
            sys.stderr.write(f"  {problem}\n")
        return 1
    out = sys.stdout
    out.write(f"{path}: valid\n")
    if settings.bearer is not None:
        audiences = ", ".join(settings.bearer.audience)
        out.write(f"bearer: issuer {settings.bearer.issuer} (audience {audiences})\n")
    out.write(f"store: {settings.store.url.split('://', 1)[0]}\n")
    out.write(f"connectors ({len(settings.connectors)}):\n")
    for name, connector in settings.connectors.items():
        kind = connector.preset or connector.standard
        out.write(f"  {name}: {kind} (client {connector.client_id})\n")
    out.write(f"services ({len(settings.services)}):\n")
    for name, service in settings.services.items():
        extra = f" via connector {service.connector}" if service.connector else ""
        actor = f" as agent {service.actor}" if service.actor else ""
        out.write(f"  {name}: {service.flow}{extra}{actor} -> {service.base_url}\n")
    return 0


_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`")


def plain(text: str) -> str:
    """Docstring text as terminal text: reST roles and double backticks removed."""
    return _ROLE.sub(r"\1", text).replace("``", "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``authrelay`` console script."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="authrelay", description=plain(__doc__ or ""))
    parser.add_argument("--version", action="version", version=f"authrelay {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a settings file and list what it defines")
    check.add_argument("path")
    commands.add_parser("sidecar", help="run the Entra-compatible sidecar", add_help=False)
    commands.add_parser("demo", help="run the demo with a local identity provider", add_help=False)
    commands.add_parser(
        "idp", help="serve a test identity provider for local development", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "check":
        if rest:
            parser.error(f"unexpected arguments: {' '.join(rest)}")
        return _check(args.path)
    if args.command == "sidecar":
        from .sidecar import sidecar_main

        return sidecar_main(rest)
    if args.command == "idp":
        from .testing.devserver import idp_main

        return idp_main(rest)
    from .demo import demo_main

    return demo_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
