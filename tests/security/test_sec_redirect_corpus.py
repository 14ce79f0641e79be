"""Open-redirect corpus and generated ``next`` values through the real login route, under
ASGI and WSGI (RD-01..RD-05): every ``Location`` is the fallback or a plain same-site
path, both shells give the same answer, and nothing answers 500."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sec_helpers import App, base_settings, oidc_connector, serve_app

from asgi_lifespan import answer_lifespan
from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay._types import Receive, Scope, Send
from authrelay.errors import MissingCredentials
from authrelay.redirects import normalize_path, safe_next
from authrelay.testing import IdentityProvider, serve_asgi
from authrelay.testing.servers import serve_wsgi
from authrelay.wsgi import AuthRelayWSGIMiddleware

CORPUS = json.loads((Path(__file__).parent / "data" / "open_redirect_payloads.json").read_text())
PAYLOADS: list[str] = [p for family in CORPUS["families"].values() for p in family]
FALLBACK = "/after"
_PLAIN = set(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?#%")


def _settings(idp: IdentityProvider) -> Callable[[str], Settings]:
    return lambda base: base_settings(
        base, {"idp": oidc_connector(idp.issuer)}, routes={"after_login": FALLBACK}
    )


@contextmanager
def _both_shells(idp: IdentityProvider) -> Iterator[dict[str, App]]:
    with ExitStack() as stack:
        yield {
            shell: stack.enter_context(serve_app(_settings(idp), shell=shell))
            for shell in ("asgi", "wsgi")
        }


def _landing(app: App, next_value: str, action: str = "login") -> tuple[int, str]:
    """Status and ``Location`` of the callback of a login started with ``next``."""
    start = app.client.get(f"{app.base}/auth/idp/{action}", params={"next": next_value})
    assert start.status_code == 302, (next_value, start.status_code, start.text)
    at_idp = app.client.get(start.headers["location"])
    done = app.client.get(at_idp.headers["location"])
    assert done.status_code < 500, (next_value, done.status_code)
    return done.status_code, done.headers.get("location", "")


def assert_safe_location(location: str, base: str, sent: str) -> None:
    """The fallback, or ``sent`` unchanged as a plain path a browser keeps on this site."""
    if location == FALLBACK:
        return
    assert location == sent, (sent, location)
    assert set(location) <= _PLAIN, location  # ASCII, no blank, no backslash, no control
    assert location.startswith("/") and not location.startswith("//"), location
    path = urlsplit(location).path
    assert "%" not in path and normalize_path(path) == path, location
    assert "\\" not in unquote(location) and all(ord(c) >= 0x20 for c in unquote(location))
    target = urlsplit(urljoin(base + "/somewhere/deep", location))
    assert target.netloc == urlsplit(base).netloc and target.scheme == "http", location
    assert not target.path.startswith("//"), location


def test_rd01_rd02_open_redirect_corpus_lands_on_site_in_both_shells(idp: IdentityProvider) -> None:
    assert len(PAYLOADS) >= 200
    answers: dict[str, dict[str, tuple[int, str]]] = {}
    with _both_shells(idp) as apps:
        for shell, app in apps.items():
            answers[shell] = {payload: _landing(app, payload) for payload in PAYLOADS}
            for payload, (status, location) in answers[shell].items():
                assert status == 303, (shell, payload)
                assert_safe_location(location, app.base, payload)
    assert answers["asgi"] == answers["wsgi"]
    attacks = [p for name, ps in CORPUS["families"].items() if name != "safe_same_site" for p in ps]
    passed = [p for p in attacks if answers["asgi"][p][1] != FALLBACK]
    # What passes is only ever a harmless same-site path.
    assert sorted(passed) == sorted(["/javascript:alert(1)#ok", "/'x'", "/x?%3Cscript%3E"])
    for payload in CORPUS["families"]["safe_same_site"]:
        assert answers["asgi"][payload] == (303, payload)


@pytest.mark.parametrize("value", ["/／evil.test", "/∕evil.test", "/%E3%80%82/evil.test"])
def test_rd01_rd02_unicode_lookalikes_fall_back_in_both_shells(
    idp: IdentityProvider, value: str
) -> None:
    with _both_shells(idp) as apps:
        for action in ("login", "connect"):
            seen = {shell: _landing(app, value, action) for shell, app in apps.items()}
            assert seen["asgi"] == seen["wsgi"] == (303, FALLBACK)


# -- generated values ------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "/",
        "//",
        "\\",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "%25",
        "%252f",
        "%20",
        "%09",
        "%0d%0a",
        "%00",
        "\t",
        " ",
        "\n",
        "?",
        "#",
        "@",
        ":",
        ";",
        "evil.test",
        "https:",
        "javascript:",
        "\uff0f",
        "\u2215",
        "\u3002",
        "%E3%80%82",
        "%EF%BC%8F",
        "\uff0e",
        "\u200b",
        "\u00a0",
        "a",
        "b",
        "~",
        "%41",
        "%zz",
        "%",
        "&",
        "=",
    ]
)
NEXT_VALUES = st.lists(_PIECES, min_size=1, max_size=8).map("".join) | st.text(max_size=24)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=NEXT_VALUES)
def test_rd01_rd02_generated_next_values_in_both_shells(
    apps_for_generated: dict[str, App], value: str
) -> None:
    value = value.replace("\x00", "")  # a NUL cannot travel in a URL query at all
    seen = {shell: _landing(app, value) for shell, app in apps_for_generated.items()}
    assert seen["asgi"] == seen["wsgi"], value
    status, location = seen["asgi"]
    assert status == 303
    expected = safe_next(value, FALLBACK)
    assert location == expected
    if value:
        assert_safe_location(location, apps_for_generated["asgi"].base, value)


@pytest.fixture
def apps_for_generated(idp: IdentityProvider) -> Iterator[dict[str, App]]:
    """Both shells, served once for all generated examples."""
    with _both_shells(idp) as apps:
        yield apps


# -- the way in: the login redirect and the login query ----------------------------------


async def _asgi_needs_login(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    raise MissingCredentials()


def _wsgi_needs_login(environ: dict[str, object], start_response: object) -> list[bytes]:
    raise MissingCredentials()


@pytest.mark.parametrize("path", ["/caf%C3%A9/x", "/%EF%BC%8Fevil.test", "/a%2F%2Fevil.test"])
def test_rd01_login_redirect_and_its_next_agree_in_both_shells(
    idp: IdentityProvider, path: str
) -> None:
    relay = Relay(_settings(idp)("http://127.0.0.1"))
    try:
        locations = []
        with serve_asgi(AuthRelayMiddleware(_asgi_needs_login, relay=relay)) as asgi_url:
            locations.append(httpx.get(asgi_url + path, headers={"accept": "text/html"}))
        with serve_wsgi(AuthRelayWSGIMiddleware(_wsgi_needs_login, relay=relay)) as wsgi_url:
            locations.append(httpx.get(wsgi_url + path, headers={"accept": "text/html"}))
    finally:
        relay.close()
    assert [r.status_code for r in locations] == [302, 302]
    for response in locations:
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert locations[0].headers["location"] == locations[1].headers["location"]
    next_value = parse_qs(urlsplit(locations[0].headers["location"]).query)["next"][0]
    with _both_shells(idp) as apps:
        seen = {shell: _landing(app, next_value) for shell, app in apps.items()}
        assert seen["asgi"] == seen["wsgi"] == (303, safe_next(next_value, FALLBACK))
        assert_safe_location(seen["asgi"][1], apps["asgi"].base, next_value)


def test_inv2_a_login_query_with_too_many_fields_is_a_clear_400_in_both_shells(
    idp: IdentityProvider,
) -> None:
    query = "&".join(f"f{n}=1" for n in range(80)) + "&next=/x"
    with _both_shells(idp) as apps:
        for action in ("login", "callback"):
            answers = [
                app.client.get(f"{app.base}/auth/idp/{action}?{query}") for app in apps.values()
            ]
            assert [a.status_code for a in answers] == [400, 400]
            assert answers[0].json() == answers[1].json()
            assert answers[0].json()["error"] == "invalid_request"
