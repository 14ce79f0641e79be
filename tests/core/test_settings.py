"""Settings: validated once, errors name the field, secrets never shown."""

from __future__ import annotations

import pytest

from authrelay import ConfigurationError, Settings
from authrelay.cli import main as cli_main

KEY = "k" * 32


def test_valid_minimal_settings() -> None:
    settings = Settings(secret_keys=[KEY])
    assert settings.routes.prefix == "/auth"
    assert settings.session.effective_cookie_name == "__Host-authrelay"


def test_unknown_key_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.model_validate({"secret_keys": [KEY], "sesion": {}})
    assert "sesion: unknown setting" in str(info.value)


def test_nested_unknown_key_names_the_path() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.model_validate(
            {
                "secret_keys": [KEY],
                "services": {
                    "orders": {"base_url": "https://o", "flow": "forward", "audince": "x"}
                },
            }
        )
    assert "services.orders.audince: unknown setting" in str(info.value)


def test_flow_needs_an_endpoint_message() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(
            secret_keys=[KEY],
            services={"orders": {"base_url": "https://o", "flow": "token_exchange"}},
        )
    assert (
        "services.orders.flow: 'token_exchange' needs bearer.issuer or services.orders.token_endpoint"
        in info.value.problems
    )


def test_st02_no_secret_keys_refused_outside_dev_memory() -> None:
    with pytest.raises(ConfigurationError, match="secret_keys"):
        Settings()
    Settings(dev_mode=True)  # memory store in dev mode may run without keys
    with pytest.raises(ConfigurationError, match="secret_keys"):
        Settings(dev_mode=True, store={"url": "sqlite:///x.db"})


def test_short_secret_key_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"secret_keys\[0\] must be at least 32 bytes"):
        Settings(secret_keys=["short"])


@pytest.mark.parametrize("alg", ["none", "NONE", "HS256"])
def test_jw01_bearer_algorithms_never_none_or_hmac(alg: str) -> None:
    with pytest.raises(ConfigurationError, match=r"bearer\.algorithms"):
        Settings(
            secret_keys=[KEY], bearer={"issuer": "https://i", "audience": "a", "algorithms": [alg]}
        )


def test_secrets_are_not_in_repr_or_str() -> None:
    settings = Settings(
        secret_keys=[KEY],
        client={"client_id": "app", "client_secret": "sup3r-secret-value"},
        services={
            "x": {
                "base_url": "https://x",
                "flow": "api_key",
                "api_key": {"value": "api-key-canary"},
            }
        },
    )
    text = repr(settings) + str(settings) + repr(settings.services["x"])
    for secret in (KEY, "sup3r-secret-value", "api-key-canary"):
        assert secret not in text


def test_settings_are_frozen() -> None:
    settings = Settings(secret_keys=[KEY])
    with pytest.raises(Exception, match="frozen"):
        settings.dev_mode = True  # type: ignore[misc]


def test_from_toml_interpolates_environment(tmp_path) -> None:
    path = tmp_path / "authrelay.toml"
    path.write_text(
        'secret_keys = ["${APP_KEY}"]\n'
        "[services.billing]\n"
        'base_url = "https://billing.example"\n'
        'flow = "api_key"\n'
        'api_key = { value = "${BILLING_KEY}", header = "X-Api-Key", scheme = "" }\n'
    )
    settings = Settings.from_toml(path, env={"APP_KEY": KEY, "BILLING_KEY": "b-key"})
    assert settings.secret_keys[0].get_secret_value() == KEY
    assert settings.services["billing"].api_key is not None
    assert settings.services["billing"].api_key.value.get_secret_value() == "b-key"


def test_from_toml_missing_variable_is_named(tmp_path) -> None:
    path = tmp_path / "authrelay.toml"
    path.write_text('secret_keys = ["${NOT_SET_ANYWHERE}"]\n')
    with pytest.raises(ConfigurationError) as info:
        Settings.from_toml(path, env={})
    assert "secret_keys[0]: environment variable NOT_SET_ANYWHERE is not set" in info.value.problems


