"""The demo in a real browser: sign in, connect, reload, sign out, dark mode, two users.

Headless Debian Chromium driven by Playwright against the demo served on free loopback
ports. Every step leaves a screenshot under the test's tmp dir. With
``AUTHRELAY_UPDATE_SCREENSHOTS=1`` the signed-in page is also copied to
``docs/images/demo-signed-in.png`` (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from authrelay.demo import Demo
from authrelay.demo.providers import CODEHOST_USERS, DEMO_USERS, NOTES, REPOSITORIES, DemoUser

pytestmark = pytest.mark.browser

ALICE, BOB = DEMO_USERS
CODE_ALICE = CODEHOST_USERS[0]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "demo-signed-in.png"
SIGNIN = re.compile(r"/signin$")
HOME = re.compile(r"^http://127\.0\.0\.1:\d+/$")


def provider_login(page: Any, user: DemoUser) -> None:
    """Fill and submit a provider's HTML login form."""
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()


def sign_in(page: Any, demo: Demo, user: DemoUser, shots: Any = None) -> None:
    """From an anonymous visit to the signed-in home page."""
    page.goto(demo.app_url + "/")
    expect(page).to_have_url(SIGNIN)
    expect(page.locator("#connectors")).to_have_attribute("data-ready", "true")
    if shots is not None:
        shots(page, "signin-page")
    page.locator("#connector-idp").click()
    expect(page.get_by_label("Username")).to_be_visible()
    if shots is not None:
        shots(page, "provider-login-form")
    provider_login(page, user)
    expect(page).to_have_url(HOME)
    expect(page.locator("#user-name")).to_have_text(user.name)


def notes_on(page: Any) -> list[str]:
    return [text.strip() for text in page.locator("#notes li").all_inner_texts()]


