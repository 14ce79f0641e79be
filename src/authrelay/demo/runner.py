"""Starts and stops the whole demo: two providers, two APIs and the example app.

Defends against a demo that half-starts: every port is bound before any server runs
(a taken port is reported with the flag that moves it), the settings file is validated
before the providers are built from it (the providers register exactly the clients,
secrets and redirect URIs the settings name, so the two cannot drift apart), and
:meth:`Demo.stop` shuts every server down and frees every port, whatever failed.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .._types import Clock
from ..errors import ConfigurationError
from ..relay import Relay
from ..settings import ConnectorSettings, Settings
from ..testing import IdentityProvider
from .app import DemoPage, build_app
from .providers import (
    CODEHOST_USERS,
    DEMO_USERS,
    DemoUser,
    codehost_app,
    make_provider,
    notes_api,
    notes_resource,
    repos_resource,
)
from .servers import Listener, PortTaken, ServerGroup, bind, close_all

__all__ = ["DEFAULT_CONFIG", "DEFAULT_PORTS", "Demo", "DemoPorts", "PortTaken", "load_settings"]

_EXAMPLE = Path("examples") / "demo" / "authrelay.toml"
_CHECKOUT = Path(__file__).resolve().parents[3] / _EXAMPLE
DEFAULT_CONFIG = _CHECKOUT if _CHECKOUT.is_file() else Path.cwd() / _EXAMPLE
"""``examples/demo/authrelay.toml`` of the source checkout (else of the current folder)."""
_ORIGIN = re.compile(r"http://127\.0\.0\.1:(\d+)\b")


@dataclass(frozen=True)
class DemoPorts:
    """Where each part listens (0 = any free port)."""

    app: int = 8000
    idp: int = 8001
    codehost: int = 8002
    notes: int = 8003


DEFAULT_PORTS = DemoPorts()
_ROLES = (
    ("app", "example app", "--app-port"),
    ("idp", "sign-in provider", "--idp-port"),
    ("codehost", "CodeHost provider", "--codehost-port"),
    ("notes", "notes API", "--notes-port"),
)


def load_settings(path: Path, origins: Mapping[int, str]) -> Settings:
    """Load ``path``, with each ``http://127.0.0.1:<default port>`` moved to ``origins``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such settings file") from None

    def move(match: re.Match[str]) -> str:
        return origins.get(int(match.group(1)), match.group(0))

    with tempfile.TemporaryDirectory(prefix="authrelay-demo-") as folder:
        moved = Path(folder) / path.name
        moved.write_text(_ORIGIN.sub(move, text), encoding="utf-8")
        return Settings.from_toml(moved)


def _connector(settings: Settings, name: str, expected_issuer: str) -> ConnectorSettings:
    connector = settings.connectors.get(name)
    if connector is None:
        raise ConfigurationError(f"connectors.{name}: the demo needs this connector")
    if connector.issuer != expected_issuer:
        raise ConfigurationError(
            f"connectors.{name}.issuer: the demo serves this provider at {expected_issuer}"
        )
    if connector.client_secret is None:
        raise ConfigurationError(f"connectors.{name}.client_secret: the demo needs one")
    return connector


class Demo:
    """The running demo; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        *,
        config: Path = DEFAULT_CONFIG,
        ports: DemoPorts = DEFAULT_PORTS,
        clock: Clock = time.time,
    ) -> None:
        self.config = config
        self.ports = ports
        self.clock = clock
        self.urls: dict[str, str] = {}
        self.users: tuple[DemoUser, ...] = DEMO_USERS
        self.relay: Relay | None = None
        self.providers: dict[str, IdentityProvider] = {}
        """``"idp"`` and ``"codehost"`` once started (tests mint tokens with them)."""
        self._servers = ServerGroup()

    def __repr__(self) -> str:
        return f"Demo(urls={self.urls!r})"

    @property
    def app_url(self) -> str:
        """Where the example app is served."""
        return self.urls["app"]

    def _bind_all(self) -> dict[str, Listener]:
        listeners: dict[str, Listener] = {}
        try:
            for key, role, flag in _ROLES:
                listeners[key] = bind(role, getattr(self.ports, key), flag)
        except PortTaken:
            close_all(list(listeners.values()))
            raise
        return listeners

    def start(self) -> None:
        """Bind the ports, build everything from the settings file, start the servers."""
        example_dir = self.config.resolve().parent
        if not (example_dir / "templates" / "home.html").is_file():
            raise ConfigurationError(
                f"{example_dir}: no templates/ next to the settings file; run the demo from "
                "a source checkout or pass --config examples/demo/authrelay.toml"
            )
        listeners = self._bind_all()
        try:
            self._start(listeners, example_dir)
        except BaseException:
            self._servers.stop()
            close_all(list(listeners.values()))
            raise

    def _start(self, listeners: Mapping[str, Listener], example_dir: Path) -> None:
        self.urls = {key: listener.url for key, listener in listeners.items()}
        origins = {getattr(DEFAULT_PORTS, key): url for key, url in self.urls.items()}
        settings = load_settings(self.config, origins)
        app_url = self.urls["app"]
        if settings.public_base_url != app_url:
            raise ConfigurationError(f"public_base_url: the demo serves the app at {app_url}")
        idp_settings = _connector(settings, "idp", self.urls["idp"])
        code_settings = _connector(settings, "codehost", self.urls["codehost"])
        idp = make_provider(
            issuer=self.urls["idp"],
            users=DEMO_USERS,
            client_id=idp_settings.client_id,
            client_secret=_secret(idp_settings),
            app_url=app_url,
            connector="idp",
            resource=notes_resource(),
            exchange=True,
        )
        codehost = make_provider(
            issuer=self.urls["codehost"],
            users=CODEHOST_USERS,
            client_id=code_settings.client_id,
            client_secret=_secret(code_settings),
            app_url=app_url,
            connector="codehost",
            resource=repos_resource(),
        )
        self.providers = {"idp": idp, "codehost": codehost}
        self.relay = Relay(settings, clock=self.clock)
        page = DemoPage(
            example_dir=example_dir,
            accounts=tuple((u.username, u.password) for u in DEMO_USERS),
            providers={"Demo ID": idp, "CodeHost": codehost},
        )
        self._servers.start(idp.app, listeners["idp"])
        self._servers.start(codehost_app(codehost), listeners["codehost"])
        self._servers.start(notes_api(idp.issuer), listeners["notes"])
        self._servers.start(build_app(self.relay, page), listeners["app"])

    def stop(self) -> None:
        """Stop every server and free every port."""
        self._servers.stop()

    def __enter__(self) -> Demo:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _secret(connector: ConnectorSettings) -> str:
    secret = connector.client_secret
    assert secret is not None  # checked by _connector
    return secret.get_secret_value()
