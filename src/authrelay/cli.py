"""The ``authrelay`` command: ``check`` a settings file, run the ``sidecar``, the ``demo``
or a local test identity provider (``idp``)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from .errors import ConfigurationError
from .settings import Settings

if TYPE_CHECKING:
    from .declare import RouteDeclaration

__all__ = ["main"]


def _check(path: str, app: str | None = None) -> int:
    """Load the file and run every start-up rule of the app, offline (no store, no IdP).

    With ``app`` (``module:attribute``), also import the app and check the services its
    routes declare against the file, then list its routes.
    """
    from .declare import check_routes, collect
    from .relay import check_startup

    routes = None
    try:
        # The app first: importing it may set the variables the file refers to.
        routes = None if app is None else collect(_load_app(app))
        settings = Settings.from_toml(path)
        check_startup(settings)
        if routes is not None:
            check_routes(routes, settings.services)
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
    if routes is not None:
        _route_table(out, routes)
    return 0


def _load_app(reference: str) -> object:
    """The object ``module:attribute`` names, imported with the current directory on the path."""
    import importlib
    import os

    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"--app {reference}: expected module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"--app {reference}: cannot load it ({exc})") from None
    return target


def _route_table(out: TextIO, routes: list[RouteDeclaration]) -> None:
    rows = [("METHODS", "PATH", "SERVICES", "SCOPES")]
    for route in routes:
        rows.append(
            (
                ",".join(route.methods),
                route.path,
                ", ".join(route.services) or "-",
                " ".join(route.scopes) or "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    out.write(f"routes ({len(routes)}):\n")
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  " + "  ".join((*cells, row[3])).rstrip() + "\n")


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
    check.add_argument(
        "--app",
        metavar="MODULE:APP",
        help="also import the app and list its routes with the services and scopes they declare",
    )
    commands.add_parser("sidecar", help="run the Entra-compatible sidecar", add_help=False)
    commands.add_parser("demo", help="run the demo with a local identity provider", add_help=False)
    commands.add_parser(
        "idp", help="serve a test identity provider for local development", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "check":
        if rest:
            parser.error(f"unexpected arguments: {' '.join(rest)}")
        return _check(args.path, args.app)
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