def test_from_toml_bad_toml_and_missing_file(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("secret_keys = [")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        Settings.from_toml(bad)
    with pytest.raises(ConfigurationError, match="no such settings file"):
        Settings.from_toml(tmp_path / "absent.toml")


def test_from_env_nested_and_lists() -> None:
    env = {
        "AUTHRELAY_SECRET_KEYS": f"{KEY},{'z' * 40}",
        "AUTHRELAY_ROUTES__PREFIX": "/login",
        "AUTHRELAY_SESSION__MAX_AGE": "600",
        "AUTHRELAY_SESSION__IDLE_TIMEOUT": "300",
        "OTHER": "ignored",
    }
    settings = Settings.from_env(env=env)
    assert len(settings.secret_keys) == 2
    assert settings.routes.prefix == "/login"
    assert settings.session.max_age == 600


def test_cli_check_lists_what_a_file_defines(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CLI_KEY", KEY)
    path = tmp_path / "authrelay.toml"
    path.write_text(
        'secret_keys = ["${CLI_KEY}"]\n'
        "[services.billing]\n"
        'base_url = "https://billing.example"\n'
        'flow = "api_key"\n'
        'api_key = { value = "secret-api-key" }\n'
    )
    assert cli_main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "billing: api_key -> https://billing.example" in out
    assert "secret-api-key" not in out and KEY not in out


def test_cli_check_reports_errors(tmp_path, capsys) -> None:
    path = tmp_path / "authrelay.toml"
    path.write_text('secret_keys = ["' + KEY + '"]\n[routes]\nprefix = "auth/"\n')
    assert cli_main(["check", str(path)]) == 1
    assert "routes.prefix" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"agents": {"bot": {"client_id": "b", "client_secret": "s", "scope": []}}},
         "agents.bot.scope: unknown setting; did you mean 'scopes'?"),
        ({"services": {"x": {"base_url": "https://x.example", "flow": "api_key",
                             "api_key": {"value": "v", "heder": "X-Key"}}}},
         "services.x.api_key.heder: unknown setting; did you mean 'header'?"),
        ({"services": {"x": {"base_url": "https://x.example", "flow": "client_credentials",
                             "token_endpoint": "https://idp.example/token",
                             "client": {"client_id": "c", "client_secret": "s", "privat_key": "k"}}}},
         "services.x.client.privat_key: unknown setting; did you mean 'private_key'?"),
        ({"http": {"allow_insecure_loopbak": True}},
         "http.allow_insecure_loopbak: unknown setting; did you mean 'allow_insecure_loopback'?"),
        ({"store": {"zzz": 1}}, "store.zzz: unknown setting (is it misspelled?)"),
    ],
)  # fmt: skip
def test_unknown_keys_at_every_depth_suggest_the_nearest(
    data: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.model_validate({"secret_keys": [KEY], **data})
    assert expected in info.value.problems


def test_every_second_valued_setting_takes_a_unit_and_plain_numbers_still_work() -> None:
    settings = Settings.model_validate(
        {
            "secret_keys": [KEY],
            "http": {"jwks_max_stale": "2h", "token_timeout": 7, "connect_timeout": "1.5"},
            "store": {"timeout": "2s"},
            "admin": {"refresh_interval": "5m"},
            "services": {
                "x": {
                    "base_url": "https://x.example",
                    "flow": "client_credentials",
                    "token_endpoint": "https://idp.example/token",
                    "client": {"client_id": "c", "client_secret": "s"},
                    "timeout": "1m",
                    "negative_cache_ttl": 0,
                    "token_retry_deadline": "30s",
                }
            },
        }
    )
    assert (settings.http.jwks_max_stale, settings.http.token_timeout) == (7200.0, 7.0)
    assert settings.http.connect_timeout == 1.5
    assert (settings.store.timeout, settings.admin.refresh_interval) == (2.0, 300.0)
    service = settings.services["x"]
    assert (service.timeout, service.negative_cache_ttl) == (60.0, 0.0)
    assert service.token_retry_deadline == 30.0


def test_whole_second_settings_take_units_and_stay_integers() -> None:
    settings = Settings.model_validate(
        {"secret_keys": [KEY], "session": {"max_age": "12h", "idle_timeout": "1800"}}
    )
    assert (settings.session.max_age, settings.session.idle_timeout) == (43200, 1800)
    assert isinstance(settings.session.max_age, int)  # it becomes a cookie's Max-Age
    with pytest.raises(ConfigurationError) as info:
        Settings.model_validate({"secret_keys": [KEY], "session": {"max_age": "1.5s"}})
    assert "session.max_age" in str(info.value)
    assert "fractional part" in str(info.value)


@pytest.mark.parametrize(
    ("section", "value", "wording"),
    [
        ({"http": {"jwks_max_stale": "soon"}}, "http.jwks_max_stale", "'10m'"),
        ({"http": {"token_timeout": 0}}, "http.token_timeout", "greater than 0"),
        ({"admin": {"refresh_interval": "6m"}}, "admin.refresh_interval", "less than or equal"),
    ],
)
def test_bad_durations_are_refused_naming_the_field(
    section: dict[str, object], value: str, wording: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.model_validate({"secret_keys": [KEY], **section})
    assert value in str(info.value)
    assert wording in str(info.value)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("http://127.0.0.1:9000/hook", True),
        ("http://[::1]:9000/hook", True),
        ("http://localhost/hook", True),
        ("https://hooks.example/x", True),
        ("http://hooks.example/x", False),
        ("http://localhost.hooks.example/x", False),
        ("http://127.0.0.1.nip.io/x", False),
    ],
)
def test_events_url_is_https_or_plain_http_on_a_loopback_host(url: str, accepted: bool) -> None:
    data = {"secret_keys": [KEY], "events": {"url": url, "secret": "s" * 32}}
    if accepted:
        assert Settings.model_validate(data).events is not None
        return
    with pytest.raises(ConfigurationError) as info:
        Settings.model_validate(data)
    assert "events.url: " in str(info.value)
    assert "loopback" in str(info.value)
