"""AC-04 with many tabs: pending sign-ins share one bounded pre-auth cookie (at most ten
entries, the oldest evicted), so parallel tabs work and the ``Cookie`` header cannot grow
until the browser is locked out; the callback errors stay precise. ASGI and WSGI."""

from __future__ import annotations

import logging
import string
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sec_helpers import App, base_settings, oidc_connector, serve_app

from authrelay import Settings
from authrelay.connectors.preauth import MAX_PENDING
from authrelay.testing import FakeClock, IdentityProvider

_VISIBLE = "".join(c for c in string.printable[:94] if c not in ';,"\\')


def _settings(idp: IdentityProvider) -> Callable[[str], Settings]:
    return lambda base: base_settings(base, {"idp": oidc_connector(idp.issuer)})


def _description(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_state"
    return str(response.json()["error_description"])


def _tx_cookies(app: App) -> list[str]:
    return [c.name for c in app.client.cookies.jar if c.name.startswith("authrelay-tx")]


def test_ac04_eleven_tabs_keep_one_bounded_cookie_and_ten_of_them_work(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(_settings(idp), shell=shell) as app:
        callbacks = [app.authorize(next=f"/tab/{n}") for n in range(MAX_PENDING + 1)]
        assert _tx_cookies(app) == ["authrelay-tx"]
        value = app.client.cookies["authrelay-tx"]
        assert len(value) <= 600 and value.count(".") == MAX_PENDING - 1
        # One more login does not grow it: the header stays the same size.
        extra = app.authorize(next="/tab/extra")
        assert len(app.client.cookies["authrelay-tx"]) == len(value)
        # The oldest two were evicted; the ten newest complete in any order.
        for n in (1, 0):
            evicted = app.client.get(callbacks[n])
            assert "not started in this browser" in _description(evicted)
        for callback in [extra, *callbacks[2:]][::-1]:
            done = app.client.get(callback)
            assert done.status_code == 303, done.text
            assert done.headers["location"].startswith("/tab/")
        assert app.me()["authenticated"] is True
        assert "authrelay-tx" not in app.client.cookies  # the last callback cleared it


def test_ac04_precise_errors_stay_with_the_shared_cookie(idp: IdentityProvider, shell: str) -> None:
    clock = FakeClock(time.time())
    with serve_app(_settings(idp), shell=shell, clock=clock) as app:
        mine = app.authorize()
        with httpx.Client() as other_browser:
            assert "not started in this browser" in _description(other_browser.get(mine))
        unknown = mine.replace("state=", "state=unknown")
        assert "unknown, expired or already used" in _description(app.client.get(unknown))
        late = app.authorize()
        clock.advance(601)
        expired = _description(app.client.get(late))  # the store let it expire first
        assert "expired" in expired and "not started" not in expired


def test_ac04_a_tampered_preauth_cookie_is_refused_without_a_500(
    idp: IdentityProvider, shell: str
) -> None:
    with serve_app(_settings(idp), shell=shell) as app, httpx.Client() as raw:
        for tamper in (
            lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"),
            lambda v: v[::-1],
            lambda v: v.upper(),
            lambda v: "." * 20 + v[:10],
            lambda v: "x" * 4000,
            lambda v: v + "; authrelay-tx=" + v,
        ):
            callback = app.authorize()
            value = app.client.cookies["authrelay-tx"]
            answer = raw.get(callback, headers={"cookie": f"authrelay-tx={tamper(value)}"})
            assert "not started in this browser" in _description(answer)
        callback = app.authorize()
        value = app.client.cookies["authrelay-tx"]
        done = raw.get(callback, headers={"cookie": f"authrelay-tx={value}"})
        assert done.status_code == 303


_MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 5)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("append"), st.text(_VISIBLE, min_size=1, max_size=40), st.just(0)),
    st.tuples(st.just("reencode"), st.sampled_from(["upper", "pad", "quote", "pct"]), st.just(0)),
)


def _mutate(value: str, mutation: tuple[str, object, int]) -> str:
    kind, arg, bit = mutation
    if kind == "flip":
        at = int(str(arg)) % len(value)
        flipped = chr(ord(value[at]) ^ (1 << bit))
        if not (0x21 <= ord(flipped) <= 0x7E) or flipped in ';,"\\':
            flipped = "A" if value[at] != "A" else "B"
        return value[:at] + flipped + value[at + 1 :]
    if kind == "truncate":
        return value[: int(str(arg)) % len(value)]
    if kind == "append":
        return value + str(arg)
    return {
        "upper": value.upper(),
        "pad": value + "==",
        "quote": f'"{value}',
        "pct": value.replace("-", "%2D").replace("_", "%5F").replace(".", "%2E"),
    }[str(arg)]


@pytest.fixture
def served_app(idp: IdentityProvider, shell: str) -> Iterator[App]:
    """One served app per shell for all examples."""
    with serve_app(_settings(idp), shell=shell) as app:
        yield app


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=_MUTATIONS)
def test_ac04_inv1_inv2_mutated_preauth_cookies_are_refused(
    served_app: App, mutation: tuple[str, object, int], caplog: pytest.LogCaptureFixture
) -> None:
    app = served_app
    app.client.cookies.clear()  # one pending sign-in: every mutation touches its entry
    callback = app.authorize()
    value = app.client.cookies["authrelay-tx"]
    mutated = _mutate(value, mutation)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="authrelay"), httpx.Client() as other:
        answer = other.get(callback, headers={"cookie": f"authrelay-tx={mutated}"})
    assert answer.status_code in (303, 400), answer.status_code  # INV-2
    if mutated != value:
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_state"
    binding = value.split(".")[0][16:]
    seen = "\n".join(f"{k}: {v}" for k, v in answer.headers.multi_items()) + answer.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert binding not in seen and binding not in logged  # INV-1
