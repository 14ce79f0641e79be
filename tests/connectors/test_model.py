"""Connector model: presets, config guards, rules, next validation, hashes, runtime changes."""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest
from connector_helpers import app_settings

from authrelay import ConfigurationError, Relay
from authrelay.connectors import PRESETS, ConnectorRecord, best_locale_text, check_rules
from authrelay.connectors.guards import RuleEntry, guard_config
from authrelay.connectors.idtoken import half_hash, same_identity
from authrelay.redirects import is_safe_next, safe_next


@pytest.mark.parametrize(
    "value",
    [
        "/",
        "/path?x=1#frag",
        "/a/b?q=c%20d",
    ],
)
def test_rd01_same_origin_relative_paths_are_kept(value: str) -> None:
    assert safe_next(value, "/home") == value


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "/%2f/evil.example",
        "/%5cevil.example",
        "/a\tb",
        "/a\nb",
        "/%0d%0aSet-Cookie:x",
        "/\x7f",
        " /path",
        "javascript:alert(1)",
        "/" + "a" * 2048,
        "/%ff%fe",
        "/a/b%20c",  # RD-01: a path that percent-decoding changes
        "/.%2e/evil.example",
        "/.//evil.example",
        "/\uff0fevil.example",
    ],
)
def test_rd01_rd02_rd05_unsafe_next_falls_back(value: str) -> None:
    assert safe_next(value, "/home") == "/home"


def test_rd01_absolute_urls_only_for_exact_allowed_origins() -> None:
    allowed = ["https://app.example", "https://admin.example:8443"]
    assert is_safe_next("https://app.example/x", allowed)
    assert is_safe_next("https://app.example:443/x", allowed)
    assert is_safe_next("https://admin.example:8443/", allowed)
    assert not is_safe_next("https://admin.example/", allowed)
    assert not is_safe_next("https://evil.app.example/", allowed)
    assert not is_safe_next("https://app.example.evil/", allowed)
    assert not is_safe_next("https://user@app.example/", allowed)
    assert not is_safe_next("http://app.example/", allowed)
    assert is_safe_next("https://APP.example/x?q=a%20b", allowed)
    for value in (
        "https://app.example/.%2e/x",
        "https://app.example//evil.example",
        "https://app.example:443@evil.example/",
        "https://app.example\\@evil.example/",
        "https://app.example/\uff0fevil.example",
        "https://app.example%2eevil.example/",
        "https://app.example /",
    ):
        assert not is_safe_next(value, allowed), value


def test_presets_have_metadata_in_english_and_korean() -> None:
    assert set(PRESETS) == {"github", "google", "microsoft", "gitlab", "discord", "slack"}
    for preset in PRESETS.values():
        meta = preset.metadata
        assert meta.name["en"] and meta.name["ko"]
        assert meta.logo.endswith(".svg")
        assert preset.scopes


def test_profile_mapping_to_the_common_shape() -> None:
    github = PRESETS["github"].map_profile(
        {"id": 42, "login": "octo", "email": "o@x", "avatar_url": "https://a"}
    )
    assert (github.sub, github.name, github.email, github.email_verified) == (
        "42",
        "octo",
        "o@x",
        False,
    )
    discord = PRESETS["discord"].map_profile(
        {"id": "7", "username": "d", "verified": True, "email": "d@x", "avatar": "h"}
    )
    assert discord.email_verified is True
    assert discord.picture == "https://cdn.discordapp.com/avatars/7/h.png"
    google = PRESETS["google"].map_profile({"sub": "g", "email_verified": "true"})
    assert google.email_verified is False  # only a JSON true counts
    with pytest.raises(ValueError, match="no subject"):
        PRESETS["google"].map_profile({"email": "x"})


def test_locale_negotiation_with_fallback() -> None:
    names = {"en": "Sign in", "ko": "로그인"}
    assert best_locale_text(names, "ko-KR,ko;q=0.9") == "로그인"
    assert best_locale_text(names, "fr-FR, en;q=0.1") == "Sign in"
    assert best_locale_text(names, "de") == "Sign in"
    assert best_locale_text(names, None) == "Sign in"


def test_config_guard_names_the_field_path() -> None:
    with pytest.raises(ConfigurationError) as info:
        guard_config("gh", {"preset": "githbu", "client_id": "x", "client_secret": "s"})
    assert any(p.startswith("connectors.gh.preset: unknown preset") for p in info.value.problems)
    with pytest.raises(ConfigurationError) as info:
        guard_config("gh", {"preset": "github", "client_id": "x", "clientsecret": "s"})
    assert any("connectors.gh.clientsecret" in p for p in info.value.problems)
    with pytest.raises(ConfigurationError) as info:
        guard_config(
            "o",
            {
                "standard": "oauth2",
                "client_id": "x",
                "client_secret": "s",
                "authorization_endpoint": "https://a",
                "token_endpoint": "https://t",
            },
        )
    assert any("userinfo_endpoint" in p for p in info.value.problems)


