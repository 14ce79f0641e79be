"""Fixtures for interop tests against the certified oidc-provider (see ``oidc_harness``).

``oidc_provider`` is session-scoped: one node process serves every interop test. Override
``oidc_provider_settings`` in a nested conftest to start it with other redirect URIs or
resources, or call ``oidc_provider.register_client(...)`` at run time.
``oidc_resource_server_provider`` is a second node process in the ``resource-server``
profile (started only by the tests that use it).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from oidc_harness import OidcProvider, OidcProviderSettings
from oidc_launcher import start_oidc_provider


@pytest.fixture(scope="session")
def oidc_provider_settings() -> OidcProviderSettings:
    """Clients, redirect URIs and resources the provider starts with."""
    return OidcProviderSettings()


def _node() -> str:
    """``node``, or skip (fail under ``CI``: interop must not silently stop being checked)."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed (CI must run the interop tests)")
        pytest.skip("node is not installed")
    return node


def _started(settings: OidcProviderSettings, workdir: Path) -> Iterator[OidcProvider]:
    with start_oidc_provider(settings, workdir, node=_node()) as provider:
        yield provider


@pytest.fixture(scope="session")
def oidc_provider(
    oidc_provider_settings: OidcProviderSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    """A running oidc-provider on a free 127.0.0.1 port, stopped at the end of the session.

    Skips when ``node`` is missing, unless the ``CI`` environment variable is set: there a
    missing node fails the test, so interop cannot silently stop being checked.
    """
    yield from _started(oidc_provider_settings, tmp_path_factory.mktemp("oidc-provider"))


@pytest.fixture(scope="session")
def oidc_resource_server_provider(
    oidc_provider_settings: OidcProviderSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    """oidc-provider in the ``resource-server`` profile: the relying party's code-flow
    access tokens are RFC 9068 JWTs for ``api://orders``, and UserInfo refuses them."""
    settings = dataclasses.replace(oidc_provider_settings, profile="resource-server")
    yield from _started(settings, tmp_path_factory.mktemp("oidc-provider-rs"))


@pytest.fixture(scope="session")
def oidc_token_exchange_provider(
    oidc_provider_settings: OidcProviderSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    """oidc-provider in the ``token-exchange`` profile: the relying party's client may
    exchange its opaque access tokens (RFC 8693) for tokens of a configured resource."""
    settings = dataclasses.replace(oidc_provider_settings, profile="token-exchange")
    yield from _started(settings, tmp_path_factory.mktemp("oidc-provider-tx"))


@pytest.fixture(scope="session")
def oidc_par_provider(
    oidc_provider_settings: OidcProviderSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    """oidc-provider in the ``par`` profile: pushed authorization requests (RFC 9126) are
    required, a plain authorization request is refused."""
    settings = dataclasses.replace(oidc_provider_settings, profile="par")
    yield from _started(settings, tmp_path_factory.mktemp("oidc-provider-par"))
