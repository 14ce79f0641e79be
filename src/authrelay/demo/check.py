"""``authrelay demo --check``: the browser flow, headless, with one HTTP client.

Signs in through the provider's login form, sees the user's notes, links CodeHost and
sees its repositories, signs out, and confirms the session is gone. Each step prints one
line; the first failure stops the run. Defends against a demo that looks fine on the
start-up banner but is broken behind it (a smoke test for ``make demo`` and CI).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import TextIO
from urllib.parse import urljoin

import httpx

from .providers import CODEHOST_USERS, DEMO_USERS, NOTES, REPOSITORIES, DemoUser

__all__ = ["CheckFailed", "run_check", "sign_in_at_provider"]

_HIDDEN = re.compile(r'<input type="hidden" name="(tx|csrf|csrf_token)" value="([^"]*)">')
_ANY_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ANY_FORM = re.compile(r'<form method="(get|post)" action="([^"]+)"')
_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


class CheckFailed(Exception):
    """A step of the check did not do what a user would expect."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _hidden(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def sign_in_at_provider(client: httpx.Client, start: str, user: DemoUser) -> httpx.Response:
    """Follow ``start`` to the provider's login form, submit it, follow back to the app."""
    form_page = client.get(start)
    _expect(form_page.status_code == 200, f"login form: HTTP {form_page.status_code}")
    fields = _hidden(form_page.text)
    action = _FORM_ACTION.search(form_page.text)
    _expect("tx" in fields and action is not None, "the provider showed no login form")
    assert action is not None
    target = urljoin(str(form_page.url), html.unescape(action.group(1)))
    fields.update(username=user.username, password=user.password)
    return client.post(target, data=fields)


def run_check(app_url: str, out: TextIO) -> bool:
    """Run the flow against the demo at ``app_url``; True when every step passed."""
    alice, code_alice = DEMO_USERS[0], CODEHOST_USERS[0]
    with httpx.Client(base_url=app_url, follow_redirects=True, timeout=15.0) as client:

        def anonymous_redirect() -> None:
            response = client.get("/")
            _expect(response.url.path == "/signin", f"/ led to {response.url.path}")

        def connectors() -> None:
            body = client.get("/auth/connectors", headers={"Accept-Language": "ko"}).json()
            names = {c["id"]: c["name"] for c in body["connectors"]}
            _expect(names.get("idp") == "데모 ID", f"Korean names not served: {names}")
            _expect(all(c["logo_dark"] for c in body["connectors"]), "dark logos missing")

        def sign_in() -> None:
            home = sign_in_at_provider(client, "/auth/idp/login?next=/", alice)
            _expect(home.url.path == "/", f"sign-in ended at {home.url.path}")
            _expect(alice.name in home.text, "the profile does not show the user")
            missing = [n for n in NOTES[alice.sub] if html.escape(n) not in home.text]
            _expect(not missing, f"notes missing: {missing}")

        def connect() -> None:
            home = client.get("/")
            _expect('id="connect-codehost"' in home.text, "no Connect button for CodeHost")
            home = sign_in_at_provider(client, "/auth/codehost/connect?next=/", code_alice)
            _expect(home.url.path == "/", f"linking ended at {home.url.path}")
            missing = [r for r in REPOSITORIES[code_alice.sub] if r not in home.text]
            _expect(not missing, f"repositories missing: {missing}")

        def cached() -> None:
            home = client.get("/")
            _expect(NOTES[alice.sub][0] in home.text, "notes gone after a reload")
            status = client.get("/demo/status").json()
            cached = {s["service"]: s["cached"] for s in status["services"]}
            _expect(cached == {"notes": True, "repos": True}, f"tokens not cached: {cached}")
            stats = client.get("/auth/stats")
            _expect(stats.status_code == 200, f"/auth/stats: HTTP {stats.status_code}")

        def sign_out() -> None:
            home = client.get("/")
            token = _hidden(home.text).get("csrf_token", "")
            response = client.post(
                "/auth/logout", data={"csrf_token": token}, headers={"Accept": "text/html"}
            )
            if response.url.path.endswith("/logout/provider"):  # no script here: send the form
                form = _ANY_FORM.search(response.text)
                _expect(form is not None, "no end-session form on the sign-out page")
                assert form is not None
                fields = {k: html.unescape(v) for k, v in _ANY_HIDDEN.findall(response.text)}
                target = html.unescape(form[2])
                if form[1] == "get":
                    response = client.get(target, params=fields)
                else:
                    response = client.post(target, data=fields)
            _expect(response.url.path == "/signin", f"sign-out ended at {response.url.path}")
            after = client.get("/")
            _expect(after.url.path == "/signin", "the session survived sign-out")
            me = client.get("/auth/me").json()
            _expect(me.get("authenticated") is False, "/auth/me still names a user")

        steps: list[tuple[str, Callable[[], None]]] = [
            ("anonymous visit is sent to the sign-in page", anonymous_redirect),
            ("connectors listed by Accept-Language, with dark logos", connectors),
            (f"sign in as {alice.username} through the login form; notes shown", sign_in),
            ("connect CodeHost; repositories shown", connect),
            ("reload: session kept, tokens cached", cached),
            ("sign out: session gone", sign_out),
        ]
        for label, step in steps:
            try:
                step()
            except (CheckFailed, httpx.HTTPError, ValueError, KeyError) as exc:
                out.write(f"  FAIL  {label}: {type(exc).__name__}: {exc}\n")
                return False
            out.write(f"  ok    {label}\n")
    return True
