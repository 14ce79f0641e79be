"""The demo's sign-in page lists the connectors with their logos, also without script."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from authrelay.demo import Demo


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.sources: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(values["src"])
        elif tag == "source":
            self.sources.append(values["srcset"])
        elif tag == "a" and values.get("class") == "connector":
            self.links.append(values["id"])


def test_signin_page_shows_every_connectors_logo(demo: Demo) -> None:
    with httpx.Client(base_url=demo.app_url) as client:
        page = client.get("/signin", headers={"accept-language": "ko"})
        assert page.status_code == 200
        parsed = _Images()
        parsed.feed(page.text)
        listed = client.get("/auth/connectors").json()["connectors"]
        assert parsed.links == [f"connector-{c['id']}" for c in listed]
        assert parsed.images == [c["logo"] for c in listed]
        assert parsed.sources == [c["logo_dark"] for c in listed]
        assert "데모 ID" in page.text
        for url in parsed.images + parsed.sources:
            logo = client.get(url)
            assert logo.status_code == 200, url
            assert logo.headers["content-type"].startswith("image/svg+xml"), url


@pytest.mark.browser
def test_signin_page_shows_logos_without_script_in_a_browser(demo: Demo, new_context: Any) -> None:
    page = new_context(java_script_enabled=False).new_page()
    page.goto(demo.app_url + "/signin")
    images = page.locator("#connectors img")
    expect(images).to_have_count(2)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#connectors img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    link = page.locator("#connector-idp")
    expect(link).to_have_attribute("href", "/auth/idp/login?next=%2F")
