"""Pushed authorization requests (RFC 9126) against the strict test provider, ASGI and WSGI.

The requirement IDs (PAR-01..PAR-04) are those of docs/security.md.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from connector_helpers import jwt_payload, query_of, run_app
from joserfc.jwk import RSAKey

from authrelay import ConfigurationError, Relay, Settings
from authrelay.testing import IdentityProvider, OAuthClient, serve_identity_provider

JSON = {"accept": "application/json"}
REQUEST_URI = "urn:ietf:params:oauth:request_uri:"


class Rewrite(httpx.BaseTransport):
    """Real HTTP to the provider; ``change(path, request, response)`` may replace an answer."""

    def __init__(
        self, change: Callable[[str, httpx.Request, httpx.Response], httpx.Response | None]
    ) -> None:
        self.inner = httpx.HTTPTransport()
        self.change = change
        self.seen: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        response = self.inner.handle_request(request)
        response.read()
        return self.change(request.url.path, request, response) or response

    def close(self) -> None:
        self.inner.close()


def par_answer(body: object, status: int = 201) -> Rewrite:
    """A transport whose PAR endpoint answers ``body`` (raw bytes or JSON)."""

    def change(path: str, _: httpx.Request, __: httpx.Response) -> httpx.Response | None:
        if path != "/par":
            return None
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers={"content-type": "application/json"})

    return Rewrite(change)


@pytest.fixture
def strict_idp(
    make_identity_provider: Callable[..., IdentityProvider],
) -> Iterator[IdentityProvider]:
    """A provider that requires pushed authorization requests."""
    idp = make_identity_provider(issuer=None, require_par=True)
    with serve_identity_provider(idp):
        yield idp


def start(app: Any) -> httpx.Response:
    return app.client.get(f"{app.base}/auth/idp/login", params={"next": "/after"}, headers=JSON)


def test_par01_browser_carries_only_client_id_and_request_uri(
    strict_idp: IdentityProvider, shell: str
) -> None:
    with run_app(strict_idp, wsgi=shell == "wsgi") as app:
        begun = start(app)
        assert begun.status_code == 302, begun.text
        location = begun.headers["location"]
        assert location.startswith(f"{strict_idp.issuer}/authorize?")
        params = query_of(location)
        assert set(params) == {"client_id", "request_uri"}
        assert params["client_id"] == "test-client"
        assert params["request_uri"].startswith(REQUEST_URI)
        (pushed,) = [p for p, _ in strict_idp.state.pushed.values()]
        assert pushed["code_challenge_method"] == "S256"
        assert len(pushed["code_challenge"]) == 43
        assert len(pushed["state"]) >= 43 and len(pushed["nonce"]) >= 43
        assert pushed["redirect_uri"] == f"{app.base}/auth/idp/callback"
        assert pushed["state"] not in location and pushed["nonce"] not in location
        at_idp = app.client.get(location)
        assert at_idp.status_code == 302, at_idp.text
        done = app.client.get(at_idp.headers["location"])
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/after"
        assert app.me()["subject"] == "idp|alice"
    assert strict_idp.counters.count(endpoint="par") == 1


def test_par01_par_true_pushes_when_the_provider_does_not_require_it(
    idp: IdentityProvider, shell: str
) -> None:
    with run_app(idp, wsgi=shell == "wsgi", connector={"par": True}) as app:
        assert app.login().status_code == 303
        assert app.me()["authenticated"] is True
    assert idp.counters.count(endpoint="par") == 1


def test_par_auto_sends_a_plain_request_when_not_required(idp: IdentityProvider) -> None:
    with run_app(idp) as app:
        params = query_of(start(app).headers["location"])
    assert "request_uri" not in params and params["code_challenge_method"] == "S256"
    assert idp.counters.count(endpoint="par") == 0


def test_par_false_against_a_provider_that_requires_it_is_refused_and_logged(
    strict_idp: IdentityProvider, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, "authrelay.connectors.par"),
        run_app(strict_idp, wsgi=shell == "wsgi", connector={"par": False}) as app,
    ):
        callback = app.authorize()
        assert query_of(callback)["error"] == "invalid_request"  # the provider refused it
        response = app.client.get(callback, headers=JSON)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert app.me()["authenticated"] is False
    assert strict_idp.counters.count(endpoint="par") == 0
    assert any("par = false" in r.getMessage() for r in caplog.records)


def test_par02_par_true_without_a_discovered_endpoint_fails_clearly(
    idp: IdentityProvider,
) -> None:
    def strip(path: str, _: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if not path.endswith("/openid-configuration"):
            return None
        doc = response.json()
        del doc["pushed_authorization_request_endpoint"]
        return httpx.Response(200, json=doc)

    with run_app(idp, wsgi=True, transport=Rewrite(strip), connector={"par": True}) as app:
        begun = start(app)
    assert begun.status_code == 502
    assert begun.json()["error"] == "upstream_token_error"
    assert "pushed_authorization_request_endpoint" in begun.json()["error_description"]
    assert "location" not in begun.headers  # never a silent plain request
    assert idp.counters.count(endpoint="authorize") == 0


def test_par02_par_true_without_endpoints_to_discover_is_a_configuration_error() -> None:
    settings = Settings.model_validate(
        {
            "secret_keys": ["connector-tests-secret-key-000000"],
            "public_base_url": "https://app.example",
            "connectors": {
                "idp": {
                    "standard": "oauth2",
                    "client_id": "c",
                    "client_secret": "s",
                    "authorization_endpoint": "https://idp.example/authorize",
                    "token_endpoint": "https://idp.example/token",
                    "userinfo_endpoint": "https://idp.example/userinfo",
                    "userinfo_mapping": {"sub": "id"},
                    "par": True,
                }
            },
        }
    )
    with pytest.raises(ConfigurationError, match="pushed_authorization_request_endpoint"):
        Relay(settings).close()


def test_explicit_endpoints_include_the_par_endpoint(idp: IdentityProvider, shell: str) -> None:
    base = idp.issuer
    explicit = {
        "discovery": False,
        "par": True,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
        "userinfo_endpoint": f"{base}/userinfo",
        "pushed_authorization_request_endpoint": f"{base}/par",
    }
    with run_app(idp, wsgi=shell == "wsgi", connector=explicit) as app:
        assert "request_uri" in query_of(start(app).headers["location"])
        assert app.login().status_code == 303
    assert idp.counters.count(endpoint="par") == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"expires_in": 60}, 201, id="no-request_uri"),
        pytest.param({"request_uri": 7, "expires_in": 60}, 201, id="request_uri-not-string"),
        pytest.param({"request_uri": "", "expires_in": 60}, 201, id="request_uri-empty"),
        pytest.param({"request_uri": "urn:x y", "expires_in": 60}, 201, id="request_uri-space"),
        pytest.param({"request_uri": "urn:x"}, 201, id="no-expires_in"),
        pytest.param({"request_uri": "urn:x", "expires_in": 0}, 201, id="expires_in-zero"),
        pytest.param({"request_uri": "urn:x", "expires_in": "60"}, 201, id="expires_in-string"),
        pytest.param({"request_uri": "urn:x", "expires_in": True}, 201, id="expires_in-bool"),
        pytest.param({"request_uri": "urn:x", "expires_in": 1.5}, 201, id="expires_in-float"),
        pytest.param(b"not json", 201, id="not-json"),
        pytest.param(b'{"request_uri":"a","request_uri":"b","expires_in":60}', 201, id="dup"),
        pytest.param(["urn:x"], 201, id="not-an-object"),
    ],
)
def test_par03_unusable_answers_fail_the_login_cleanly(
    idp: IdentityProvider, body: object, status: int
) -> None:
    with run_app(
        idp, wsgi=True, transport=par_answer(body, status), connector={"par": True}
    ) as app:
        begun = start(app)
    assert begun.status_code == 502, begun.text
    assert begun.json()["error"] == "upstream_token_error"
    assert "location" not in begun.headers


def test_par04_refusal_is_502_naming_only_the_error_code(idp: IdentityProvider, shell: str) -> None:
    with run_app(idp, wsgi=shell == "wsgi", connector={"par": True}) as app:
        idp.faults.add("par", error="invalid_client")
        begun = start(app)
        assert begun.status_code == 502
        body = begun.json()
        assert body["error"] == "upstream_token_error" and body["connector"] == "idp"
        assert "invalid_client" in body["error_description"]
        assert "test-secret" not in begun.text
        idp.faults.add("par", error="invalid_request")
        page = app.client.get(f"{app.base}/auth/idp/login", headers={"accept": "text/html"})
        assert page.status_code == 502 and "invalid_request" in page.text
        assert "test-secret" not in page.text


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 500}, id="500"),
        pytest.param({"status": 503, "retry_after": 30}, id="503"),
        pytest.param({"status": 429, "retry_after": 7}, id="429"),
        pytest.param({"drop": True}, id="dropped"),
    ],
)
def test_par04_provider_failure_is_503_with_retry_after_and_not_retried(
    idp: IdentityProvider, shell: str, fault: dict[str, Any]
) -> None:
    with run_app(idp, wsgi=shell == "wsgi", connector={"par": True}) as app:
        idp.faults.add("par", **fault)
        begun = start(app)
    assert begun.status_code == 503, begun.text
    assert begun.json()["error"] == "temporarily_unavailable"
    expected = str(fault.get("retry_after", 5))
    assert begun.headers["retry-after"] == expected
    assert idp.counters.count(endpoint="par") == 1  # a pushed request may have been stored


def test_par_private_key_jwt_assertion_names_the_issuer(
    make_identity_provider: Callable[..., IdentityProvider],
) -> None:
    key = RSAKey.generate_key(2048, {"kid": "connector-key"})
    client = OAuthClient(
        "test-client",
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [key.as_dict(private=False)]},
        redirect_uris=("http://127.0.0.1/auth/idp/callback",),
        loopback_any_port=True,
    )
    idp = make_identity_provider(clients=[client], issuer=None, require_par=True)
    transport = Rewrite(lambda *_: None)
    connector = {
        "client_secret": None,
        "token_endpoint_auth_method": "private_key_jwt",
        "private_key": key.as_pem(private=True).decode(),
        "private_key_id": "connector-key",
    }
    with (
        serve_identity_provider(idp),
        run_app(idp, wsgi=True, transport=transport, connector=connector) as app,
    ):
        assert app.login().status_code == 303
        assert app.me()["subject"] == "idp|alice"
    (pushed,) = [r for r in transport.seen if r.url.path == "/par"]
    form = dict(parse_qsl(pushed.content.decode()))
    assert "client_secret" not in form
    claims = jwt_payload(form["client_assertion"])
    assert claims["aud"] == idp.issuer  # RFC 9126 §2
    assert claims["iss"] == claims["sub"] == "test-client"


def test_every_par_requirement_of_the_security_page_has_a_test() -> None:
    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "security.md").read_text(encoding="utf-8")
    ids = re.findall(r"^\| (PAR-\d{2}) \|", page, re.M)
    assert ids == ["PAR-01", "PAR-02", "PAR-03", "PAR-04"]
    names = set(re.findall(r"def (test_\w+)", Path(__file__).read_text(encoding="utf-8")))
    for requirement in ids:
        token = requirement.lower().replace("-", "")
        assert any(name.startswith(f"test_{token}_") for name in names), requirement
