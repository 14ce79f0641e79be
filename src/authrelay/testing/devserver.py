"""``authrelay idp``: serve the test identity provider for local development.

It is the provider of the pytest fixtures (the same clients, users and resources), on a
fixed port so that an app's settings can name it: ``http://127.0.0.1:9000`` by default.
Its credentials are printed because they are test credentials, not secrets; it binds
127.0.0.1 unless told otherwise.

Defends against: a port that is taken (a clear message, exit 1, instead of a traceback),
and exposing test credentials by accident (loopback by default, a warning otherwise).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from collections.abc import Sequence
from typing import TextIO

from .models import OAuthClient
from .provider import IdentityProvider
from .transports import transport_binding_protocol

__all__ = ["describe", "idp_main"]

DEFAULT_PORT = 9000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authrelay idp",
        description=(
            "Serve authrelay's test identity provider (OAuth 2.0 and OpenID Connect) for "
            "local development. Its clients, users and keys are test values: never use it "
            "in production."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT}; 0 = any free)"
    )
    parser.add_argument(
        "--login-form",
        action="store_true",
        help="ask for a username and password at sign-in instead of signing in alice",
    )
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _client_line(client: OAuthClient) -> str:
    secret = f"secret {client.client_secret}" if client.client_secret else "public (PKCE)"
    grants = ", ".join(grant.rsplit(":", 1)[-1] for grant in client.grant_types)
    return f"  {client.client_id}: {secret}; grants {grants}"


def describe(idp: IdentityProvider, out: TextIO) -> None:
    """Write the provider's issuer, clients, users and resources to ``out``."""
    out.write(f"issuer: {idp.issuer}\n")
    out.write(f"discovery: {idp.issuer}/.well-known/openid-configuration\n")
    out.write("clients:\n")
    for client in idp.clients.values():
        out.write(_client_line(client) + "\n")
    out.write("users (username / password):\n")
    for user in idp.users.values():
        note = " (signed in without a form)" if idp.auto_approve == user.sub else ""
        out.write(f"  {user.username} / {user.password}: {user.name or user.sub}{note}\n")
    out.write("resources (audience: scopes):\n")
    for resource in idp.resources.values():
        out.write(f"  {resource.identifier}: {' '.join(resource.scopes)}\n")


def _announce(idp: IdentityProvider, host: str) -> None:
    out = sys.stdout
    out.write("authrelay idp: a test identity provider, for local development only\n")
    if not _is_loopback(host):
        out.write(f"warning: listening on {host}, not loopback; its credentials are public\n")
    describe(idp, out)
    out.write("Ctrl-C stops it.\n")
    out.flush()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def idp_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``authrelay idp``: serve until interrupted."""
    import uvicorn

    from .pytest_plugin import default_provider_config

    args = _parser().parse_args(argv)
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        sys.stderr.write(
            f"authrelay idp: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
            "pick another port with --port <port> (0 = any free port)\n"
        )
        return 1
    port = sock.getsockname()[1]
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    config = default_provider_config()
    if args.login_form:
        config.update(login_form=True, auto_approve=None)
    idp = IdentityProvider(issuer=f"http://{shown_host}:{port}", **config)
    server_config = uvicorn.Config(idp.app, log_level="warning", http=transport_binding_protocol())
    server_config.load()  # imports done before the listing says it is ready
    try:
        _announce(idp, args.host)
        uvicorn.Server(server_config).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C before uvicorn took over the signal
        pass
    finally:
        sock.close()
    return 0
