"""Collect and evaluate the code blocks of README.md and docs/*.md with Sybil.

Every fenced ``python`` and ``toml`` block is an example, named ``path:line``.

Python blocks run in their document's namespace (blocks of one page build on each
other, as a reader would paste them), prepared with what a fragment may assume
(:func:`prepare_namespace`). After a block runs, each ``test_*`` function it defined
whose arguments are all test-provider fixtures (at least one) is called with real ones, and an ASGI
``app`` it defined answers a request without credentials on each of its routes (no
5xx). ``<!-- invisible-code-block: python -->`` comments may hold extra setup.

TOML blocks are settings: ``${VAR}`` gets a dummy value of the right shape. A block
with ``secret_keys`` is a whole settings file and is loaded with ``Settings.from_toml``;
any other block is a fragment, validated merged into :data:`BASE`. Either way a Relay is
then built from it (with a memory store), so the rules checked at start apply too. A block whose first
line names another file (``# pyproject.toml``) is only parsed.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sybil import Document, Example
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from authrelay import Relay, Settings
from authrelay.errors import ConfigurationError
from authrelay.testing import IdentityProvider, serve_identity_provider
from authrelay.testing.pytest_plugin import TEST_ISSUER, default_provider_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = "docs-tests-secret-key-0123456789abcdef"
VAR = re.compile(r"\$\{(\w+)\}")
OTHER_FILE = re.compile(r"\A#\s*([\w./-]+\.toml)\b")

BASE: dict[str, Any] = {
    "secret_keys": [SECRET],
    "public_base_url": "https://app.example",
    "bearer": {"issuer": "https://idp.example.com", "audience": "api://my-app"},
    "client": {"client_id": "my-app", "client_secret": "dummy-client-secret"},
}
"""What a settings fragment is merged into before it is validated."""

MINIMAL_TOML = f'secret_keys = ["{SECRET}"]\npublic_base_url = "https://app.example"\n'


def documents() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


_PEM: list[str] = []


def dummy_value(name: str) -> str:
    """A stand-in for ``${name}``: a PEM key, an https URL, or a 32+ byte string."""
    if re.search(r"PRIVATE_KEY|CLIENT_KEY|KEY_PEM", name):
        if not _PEM:
            _PEM.append(_private_key_pem())
        return _PEM[0]
    if re.search(r"URL|URI|ISSUER|ENDPOINT", name):
        return f"https://{name.lower().replace('_', '-')}.example"
    return f"dummy-{name.lower().replace('_', '-')}-0123456789abcdef0123456789"


def dummy_env(text: str) -> dict[str, str]:
    """Values for every ``${VAR}`` in ``text``."""
    return {name: dummy_value(name) for name in VAR.findall(text)}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _fill(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        return VAR.sub(lambda match: env[match.group(1)], value)
    if isinstance(value, dict):
        return {key: _fill(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, env) for item in value]
    return value


def where(example: Example) -> str:
    """``path:line`` of an example, relative to the project root."""
    return f"{Path(example.path).relative_to(ROOT)}:{example.line}"


def _names_other_file(source: str) -> bool:
    named = OTHER_FILE.match(source)
    return named is not None and not named.group(1).endswith("authrelay.toml")


def is_settings_file(source: str) -> bool:
    """A TOML block that is a whole authrelay settings file (it sets ``secret_keys``)."""
    if _names_other_file(source):
        return False
    try:
        return "secret_keys" in tomllib.loads(source)
    except tomllib.TOMLDecodeError:
        return False


def check_toml(example: Example) -> None:
    """Parse a TOML block; validate it as settings (whole, or merged into BASE)."""
    source = str(example.parsed)
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise AssertionError(f"{where(example)}: not valid TOML: {exc}") from None
    if _names_other_file(source):
        return
    env = dummy_env(source)
    try:
        if "secret_keys" in data:
            settings_file = Path(example.namespace["__docs_dir__"]) / f"block-{example.line}.toml"
            settings_file.write_text(source, encoding="utf-8")
            settings = Settings.from_toml(settings_file, env=env)
        else:
            settings = Settings.model_validate(_merge(BASE, _fill(data, env)))
        # the rules a Relay checks at start, with a memory store: no file, socket or provider
        store = settings.store.model_copy(update={"url": "memory://", "replica_acks": 0})
        Relay(settings.model_copy(update={"store": store})).close()
    except ConfigurationError as exc:
        problems = "\n  ".join(exc.problems)
        raise AssertionError(f"{where(example)}: invalid settings:\n  {problems}") from None


# Python blocks --------------------------------------------------------------------------


def _provider(**overrides: Any) -> IdentityProvider:
    return IdentityProvider(**{"issuer": TEST_ISSUER, **default_provider_config(), **overrides})


@contextmanager
def _served_provider() -> Iterator[IdentityProvider]:
    idp = _provider(issuer=None)
    with serve_identity_provider(idp):
        yield idp


FIXTURES: dict[str, Callable[[ExitStack], Any]] = {
    "identity_provider": lambda stack: _provider(),
    "make_identity_provider": lambda stack: _provider,
    "identity_provider_server": lambda stack: stack.enter_context(_served_provider()),
}
"""The authrelay pytest fixtures a documented test function may ask for."""


def _call_tests(defined: dict[str, Any]) -> None:
    for name, function in defined.items():
        if not (name.startswith("test_") and inspect.isfunction(function)):
            continue
        parameters = list(inspect.signature(function).parameters)
        if not parameters or not all(parameter in FIXTURES for parameter in parameters):
            continue  # a test of something else (Redis...): defined, not run
        with ExitStack() as stack:
            result = function(**{p: FIXTURES[p](stack) for p in parameters})
            if inspect.iscoroutine(result):
                asyncio.run(result)


def _request_each_route(app: Any) -> None:
    from starlette.testclient import TestClient

    paths = [
        route.path for route in getattr(app, "routes", ()) if "{" not in getattr(route, "path", "{")
    ]
    with TestClient(app, raise_server_exceptions=True) as client:
        for path in paths:
            response = client.get(path, headers={"Accept": "application/json"})
            assert response.status_code < 500, (path, response.status_code, response.text)


def run_python(example: Example) -> None:
    """Run a Python block, then its test functions and its app (see the module docstring)."""
    __tracebackhide__ = True
    before = dict(example.namespace)
    PythonEvaluator()(example)
    defined = {
        name: value
        for name, value in example.namespace.items()
        if before.get(name, _MISSING) is not value
    }
    _call_tests(defined)
    app = defined.get("app")
    if callable(app) and inspect.iscoroutinefunction(type(app).__call__):
        _request_each_route(app)


_MISSING = object()

PARSERS = [
    CodeBlockParser(language="python", evaluator=run_python),
    CodeBlockParser(language="py", evaluator=run_python),
    CodeBlockParser(language="toml", evaluator=check_toml),
    SkipParser(),
]


def parse(path: Path) -> Document:
    """The document with its examples, in order."""
    return Document.parse(str(path), *PARSERS)


NETWORK_STORE = re.compile(r'^(url\s*=\s*)"rediss?(\+\w+)?://[^"]*"', re.MULTILINE)


def settings_toml(document: Document) -> str:
    """The page's first whole settings file, or a minimal one: the ``authrelay.toml``.

    A Redis store becomes ``memory://``: a page's example host is no place to connect to.
    """
    for example in document.examples():
        if example.region.evaluator is check_toml and is_settings_file(str(example.parsed)):
            return NETWORK_STORE.sub(r'\1"memory://"', str(example.parsed))
    return MINIMAL_TOML


def fake_module(name: str, **attributes: Any) -> types.ModuleType:
    """A module a snippet refers to by import path (``"myapp.users:on_sign_in"``)."""
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module
