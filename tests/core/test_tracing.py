"""OpenTelemetry spans around token acquisition and downstream calls (otel extra)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authrelay import Settings
from authrelay.principal import ANONYMOUS, NO_CREDENTIALS
from authrelay.relay import Relay
from authrelay.testing.servers import serve_asgi

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")


@pytest.fixture(scope="module")
def spans() -> in_memory.InMemorySpanExporter:
    from opentelemetry import trace

    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"key": request.headers.get("x-api-key") is not None})


def test_acquisition_and_downstream_calls_are_traced_without_secrets(spans) -> None:  # type: ignore[no-untyped-def]
    with serve_asgi(Starlette(routes=[Route("/", echo)])) as url:
        relay = Relay(
            Settings.model_validate(
                {
                    "secret_keys": ["k" * 32],
                    "services": {
                        "billing": {
                            "base_url": url,
                            "allow_http": True,
                            "flow": "api_key",
                            "api_key": {
                                "value": "api-key-canary",
                                "header": "X-Api-Key",
                                "scheme": None,
                            },
                        }
                    },
                }
            )
        )
        services = relay.services.for_request(ANONYMOUS, NO_CREDENTIALS, asynchronous=False)
        assert services["billing"].get("/").json() == {"key": True}
        relay.close()
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished["authrelay.downstream"].attributes["service"] == "billing"
    assert finished["authrelay.acquire_token"].attributes["flow"] == "api_key"
    text = repr([dict(span.attributes or {}) for span in finished.values()])
    assert "api-key-canary" not in text
