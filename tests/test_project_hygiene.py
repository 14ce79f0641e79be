"""What a user checks first: the licence, the changelog, --version, --help, .gitignore."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import authrelay
from authrelay.cli import main, plain

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
MARKUP = re.compile(r"``|:[a-z]+:`")


def test_license_file_matches_pyproject() -> None:
    assert PYPROJECT["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} The authrelay authors$", text, re.MULTILINE)
    assert "Permission is hereby granted, free of charge" in text


def test_changelog_has_an_unreleased_section_in_keep_a_changelog_form() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    unreleased = text.split("## [Unreleased]\n", 1)[1].split("\n## ", 1)[0]
    for header in ("### Added", "### Changed", "### Fixed"):
        assert f"\n{header}\n" in unreleased, header
    assert f"## [{PYPROJECT['version']}]" in text


def test_version_option_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"authrelay {PYPROJECT['version']}\n"
    assert authrelay.__version__ == PYPROJECT["version"]


@pytest.mark.parametrize("command", [[], ["check"], ["sidecar"], ["demo"], ["idp"]])
def test_help_is_plain_text(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: authrelay")
    assert not MARKUP.search(text), text


def test_plain_drops_roles_and_double_backticks() -> None:
    text = "Use ``check``, :class:`~authrelay.Settings` and :func:`run`."
    assert plain(text) == "Use check, Settings and run."


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)
def test_gitignore_ignores_no_tracked_file() -> None:
    ignored = subprocess.run(
        ["git", "ls-files", "--ignored", "--cached", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert ignored == []
