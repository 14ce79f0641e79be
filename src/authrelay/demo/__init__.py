"""``authrelay demo``: sign in and call services, on one machine, with nothing external.

Starts on 127.0.0.1 a sign-in provider with a login form (two users), a "CodeHost"
provider with a repositories API, a notes API that accepts only tokens for its audience
and scope, and an example app behind ``AuthRelayMiddleware`` configured from
``examples/demo/authrelay.toml``. Ctrl-C stops everything and frees the ports.
``--check`` runs the same flow headless and exits 0 (all good) or 1.

Everything listens on loopback only and uses demo secrets from the settings file; it
defends the machine it runs on by never binding another interface.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from ..errors import ConfigurationError
from .check import run_check
from .runner import DEFAULT_CONFIG, DEFAULT_PORTS, Demo, DemoPorts, PortTaken

__all__ = ["Demo", "DemoPorts", "demo_main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authrelay demo",
        description="Run the authrelay demo: providers, APIs and an app on 127.0.0.1.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="settings file")
    parser.add_argument("--app-port", type=int, default=DEFAULT_PORTS.app)
    parser.add_argument("--idp-port", type=int, default=DEFAULT_PORTS.idp)
    parser.add_argument("--codehost-port", type=int, default=DEFAULT_PORTS.codehost)
    parser.add_argument("--notes-port", type=int, default=DEFAULT_PORTS.notes)
    parser.add_argument(
        "--check", action="store_true", help="run the flow headless and exit 0 (ok) or 1"
    )
    return parser


def _banner(demo: Demo, out: TextIO) -> None:
    users = ", ".join(f"{u.username} / {u.password}" for u in demo.users)
    out.write(
        f"\nauthrelay demo is running: open {demo.app_url}\n\n"
        f"  sign-in provider   {demo.urls['idp']}\n"
        f"  CodeHost           {demo.urls['codehost']} (API under /api)\n"
        f"  notes API          {demo.urls['notes']}\n\n"
        "What to try:\n"
        f"  1. Sign in with Demo ID as {users}: your profile and notes appear.\n"
        "  2. Press Connect CodeHost and sign in there: your repositories appear.\n"
        "  3. Reload: the status panel shows no new token-endpoint call (cache hit).\n"
        "  4. Wait 2 minutes: the next call refreshes the token, once.\n"
        "  5. Sign out, or open a private window and sign in as the other user.\n"
        f"  Counters: {demo.app_url}/auth/stats\n\n"
        "Press Ctrl-C to stop.\n"
    )
    out.flush()


def _wait_for_interrupt() -> None:
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        return


def demo_main(argv: Sequence[str] | None = None) -> int:
    """Run the demo (``authrelay demo``); returns the process exit code."""
    args = _parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    ports = DemoPorts(args.app_port, args.idp_port, args.codehost_port, args.notes_port)
    demo = Demo(config=args.config, ports=ports)
    if not args.check:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("authrelay").setLevel(logging.INFO)  # sign-ins, links, refreshes
    try:
        demo.start()
    except PortTaken as exc:
        err.write(f"authrelay demo: {exc}\n")
        return 2
    except ConfigurationError as exc:
        err.write(f"authrelay demo: {args.config}: invalid\n")
        for problem in exc.problems:
            err.write(f"  {problem}\n")
        return 2
    try:
        if args.check:
            out.write(f"authrelay demo --check against {demo.app_url}\n")
            passed = run_check(demo.app_url, out)
            out.write("all steps passed\n" if passed else "the demo check failed\n")
            return 0 if passed else 1
        _banner(demo, out)
        _wait_for_interrupt()
        out.write("\nstopping the demo…\n")
        return 0
    finally:
        demo.stop()