def test_sign_in_see_notes_connect_codehost_see_repositories_reload_keeps_session(
    demo: Demo, new_context: Any, shots: Any
) -> None:
    page = new_context().new_page()
    sign_in(page, demo, ALICE, shots)
    assert notes_on(page) == list(NOTES[ALICE.sub])
    expect(page.locator("#profile")).to_contain_text(ALICE.email)
    connect = page.locator("#connect-codehost")
    expect(connect).to_have_text("Connect CodeHost")
    shots(page, "signed-in")

    connect.click()
    provider_login(page, CODE_ALICE)
    expect(page).to_have_url(HOME)
    repos = page.locator("#repos li")
    expect(repos).to_have_text(list(REPOSITORIES[CODE_ALICE.sub]))
    expect(page.locator("#status-panel")).to_have_attribute("data-ready", "true")
    expect(page.locator("#status-services")).to_contain_text("notes")
    _panel_matches_stats_and_providers(page, demo)
    # Each panel says which flow it uses; the status table agrees, row by row.
    expect(page.locator("#notes-flow")).to_contain_text('flow = "token_exchange"')
    expect(page.locator("#repos-flow")).to_contain_text('flow = "connector"')
    rows = page.locator("#status-services tr")
    expect(rows.filter(has_text="notes")).to_contain_text("token_exchange")
    expect(rows.filter(has_text="repos")).to_contain_text("connector")
    connected = shots(page, "connected")
    if os.environ.get("AUTHRELAY_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(connected, DOCS_SCREENSHOT)

    page.reload()
    expect(page).to_have_url(HOME)
    expect(page.locator("#user-name")).to_have_text(ALICE.name)
    expect(repos).to_have_text(list(REPOSITORIES[CODE_ALICE.sub]))
    assert notes_on(page) == list(NOTES[ALICE.sub])
    shots(page, "reloaded")


def _panel_matches_stats_and_providers(page: Any, demo: Demo) -> None:
    """The panel shows what GET /auth/stats answers, which matches what the providers saw."""
    stats = page.context.request.get(demo.app_url + "/auth/stats").json()
    rows = []
    for counter in stats["counters"]:
        extra = [
            f"{k}={v}" for k, v in counter.items() if k not in ("name", "target", "flow", "value")
        ]
        flow = " ".join(part for part in [counter["flow"], *extra] if part)
        rows.append(f"{counter['name']}{counter['target']}{flow}{counter['value']}")
    assert rows, "no counters after a sign-in and a connect"
    expect(page.locator("#status-counters tr")).to_have_text(rows)

    def counted(target: str, grant: str) -> int:
        return sum(
            c["value"]
            for c in stats["counters"]
            if c["name"] == "token_requests" and c["target"] == target and c.get("grant") == grant
        )

    for target, label in (("idp", "idp"), ("codehost", "codehost")):
        provider = demo.providers[label].counters
        for grant in ("authorization_code", "refresh_token"):
            assert counted(target, grant) == provider.count("token", grant_type=grant), (
                target,
                grant,
            )
    assert counted("idp", "authorization_code") >= 1
    assert counted("codehost", "authorization_code") >= 1
    sessions = [c for c in stats["counters"] if c["name"] == "sessions_created"]
    assert sessions and sessions[0]["value"] >= 1


def test_se06_sign_out_ends_session_and_protected_page_redirects(
    demo: Demo, new_context: Any, shots: Any
) -> None:
    context = new_context()
    page = context.new_page()
    sign_in(page, demo, ALICE)
    revocations = demo.providers["idp"].counters.count("revoke", status=200)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(SIGNIN)
    # RV-01: the refresh token, then the access token, revoked at the provider
    assert demo.providers["idp"].counters.count("revoke", status=200) == revocations + 2
    shots(page, "signed-out")
    page.goto(demo.app_url + "/")
    expect(page).to_have_url(SIGNIN)
    me = context.request.get(demo.app_url + "/auth/me").json()
    assert me == {"authenticated": False}
    # RP-initiated logout ended the provider's session too: the password is asked again.
    expect(page.locator("#connectors")).to_have_attribute("data-ready", "true")
    page.locator("#connector-idp").click()
    expect(page.get_by_label("Password")).to_be_visible()
    shots(page, "login-asked-again")


def _logo_sources(page: Any) -> dict[str, str]:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#connectors img')]"
        ".every(i => i.complete && i.naturalWidth > 0 && i.currentSrc)"
    )
    sources: dict[str, str] = page.eval_on_selector_all(
        "#connectors a",
        "links => Object.fromEntries(links.map(a => [a.id, a.querySelector('img').currentSrc]))",
    )
    return sources


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_color_scheme_picks_logos(demo: Demo, new_context: Any, shots: Any, scheme: str) -> None:
    page = new_context(color_scheme=scheme).new_page()
    page.goto(demo.app_url + "/signin")
    expect(page.locator("#connectors")).to_have_attribute("data-ready", "true")
    sources = _logo_sources(page)
    shots(page, f"signin-{scheme}")
    assert set(sources) == {"connector-idp", "connector-codehost"}
    for source in sources.values():
        assert source.endswith("-dark.svg") is (scheme == "dark"), source


def test_connector_names_follow_browser_language(demo: Demo, new_context: Any, shots: Any) -> None:
    page = new_context(locale="ko-KR").new_page()
    page.goto(demo.app_url + "/signin")
    expect(page.locator("#connector-idp strong")).to_have_text("데모 ID")
    expect(page.locator("#connector-codehost strong")).to_have_text("코드호스트")
    shots(page, "signin-ko")


def test_inv3_second_context_other_user_sees_only_own_notes(
    demo: Demo, new_context: Any, shots: Any
) -> None:
    alice_page = new_context().new_page()
    bob_page = new_context().new_page()
    sign_in(alice_page, demo, ALICE)
    sign_in(bob_page, demo, BOB)
    shots(bob_page, "bob-signed-in")
    assert notes_on(bob_page) == list(NOTES[BOB.sub])
    assert not set(NOTES[ALICE.sub]) & set(bob_page.locator("body").inner_text().splitlines())
    alice_page.reload()
    expect(alice_page.locator("#user-name")).to_have_text(ALICE.name)
    assert notes_on(alice_page) == list(NOTES[ALICE.sub])
    assert not set(NOTES[BOB.sub]) & set(alice_page.locator("body").inner_text().splitlines())
