"""Smoke test of the benchmark suite: every phase runs on tiny counts and the JSON holds.

No timing is asserted (the machines are shared and noisy); what is asserted is what a
reader of ``benchmarks/results/latest.json`` relies on: every phase ran without error,
each figure has its median and spread, every target was judged, and the cold-start
storm cost exactly one token-endpoint call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from benchmarks.__main__ import main
from benchmarks.report import markdown, table, write_json
from benchmarks.run import Config, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    return run(Config.tiny(("direct", "services", "wsgi", "server", "scale")))


def test_every_phase_ran_without_error(figures: dict[str, Any]) -> None:
    assert figures["errors"] == {}
    assert set(figures["skipped"]) <= {"sidecar"}


def test_storm_made_exactly_one_token_call(figures: dict[str, Any]) -> None:
    storm = figures["scale"]["storm"]
    assert storm["token_calls"] == 1
    assert storm["size"] == 50
    assert storm["p50_ms"] <= storm["p99_ms"]


def test_figures_have_median_and_spread(figures: dict[str, Any]) -> None:
    for name in ("bare", "anonymous", "session", "bearer_rs256_first", "header_route"):
        entry = figures["direct"][name]
        assert entry["p25"] <= entry["median"] <= entry["p75"]
    for name in ("bare", "anonymous", "session", "bearer", "header", "authlib_peer"):
        assert figures["server"]["rps"][name]["median"] > 0
    assert figures["wsgi"]["calls"]["anonymous"]["median"] > 0
    for kind in ("token_cache", "bearer_cache"):
        for entry in figures["scale"]["memory"][kind].values():
            assert entry["bytes_per_entry"] > 0


def test_service_facts_hold(figures: dict[str, Any]) -> None:
    assert figures["facts"]["httpx_clients_per_service"] == 1
    assert figures["facts"]["locks_on_header_hit"] == 0
    assert figures["facts"]["locks_watched"] > 0


def test_every_target_is_judged(figures: dict[str, Any]) -> None:
    targets = {t["id"]: t for t in figures["targets"]}
    assert len(targets) == 17
    measured = {t_id for t_id, t in targets.items() if t["met"] is not None}
    assert measured >= set(targets) - {"T12"}  # T12 needs authrelay's sidecar
    for target in targets.values():
        assert target["met"] in (True, False, None)


def test_outputs_render_from_the_json(figures: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    write_json(figures, path)
    loaded = json.loads(path.read_text())
    assert "Targets (issue #7)" in table(loaded)
    assert "| T14 cold-start storm" in markdown(loaded)


def test_command_line_rejects_unknown_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--quick", "--phases", "nope", "--out", str(tmp_path)])
    assert status == 1
    assert "nope" in json.loads((tmp_path / "quick.json").read_text())["errors"]
