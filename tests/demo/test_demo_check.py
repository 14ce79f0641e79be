"""``authrelay demo`` without a browser: --check, port clashes, Ctrl-C, the demo's APIs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from authrelay.demo import Demo, DemoPorts, demo_main
from authrelay.demo.check import sign_in_at_provider
from authrelay.demo.providers import ACCESS_TOKEN_TTL, DEMO_USERS, NOTES
from authrelay.demo.runner import DEFAULT_CONFIG
from authrelay.testing import FakeClock

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ANY_PORTS = ["--app-port", "0", "--idp-port", "0", "--codehost-port", "0", "--notes-port", "0"]


def test_check_runs_the_whole_flow_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_main(["--check", *ANY_PORTS]) == 0
    out = capsys.readouterr().out
    assert out.count("  ok    ") == 6
    assert "FAIL" not in out
    assert "all steps passed" in out


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """A writable copy of examples/demo (settings, templates, static files)."""
    folder = tmp_path / "demo"
    shutil.copytree(DEFAULT_CONFIG.parent, folder)
    return folder / "authrelay.toml"


def test_check_exits_1_when_notes_cannot_be_shown(
    example_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The notes service asks for a scope the sign-in never granted: the page shows a
    # Connect button instead of notes, and the check must say so.
    text = example_copy.read_text(encoding="utf-8")
    example_copy.write_text(
        text.replace('scopes = ["notes.read"]', 'scopes = ["notes.write"]'), encoding="utf-8"
    )
    assert demo_main(["--check", "--config", str(example_copy), *ANY_PORTS]) == 1
    out = capsys.readouterr().out
    assert "FAIL  sign in as alice" in out
    assert "notes missing" in out


def test_invalid_settings_are_reported_with_the_field_path(
    example_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = example_copy.read_text(encoding="utf-8")
    example_copy.write_text(text.replace("[routes]\n", "[routes]\nstatz = true\n"), "utf-8")
    assert demo_main(["--check", "--config", str(example_copy), *ANY_PORTS]) == 2
    err = capsys.readouterr().err
    assert "routes.statz: unknown setting" in err


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_taken_port_gives_a_clear_message(
    taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--check", *ANY_PORTS[:-1], str(taken_port)]
    assert demo_main(argv) == 2
    err = capsys.readouterr().err
    assert f"port {taken_port} for the notes API is not available (already in use)" in err
    assert "--notes-port" in err


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.slow
def test_ctrl_c_stops_every_server_and_frees_the_ports() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "authrelay.cli", "demo", *ANY_PORTS],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            banner: list[str] = []
            for line in process.stdout:
                banner.append(line)
                if line.startswith("Press Ctrl-C"):
                    break
            text = "".join(banner)
            assert "authrelay demo is running: open http://127.0.0.1:" in text
            ports = sorted({int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", text)})
            assert len(ports) == 4
            app = re.search(r"open (http://127\.0\.0\.1:\d+)", text)
            assert app is not None
            assert httpx.get(app.group(1) + "/signin").status_code == 200
            assert not any(_bindable(port) for port in ports)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert all(_bindable(port) for port in ports)


def test_inv3_notes_api_returns_only_the_callers_notes(demo: Demo) -> None:
    idp = demo.providers["idp"]
    token = idp.mint_access_token(
        sub="u-bob", audience="api://notes", scope="notes.read", client_id="demo-app"
    )
    response = httpx.get(
        demo.urls["notes"] + "/notes", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "owner": "u-bob",
        "notes": ["Fix the roof on Tuesday", "Order more bricks"],
    }


def test_notes_api_refuses_tokens_not_meant_for_it(demo: Demo) -> None:
    idp, codehost = demo.providers["idp"], demo.providers["codehost"]
    url = demo.urls["notes"] + "/notes"
    assert httpx.get(url).status_code == 401
    other_audience = idp.mint_access_token(
        sub="u-alice", audience="api://repos", scope="notes.read", client_id="demo-app"
    )
    other_issuer = codehost.mint_access_token(
        sub="u-alice", audience="api://notes", scope="notes.read", client_id="demo-app"
    )
    no_scope = idp.mint_access_token(
        sub="u-alice", audience="api://notes", scope="profile", client_id="demo-app"
    )
    for token in (other_audience, other_issuer):
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert "invalid_token" in response.headers["www-authenticate"]
    response = httpx.get(url, headers={"Authorization": f"Bearer {no_scope}"})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


def test_codehost_api_accepts_only_codehost_tokens(demo: Demo) -> None:
    idp, codehost = demo.providers["idp"], demo.providers["codehost"]
    url = demo.urls["codehost"] + "/api/repos"
    mine = codehost.mint_access_token(
        sub="ch-1002", audience="api://repos", scope="repo.read", client_id="demo-app-at-codehost"
    )
    response = httpx.get(url, headers={"Authorization": f"Bearer {mine}"})
    assert response.status_code == 200
    assert [r["full_name"] for r in response.json()["repositories"]] == [
        "bob/can-we-fix-it",
        "bob/scoop-telemetry",
    ]
    foreign = idp.mint_access_token(
        sub="ch-1002", audience="api://repos", scope="repo.read", client_id="demo-app"
    )
    assert httpx.get(url, headers={"Authorization": f"Bearer {foreign}"}).status_code == 401


def test_status_and_stats_need_no_sign_in_and_show_no_tokens(demo: Demo) -> None:
    status = httpx.get(demo.app_url + "/demo/status")
    assert status.status_code == 200
    assert status.headers["cache-control"] == "no-store"
    body = status.json()
    assert body["signed_in"] is False
    assert body["services"] == []
    assert {p["provider"] for p in body["providers"]} == {"Demo ID", "CodeHost"}
    assert httpx.get(demo.app_url + "/auth/stats").status_code == 200


def test_token_is_cached_then_refreshed_once_when_due() -> None:
    clock = FakeClock(time.time())
    alice = DEMO_USERS[0]
    with (
        Demo(ports=DemoPorts(0, 0, 0, 0), clock=clock) as demo,
        httpx.Client(base_url=demo.app_url, follow_redirects=True) as browser,
    ):
        idp = demo.providers["idp"]
        home = sign_in_at_provider(browser, "/auth/idp/login?next=/", alice)
        assert NOTES[alice.sub][0] in home.text
        assert idp.counters.count("token", grant_type="authorization_code") == 1

        def notes_state() -> dict[str, object]:
            services = browser.get("/demo/status").json()["services"]
            return next(s for s in services if s["service"] == "notes")

        assert idp.counters.count("token", grant_type=EXCHANGE) == 1  # the session's token
        state = notes_state()
        # The provider (on real time) ends the exchanged token with the sign-in token,
        # so its lifetime may be a second short of the full one.
        assert ACCESS_TOKEN_TTL - 2 <= state.pop("expires_in") <= ACCESS_TOKEN_TTL  # type: ignore[operator]
        assert ACCESS_TOKEN_TTL - 62 <= state.pop("next_refresh_in") <= ACCESS_TOKEN_TTL - 60  # type: ignore[operator]
        assert state == {"service": "notes", "flow": "token_exchange", "cached": True}
        for _ in range(3):  # cache hits: the provider sees no new token request
            assert NOTES[alice.sub][0] in browser.get("/").text
        assert idp.counters.count("token") == 2

        clock.now += ACCESS_TOKEN_TTL - 59  # past the refresh margin
        assert notes_state()["cached"] is False
        for _ in range(3):
            assert NOTES[alice.sub][0] in browser.get("/").text
        # The sign-in token was refreshed first, then exchanged again: once each.
        assert idp.counters.count("token", grant_type="refresh_token") == 1
        assert idp.counters.count("token", grant_type=EXCHANGE) == 2
        assert ACCESS_TOKEN_TTL - 62 <= notes_state()["next_refresh_in"] <= ACCESS_TOKEN_TTL - 60  # type: ignore[operator]
