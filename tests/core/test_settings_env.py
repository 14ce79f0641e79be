"""``Settings.from_env``: pydantic-settings rules (strings stay strings), nesting, .env files."""

from __future__ import annotations

from pathlib import Path

import pytest

from authrelay import ConfigurationError, Settings

KEY = "k" * 32


def test_numeric_client_id_stays_a_string() -> None:
    settings = Settings.from_env(
        env={
            "AUTHRELAY_SECRET_KEYS": KEY,
            "AUTHRELAY_CLIENT__CLIENT_ID": "1234567",
            "AUTHRELAY_CLIENT__CLIENT_SECRET": "007",
        }
    )
    assert settings.client is not None
    assert settings.client.client_id == "1234567"
    assert settings.client.client_secret is not None
    assert settings.client.client_secret.get_secret_value() == "007"


def test_json_looking_strings_stay_strings() -> None:
    settings = Settings.from_env(
        env={
            "AUTHRELAY_SECRET_KEYS": KEY,
            "AUTHRELAY_BEARER__ISSUER": "https://idp.example",
            "AUTHRELAY_BEARER__AUDIENCE": '["api", "true"]',
            "AUTHRELAY_ROUTES__AFTER_LOGIN": "/1",
            "AUTHRELAY_CONNECTORS": '{"corp": {"standard": "oidc", "issuer": "https://sso.example",'
            ' "client_id": "42", "client_secret": "true"}}',
            "AUTHRELAY_PUBLIC_BASE_URL": "https://app.example",
        }
    )
    assert settings.bearer is not None and settings.bearer.audience == ["api", "true"]
    assert settings.routes.after_login == "/1"
    assert settings.connectors["corp"].client_id == "42"


def test_nested_services_and_connectors_by_path() -> None:
    settings = Settings.from_env(
        env={
            "AUTHRELAY_SECRET_KEYS": KEY,
            "AUTHRELAY_PUBLIC_BASE_URL": "https://app.example",
            "AUTHRELAY_SERVICES__BILLING__BASE_URL": "https://billing.example",
            "AUTHRELAY_SERVICES__BILLING__FLOW": "api_key",
            "AUTHRELAY_SERVICES__BILLING__API_KEY__VALUE": "12345",
            "AUTHRELAY_SERVICES__BILLING__SCOPES": '["read", "write"]',
            "AUTHRELAY_SERVICES__BILLING__HEADERS": '{"X-Tenant": "7"}',
            "AUTHRELAY_CONNECTORS__GITHUB__PRESET": "github",
            "AUTHRELAY_CONNECTORS__GITHUB__CLIENT_ID": "987654",
            "AUTHRELAY_CONNECTORS__GITHUB__CLIENT_SECRET": "gh-secret",
            "AUTHRELAY_SESSION__MAX_AGE": "600",
            "AUTHRELAY_SESSION__IDLE_TIMEOUT": "300",
        }
    )
    billing = settings.services["billing"]
    assert billing.api_key is not None
    assert billing.api_key.value.get_secret_value() == "12345"
    assert billing.scopes == ["read", "write"]
    assert billing.headers == {"X-Tenant": "7"}
    assert settings.connectors["github"].client_id == "987654"
    assert settings.session.max_age == 600


def test_secret_keys_json_list_or_commas() -> None:
    other = "z" * 40
    as_json = Settings.from_env(env={"AUTHRELAY_SECRET_KEYS": f'["{KEY}", "{other}"]'})
    as_commas = Settings.from_env(env={"AUTHRELAY_SECRET_KEYS": f"{KEY}, {other}"})
    for settings in (as_json, as_commas):
        assert [k.get_secret_value() for k in settings.secret_keys] == [KEY, other]


def test_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"AUTHRELAY_SECRET_KEYS={KEY}\n"
        "AUTHRELAY_CLIENT__CLIENT_ID=1234567\n"
        "AUTHRELAY_CLIENT__CLIENT_SECRET=from-dotenv\n"
        "UNRELATED=1\n"
    )
    monkeypatch.setenv("AUTHRELAY_CLIENT__CLIENT_SECRET", "from-environment")
    settings = Settings.from_env(env_file=env_file)
    assert settings.client is not None
    assert settings.client.client_id == "1234567"
    # the process environment wins over the file, as in pydantic-settings
    assert settings.client.client_secret is not None
    assert settings.client.client_secret.get_secret_value() == "from-environment"


def test_env_errors_name_the_path_and_keep_secrets_out() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            env={
                "AUTHRELAY_SECRET_KEYS": KEY,
                "AUTHRELAY_BEARER__ISSUER": "https://idp.example",
                "AUTHRELAY_BEARER__AUDIANCE": "api",
            }
        )
    text = str(info.value)
    assert "bearer.audiance: unknown setting; did you mean 'audience'?" in text
    assert KEY not in text


def test_settings_from_env_stay_frozen() -> None:
    settings = Settings.from_env(env={"AUTHRELAY_SECRET_KEYS": KEY})
    with pytest.raises(Exception, match="frozen"):
        settings.dev_mode = True  # type: ignore[misc]


def test_one_string_for_a_setting_that_takes_one_or_many() -> None:
    settings = Settings.from_env(
        env={
            "AUTHRELAY_SECRET_KEYS": KEY,
            "AUTHRELAY_BEARER__ISSUER": "https://idp.example",
            "AUTHRELAY_BEARER__AUDIENCE": "api://orders",
        }
    )
    assert settings.bearer is not None and settings.bearer.audience == ["api://orders"]


def test_a_secret_that_looks_like_json_stays_a_string() -> None:
    secret = '[not-json{"'
    settings = Settings.from_env(
        env={
            "AUTHRELAY_SECRET_KEYS": KEY,
            "AUTHRELAY_CLIENT__CLIENT_ID": "app",
            "AUTHRELAY_CLIENT__CLIENT_SECRET": secret,
        }
    )
    assert settings.client is not None and settings.client.client_secret is not None
    assert settings.client.client_secret.get_secret_value() == secret


def test_broken_json_names_the_variable_not_its_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            env={"AUTHRELAY_SECRET_KEYS": KEY, "AUTHRELAY_SERVICES__X__SCOPES": '["read", sec'}
        )
    assert any(  # pydantic orders the problems differently across releases
        problem.startswith(
            "services.x.scopes: the value of AUTHRELAY_SERVICES__X__SCOPES is not valid JSON"
        )
        for problem in info.value.problems
    )
    assert '["read", sec' not in str(info.value)


def test_unknown_variable_with_the_prefix_is_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env={"AUTHRELAY_SECRET_KEYS": KEY, "AUTHRELAY_SESION__MAX_AGE": "60"})
    assert info.value.problems == [
        "sesion: unknown setting (from AUTHRELAY_SESION__MAX_AGE); did you mean 'session'?"
    ]
