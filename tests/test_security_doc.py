"""docs/security.md lists every requirement, and every MUST there has a test named for it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| ([A-Z]{2}-\d{2}) \| (MUST|SHOULD)[^|]*\| .* \| (.+) \|$", re.M)


def rows() -> list[tuple[str, str, str]]:
    return ROW.findall((ROOT / "docs" / "security.md").read_text(encoding="utf-8"))


def collect_test_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        text = path.read_text(encoding="utf-8", errors="replace")
        names.update(re.findall(r"def (test_\w+)", text))
        names.update("param:" + m for m in re.findall(r'"([a-z]{2}\d{2}[-_][\w-]*)"', text))
    return names


def test_every_must_has_a_test_named_for_it() -> None:
    names = collect_test_names()
    missing = []
    for requirement, level, status in rows():
        if level != "MUST" or status.startswith("n/a"):
            continue
        token = requirement.lower().replace("-", "")
        if not any(re.search(rf"(^|[_:]){token}([_-]|$)", name) for name in names):
            missing.append(requirement)
    assert not missing, f"MUST requirements without a test named for them: {missing}"


def test_the_page_lists_every_requirement_of_the_shared_spec() -> None:
    listed = {requirement for requirement, _, _ in rows()}
    assert len(listed) > 100
    spec = ROOT.parent / "shared" / "SECURITY.md"
    if spec.exists():  # beside the checkout in development and CI
        ids = set(re.findall(r"^- \*\*([A-Z]{2}-\d{2}) (?:MUST|SHOULD)", spec.read_text(), re.M))
        assert ids == listed
