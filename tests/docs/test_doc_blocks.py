"""Every Python and TOML block of README.md and docs/*.md works when copied.

Each block is one test, named ``path:line`` (see ``doc_blocks`` for what runs and how).
The blocks of a page share one namespace, run in page order; a block selected alone
(``-k``) first runs the Python blocks (and skip directives) above it. A block that
cannot run as copied is fixed, not skipped; ``<!-- skip: next "reason" -->`` (Sybil)
exists for the rare block that must not run, and shows as skipped. The namespace starts with what a
fragment may assume:

- ``settings``: the page's first whole settings file (or a minimal one), which is also
  ``authrelay.toml`` in the working directory (a temporary one per page), its ``${VAR}``s
  set to dummy values in the environment;
- ``idp``: a test identity provider served on 127.0.0.1;
- ``middleware``: an ``AuthRelayMiddleware`` built from ``settings``; ``flask_app``: a Flask
  app; ``build_my_app(issuer=..., audience=...)``: an ASGI app whose ``GET /orders``
  needs a bearer token with ``orders.read``; ``os`` and ``Settings``;
- the module ``myapp.users`` with an ``on_sign_in`` hook (for ``"myapp.users:on_sign_in"``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from doc_blocks import (
    check_toml,
    dummy_env,
    fake_module,
    parse,
    settings_toml,
    where,
)
from doc_blocks import documents as _documents
from sybil import Document, Example

from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay.testing import IdentityProvider, serve_identity_provider
from authrelay.testing.pytest_plugin import default_provider_config

DOCUMENTS = {path: parse(path) for path in _documents()}
BLOCKS = [
    (path, index)
    for path, document in DOCUMENTS.items()
    for index, example in enumerate(document.examples())
    if example.region.evaluator is not None
]


@dataclass
class Page:
    """One document's examples, namespace and working directory."""

    document: Document
    directory: Path
    examples: list[Example]
    done: set[int] = field(default_factory=set)


class Pages:
    """The pages of this run, each prepared when its first block runs."""

    def __init__(self, root: Path, idp: IdentityProvider) -> None:
        self.root = root
        self.idp = idp
        self.pages: dict[Path, Page] = {}
        self.relays: list[Relay] = []

    def build_my_app(self, *, issuer: str, audience: str) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from authrelay.starlette import get_principal, requires

        @requires("orders.read")
        async def orders(request: Request) -> JSONResponse:
            return JSONResponse({"caller": get_principal(request).subject})

        settings = {
            "secret_keys": [os.environ["AUTHRELAY_SECRET"]],
            "http": {"allow_insecure_loopback": True},
            "bearer": {"issuer": issuer, "audience": audience},
        }
        relay = Relay(Settings.model_validate(settings))
        self.relays.append(relay)
        return AuthRelayMiddleware(Starlette(routes=[Route("/orders", orders)]), relay=relay)

    def page(self, path: Path) -> Page:
        if path in self.pages:
            return self.pages[path]
        document = DOCUMENTS[path]
        directory = self.root / path.stem
        directory.mkdir()
        (directory / "authrelay.toml").write_text(settings_toml(document), encoding="utf-8")
        page = Page(document, directory, list(document.examples()))
        self.pages[path] = page
        return page

    def prepare(self, page: Page) -> None:
        """Fill the namespace (in the page's directory, where relative paths land)."""
        import flask
        from starlette.applications import Starlette

        settings = Settings.from_toml(page.directory / "authrelay.toml")
        relay = Relay(settings)
        self.relays.append(relay)

        async def empty_app(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("the prepared middleware's app is not meant to be called")

        page.document.namespace.update(
            os=os,
            Settings=Settings,
            settings=settings,
            relay=relay,
            app=Starlette(),
            idp=self.idp,
            middleware=AuthRelayMiddleware(empty_app, relay=relay),
            flask_app=flask.Flask(__name__),
            build_my_app=self.build_my_app,
            __docs_dir__=str(page.directory),
        )

    def close(self) -> None:
        for relay in self.relays:
            relay.close()


def _on_sign_in(profile: Any, connector: str) -> str:
    return str(profile.sub)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    text = "\n".join(path.read_text(encoding="utf-8") for path in DOCUMENTS)
    env = {**dummy_env(text), "AUTHRELAY_SECRET": "docs-tests-secret-key-0123456789abcdef"}
    idp = IdentityProvider(**default_provider_config())
    with pytest.MonkeyPatch.context() as patch, serve_identity_provider(idp):
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setitem(sys.modules, "myapp", fake_module("myapp"))
        patch.setitem(
            sys.modules, "myapp.users", fake_module("myapp.users", on_sign_in=_on_sign_in)
        )
        registry = Pages(tmp_path_factory.mktemp("docs"), idp)
        try:
            yield registry
        finally:
            registry.close()


def _id(block: tuple[Path, int]) -> str:
    path, index = block
    return where(list(DOCUMENTS[path].examples())[index])


@pytest.mark.parametrize("block", BLOCKS, ids=[_id(block) for block in BLOCKS])
def test_doc_block(block: tuple[Path, int], pages: Pages, monkeypatch: pytest.MonkeyPatch) -> None:
    path, index = block
    page = pages.page(path)
    monkeypatch.chdir(page.directory)
    if not page.done:
        pages.prepare(page)
    for earlier in range(index):  # what the page ran above this block, if not yet run
        example = page.examples[earlier]
        if earlier not in page.done and example.region.evaluator is not check_toml:
            page.done.add(earlier)
            example.evaluate()
    page.done.add(index)
    page.examples[index].evaluate()


def test_every_page_has_blocks_collected() -> None:
    """The harness sees the documents' blocks (a parser change cannot silently drop all)."""
    counted = {path.name: 0 for path in DOCUMENTS}
    for path, _ in BLOCKS:
        counted[path.name] += 1
    assert counted["README.md"] >= 3
    assert sum(counted.values()) >= 30