def test_id04_hmac_or_none_id_token_algorithms_are_refused() -> None:
    for alg in ("HS256", "none"):
        with pytest.raises(ConfigurationError):
            app_settings(
                "https://idp.example",
                "https://app.example",
                connector={"id_token_signed_response_alg": alg},
            )


def test_rules_unique_target_platform_and_one_email_one_sms() -> None:
    entries = [
        RuleEntry("a", "github", "social", "web"),
        RuleEntry("b", "github", "social", "web"),
        RuleEntry("c", "github", "social", "native"),
        RuleEntry("m1", "mail", "email", None),
        RuleEntry("m2", "mail2", "email", None),
        RuleEntry("s", "sms", "sms", "web"),
    ]
    problems = check_rules(entries)
    assert any(p.startswith("connectors.b.target") for p in problems)
    assert not any(p.startswith("connectors.c.") for p in problems)
    assert any("at most one email connector" in p for p in problems)
    assert any(p.startswith("connectors.s.platform") for p in problems)


def test_rules_are_checked_at_start() -> None:
    two = {"preset": "github", "client_id": "x", "client_secret": "s"}
    with pytest.raises(ConfigurationError) as info:
        Relay(
            app_settings(
                "https://idp.example", "https://app.example", connectors={"one": two, "two": two}
            )
        )
    assert any("already used by connectors.one" in p for p in info.value.problems)


def test_ac07_public_base_url_required_outside_dev_mode() -> None:
    settings = app_settings("https://idp.example", "https://app.example")
    data = settings.model_dump(mode="python")
    data["public_base_url"] = None
    data["secret_keys"] = ["k" * 32]
    with pytest.raises(ConfigurationError) as info:
        Relay(type(settings).model_validate(data))
    assert any(p.startswith("public_base_url") for p in info.value.problems)


def test_runtime_change_is_guarded_and_nothing_saved_when_invalid() -> None:
    relay = Relay(app_settings("https://idp.example", "https://app.example"))
    registry = relay.connectors
    run = relay.sync_driver.run
    with pytest.raises(ConfigurationError):
        run(registry.update("idp", {"token_endpoint_auth_method": "private_key_jwt"}))  # no key
    assert run(registry.store.load_connector_records()) == {}
    record = run(
        registry.update(
            "idp",
            {
                "standard": "oidc",
                "issuer": "https://idp.example",
                "client_id": "x",
                "client_secret": "top-secret",
                "sync_profile": True,
            },
            metadata={"logo": "custom.svg"},
        )
    )
    assert isinstance(record, ConnectorRecord)
    assert "top-secret" not in repr(record)
    saved = run(registry.store.load_connector_records())
    assert saved["idp"]["config"]["client_secret"] == "top-secret"  # sealed at rest
    assert registry.get("idp").metadata.logo == "custom.svg"  # type: ignore[union-attr]
    raw = relay.backend.get(relay.settings.store.key_prefix + "connector:idp")
    assert raw is not None and b"top-secret" not in raw[0]
    relay.close()


def test_id08_hash_follows_the_alg_and_unknown_algs_fail_closed() -> None:
    token = "access-token-value"
    digest = hashlib.sha384(token.encode()).digest()
    assert half_hash("ES384", token) == base64.urlsafe_b64encode(digest[:24]).rstrip(b"=").decode()
    with pytest.raises(KeyError):
        half_hash("Ed448", token)


def test_rt05_refreshed_id_token_must_name_the_same_identity() -> None:
    original = {"iss": "i", "sub": "s", "aud": "c", "azp": "c"}
    assert same_identity(original, {"iss": "i", "sub": "s", "aud": "c"})
    assert not same_identity(original, {"iss": "i", "sub": "other", "aud": "c"})
    assert not same_identity(original, {"iss": "x", "sub": "s", "aud": "c"})
    assert not same_identity(original, {"iss": "i", "sub": "s", "aud": ["c", "d"]})
    assert not same_identity(original, {"iss": "i", "sub": "s", "aud": "c", "azp": "d"})


def test_ac09_client_secret_basic_form_encodes_before_base64() -> None:
    relay = Relay(
        app_settings(
            "https://idp.example",
            "https://app.example",
            connector={"client_id": "my id", "client_secret": "a:b%c+d"},
        )
    )
    connector = relay.connectors.get("idp")
    assert connector is not None
    request = connector.token_request("https://idp.example/token", {"grant_type": "x"})
    assert isinstance(request, httpx.Request)
    encoded = request.headers["authorization"].removeprefix("Basic ")
    assert base64.b64decode(encoded).decode() == "my+id:a%3Ab%25c%2Bd"
    relay.close()
