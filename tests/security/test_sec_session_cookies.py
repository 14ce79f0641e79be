"""Session cookies under ASGI and WSGI: caching (SE-08), key rotation (SE-03, ST-03),
strict decoding and duplicates (SE-09), and mutated cookies (INV-1, INV-2)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sec_helpers import KEY, App, base_settings, oidc_connector, serve_app

from authrelay import Settings
from authrelay._crypto import b64url_decode, b64url_encode
from authrelay.identity.session import SessionManager
from authrelay.testing import IdentityProvider

OLD_KEY = "security-tests-older-cookie-key-111111"


def _settings(idp: IdentityProvider, *keys: str) -> Callable[[str], Settings]:
    return lambda base: base_settings(
        base, {"idp": oidc_connector(idp.issuer)}, secret_keys=list(keys or (KEY,))
    )


def _items(response: httpx.Response, name: str) -> list[str]:
    joined = ",".join(response.headers.get_list(name))
    return [item.strip().lower() for item in joined.split(",") if item.strip()]


def _signed_in(app: App) -> str:
    assert app.login().status_code == 303
    value = app.client.cookies["authrelay"]
    app.client.cookies.clear()
    return value


def _as(app: App, value: str, path: str = "/page", **headers: str) -> httpx.Response:
    return app.client.get(f"{app.base}{path}", headers={"cookie": value, **headers})


def test_se08_every_session_answer_varies_on_cookie_and_is_private(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        cookie = "authrelay=" + _signed_in(app)
        page = _as(app, cookie)
        assert page.json()["subject"] is not None
        assert "cookie" in _items(page, "vary")
        assert _items(page, "cache-control") == ["private"]
        assert not page.headers.get_list("set-cookie")
        me = _as(app, cookie, "/auth/me")
        assert me.json()["authenticated"] is True
        assert "cookie" in _items(me, "vary") and "no-store" in _items(me, "cache-control")
        anonymous = app.client.get(f"{app.base}/page")
        assert "vary" not in anonymous.headers and "cache-control" not in anonymous.headers


def test_se08_vary_merges_with_the_apps_own_and_keeps_its_cache_control(shell: str) -> None:
    from authrelay.asgi import _private_headers
    from authrelay.responses import private_headers

    if shell == "asgi":
        raw = _private_headers(
            [(b"Vary", b"Accept-Encoding"), (b"Cache-Control", b"max-age=0")], None
        )
        headers = [(k.decode(), v.decode()) for k, v in raw]
    else:
        headers = private_headers(
            [("Vary", "Accept-Encoding"), ("Cache-Control", "max-age=0")], None
        )
    assert headers == [("Vary", "Accept-Encoding, Cookie"), ("Cache-Control", "max-age=0")]
    assert private_headers([("vary", "*")], None) == [("vary", "*"), ("cache-control", "private")]


def test_se03_cookie_sealed_with_an_older_key_is_reissued_under_the_primary(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(_settings(idp, KEY, OLD_KEY), shell=shell) as app:
        sessions = app.relay.sessions
        state = sessions.open_cookie(_signed_in(app))
        assert state is not None and not state.old_key
        older = SessionManager(_settings(idp, OLD_KEY)(app.base), clock=sessions.clock)
        old_value = older.set_cookie(state.session_id, state.issued_at).split(";")[0]
        first = _as(app, old_value)
        assert first.json()["subject"] is not None
        reissued = [c for c in first.headers.get_list("set-cookie") if c.startswith("authrelay=")]
        assert len(reissued) == 1 and "Max-Age=0" not in reissued[0]
        new_value = reissued[0].split(";")[0].partition("=")[2]
        new_state = sessions.open_cookie(new_value)
        assert new_state is not None and not new_state.old_key
        assert new_state.session_id == state.session_id
        settled = _as(app, "authrelay=" + new_value)
        assert settled.json()["subject"] is not None
        assert not settled.headers.get_list("set-cookie")  # rotation is complete


def _junk_variants(value: str) -> list[str]:
    raw = b64url_decode(value)
    last = value[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    siblings = [c for c in alphabet if c != last and b64url_decode(value[:-1] + c) == raw]
    return [
        value + "!!",
        value + "=",
        value + "==",
        value + " x",
        value + "\\",
        value + ".",
        base64.b64encode(raw).decode(),  # the standard alphabet
        *(value[:-1] + c for c in siblings[:1]),  # non-canonical trailing bits
    ]


def test_se09_junk_after_the_cookie_value_is_refused(idp: IdentityProvider, shell: str) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        value = _signed_in(app)
        assert _as(app, "authrelay=" + value).json()["subject"] is not None
        for variant in _junk_variants(value):
            if variant == value:
                continue
            answer = _as(app, "authrelay=" + variant)
            assert answer.status_code == 200, variant
            assert answer.json()["subject"] is None, variant


def test_se09_duplicate_session_cookies_log_one_warning_without_values(
    idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authrelay")
    with serve_app(_settings(idp), shell=shell) as app:
        value = _signed_in(app)
        caplog.clear()
        answer = _as(app, f"authrelay={value}; other=1; authrelay=tossed-by-a-sibling")
        assert answer.json()["subject"] is None
    warnings = [r for r in caplog.records if r.getMessage().startswith("cookie_duplicated")]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert value not in text and "tossed-by-a-sibling" not in text
    assert "name=authrelay " in warnings[0].getMessage()


# -- mutated cookies (property tests) ----------------------------------------------------


@st.composite
def _mutations(draw: st.DrawFn) -> Callable[[str], str]:
    kind = draw(st.sampled_from(["flip", "truncate", "append", "reencode", "splice"]))
    position = draw(st.integers(min_value=0, max_value=10_000))
    if kind == "flip":
        bit = draw(st.integers(min_value=0, max_value=7))

        def flip(value: str) -> str:
            raw = bytearray(b64url_decode(value))
            raw[position % len(raw)] ^= 1 << bit
            return b64url_encode(bytes(raw))

        return flip
    if kind == "truncate":
        return lambda value: value[: position % len(value)]
    if kind == "append":
        tail = draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1))
        tail = tail.replace(";", "").replace(",", "") or "A"
        return lambda value: value + tail
    if kind == "splice":
        junk = draw(st.text("ABCxyz019-_", min_size=1, max_size=8))
        return lambda value: value[: position % len(value)] + junk + value[position % len(value) :]
    form = draw(st.sampled_from(["padded", "standard", "percent", "upper", "reversed"]))

    def reencode(value: str) -> str:
        raw = b64url_decode(value)
        if form == "padded":
            return base64.urlsafe_b64encode(raw).decode()
        if form == "standard":
            return base64.b64encode(raw).decode().rstrip("=")
        if form == "percent":
            return value.replace("-", "%2D").replace("_", "%5F") + "%3D"
        if form == "upper":
            return value.upper()
        return value[::-1]

    return reencode


@pytest.fixture
def signed_in(idp: IdentityProvider, shell: str) -> Iterator[tuple[App, str]]:
    """One served app per shell for all examples, with a valid session cookie value."""
    with serve_app(_settings(idp), shell=shell) as app:
        yield app, _signed_in(app)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutate=_mutations())
def test_inv1_inv2_se09_mutated_session_cookies_are_anonymous(
    signed_in: tuple[App, str], mutate: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    app, value = signed_in
    mutated = mutate(value)
    if mutated == value:
        return
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="authrelay"):
        for accept in ("application/json", "text/html"):
            answer = _as(app, "authrelay=" + mutated, accept=accept)
            assert answer.status_code == 200, (mutated, answer.status_code)  # INV-2
            assert answer.json()["subject"] is None  # the rule: anonymous, never an error
            seen = "\n".join(f"{k}: {v}" for k, v in answer.headers.multi_items()) + answer.text
            assert value not in seen and KEY not in seen  # INV-1
            for cookie in answer.headers.get_list("set-cookie"):
                assert cookie.startswith("authrelay=; Max-Age=0")  # only ever cleared
    logged = "\n".join(r.getMessage() + str(r.__dict__.get("args")) for r in caplog.records)
    assert value not in logged and KEY not in logged  # INV-1
    if len(mutated) >= 16:
        assert mutated not in logged
