"""``authrelay check`` runs every rule the app runs at start, offline, and explains problems."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from authrelay import ConfigurationError, Relay, Settings
from authrelay.cli import main as cli_main

KEY = "k" * 32
HEAD = f'secret_keys = ["{KEY}"]\n'
GITHUB = (
    '[connectors.github]\npreset = "github"\nclient_id = "gh-app"\nclient_secret = "gh-secret"\n'
)


def _check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "authrelay.toml"
    path.write_text(text)
    code = cli_main(["check", str(path)])
    out, err = capsys.readouterr()
    return code, out + err


def _refused_at_start(text: str, tmp_path: Path) -> ConfigurationError:
    path = tmp_path / "start.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        Relay(Settings.from_toml(path))
    return info.value


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("idp.example.com", "bearer.issuer: must be an absolute URL"),
        ("http://idp.example.com", "bearer.issuer: must use https"),
    ],
)
def test_check_refuses_issuer_the_app_refuses(
    issuer: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = HEAD + f'[bearer]\nissuer = "{issuer}"\naudience = "api"\n'
    code, output = _check(tmp_path, text, capsys)
    assert code == 1
    assert "invalid" in output
    assert expected in output
    # and the same mistake stops the app with the same message
    with pytest.raises(ConfigurationError, match=expected.split(": ", 1)[1]):
        Settings.from_toml(tmp_path / "authrelay.toml")


def test_check_refuses_connectors_without_public_base_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = HEAD + GITHUB
    problem = _refused_at_start(text, tmp_path)
    assert any(p.startswith("public_base_url: required") for p in problem.problems)
    code, output = _check(tmp_path, text, capsys)
    assert code == 1
    assert "public_base_url: required for connectors" in output


def test_check_runs_relay_rules_of_services_and_connectors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        HEAD
        + 'public_base_url = "https://app.example"\n'
        + '[connectors.github]\npreset = "githup"\nclient_id = "a"\nclient_secret = "b"\n'
        + '[services.orders]\nbase_url = "https://orders.example"\nflow = "api_key"\n'
        + 'api_key = { value = "v" }\nheaders = { Authorization = "x" }\n'
    )
    code, output = _check(tmp_path, text, capsys)
    assert code == 1
    assert "connectors.github.preset: unknown preset 'githup'; did you mean 'github'?" in output
    assert "services.orders.headers: 'Authorization' may not be set" in output


def test_check_is_offline_and_leaves_no_store_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "store.db"
    text = (
        HEAD
        + 'public_base_url = "https://app.example"\n'
        + f'[store]\nurl = "sqlite:///{db}"\n'
        + '[bearer]\nissuer = "https://idp.invalid"\naudience = "api"\n'
        + '[connectors.corp]\nstandard = "oidc"\nissuer = "https://sso.invalid"\n'
        + 'client_id = "c"\nclient_secret = "s"\n'
    )
    code, output = _check(tmp_path, text, capsys)
    assert code == 0, output
    assert "valid" in output
    assert not db.exists()


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("app.example", "public_base_url: must be an absolute URL"),
        ("https://app.example/?x=1", "public_base_url: must not carry a query"),
        ("https://app.example/#top", "public_base_url: must not carry a fragment"),
        ("http://app.example", "public_base_url: must use https"),
        ("http://127.0.0.1:8000", "http.allow_insecure_loopback"),
    ],
)
def test_public_base_url_is_checked(
    base: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _check(tmp_path, HEAD + f'public_base_url = "{base}"\n' + GITHUB, capsys)
    assert code == 1
    assert expected in output


def test_public_base_url_loopback_http_with_the_opt_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        HEAD
        + 'public_base_url = "http://127.0.0.1:8000"\n'
        + "[http]\nallow_insecure_loopback = true\n"
        + GITHUB
    )
    code, output = _check(tmp_path, text, capsys)
    assert code == 0, output
    settings = Settings.from_toml(tmp_path / "authrelay.toml")
    assert settings.public_base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEAD + "[sesion]\n", "sesion: unknown setting; did you mean 'session'?"),
        (
            HEAD + '[bearer]\nissuer = "https://idp.example"\naudiance = "api"\n',
            "bearer.audiance: unknown setting; did you mean 'audience'?",
        ),
        (
            HEAD
            + '[services.orders]\nbase_url = "https://o.example"\nflow = "forward"\n'
            + 'audience = "a"\nscope = ["x"]\n'
            + '[bearer]\nissuer = "https://idp.example"\naudience = "api"\n',
            "services.orders.scope: unknown setting; did you mean 'scopes'?",
        ),
        (
            HEAD + 'public_base_url = "https://app.example"\n' + GITHUB + 'client_secrt = "x"\n',
            "connectors.github.client_secrt: unknown setting; did you mean 'client_secret'?",
        ),
    ],
)
def test_typos_name_the_path_and_suggest_the_key(
    text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _check(tmp_path, text, capsys)
    assert code == 1
    assert expected in output


def test_missing_secret_names_the_exact_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _check(tmp_path, HEAD + '[client]\nclient_id = "app"\n', capsys)
    assert code == 1
    assert "client.client_secret: required with client_secret_basic" in output


def test_check_through_the_console_script(tmp_path: Path) -> None:
    path = tmp_path / "authrelay.toml"
    path.write_text(HEAD + '[bearer]\nissuer = "idp.example.com"\naudience = "api"\n')
    run = subprocess.run(
        [sys.executable, "-m", "authrelay.cli", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "bearer.issuer: must be an absolute URL" in run.stderr
    assert KEY not in run.stdout + run.stderr


def test_relay_reports_the_problems_of_every_part_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        HEAD
        + 'public_base_url = "https://app.example"\n'
        + '[bearer]\nissuer = "https://idp.example"\naudience = "api"\n'
        + 'introspection_endpoint = "https://idp.example/introspect"\n'
        + '[connectors.github]\npreset = "githup"\nclient_id = "a"\nclient_secret = "b"\n'
        + '[services.orders]\nbase_url = "https://orders.example"\nflow = "api_key"\n'
        + 'api_key = { value = "v" }\nheaders = { Cookie = "x" }\n'
    )
    expected = [
        "bearer.introspection_client: introspection needs client credentials",
        "services.orders.headers: 'Cookie' may not be set",
        "connectors.github.preset: unknown preset 'githup'",
    ]
    problems = str(_refused_at_start(text, tmp_path))
    code, output = _check(tmp_path, text, capsys)
    assert code == 1
    for problem in expected:
        assert problem in problems
        assert problem in output


def test_agent_without_a_secret_is_a_clear_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = HEAD + '[agents.bot]\nclient_id = "bot"\n'
    code, output = _check(tmp_path, text, capsys)
    assert code == 1
    assert "agents.bot.client_secret: required with client_secret_basic" in output
    assert "Traceback" not in output


def test_each_problem_is_one_whole_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = _check(tmp_path, "dev_mode = false\n", capsys)
    assert code == 1
    lines = [line.strip() for line in output.splitlines() if line.startswith("  ")]
    assert lines == [
        "secret_keys: at least one key is required (only dev_mode with the memory store "
        "may run without; ST-02)"
    ]


def test_endpoint_problems_name_the_endpoint_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        HEAD
        + 'public_base_url = "https://app.example"\n'
        + '[bearer]\nissuer = "https://idp.example"\naudience = "api"\n'
        + 'jwks_uri = "http://idp.example/jwks"\n'
        + '[connectors.corp]\nstandard = "oauth2"\nclient_id = "c"\nclient_secret = "s"\n'
        + 'authorization_endpoint = "https://sso.example/authorize"\n'
        + 'token_endpoint = "http://sso.example/token"\n'
        + 'userinfo_endpoint = "https://sso.example/me"\n'
    )
    code, output = _check(tmp_path, text, capsys)
    assert code == 1
    assert "bearer.jwks_uri: endpoint URL 'http://idp.example/jwks' must use https" in output
    assert "connectors.corp.token_endpoint: endpoint URL" in output
