"""Several worker processes, one cold service key: one token request in all (issue #6, CL-01).

Each worker is a spawned interpreter with its own relay, caches and connection pools;
the only thing the workers share is the store (Redis on 127.0.0.1:6379, a Redis Cluster,
Redis behind Sentinel, or one SQLite file). 4 workers x 100 concurrent requests must cost exactly one token request at the
provider, and every request must get the same token.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from scale_support import REDIS_URL, settings_data, token_requests
from scale_workers import burst

from authrelay.testing import IdentityProvider

pytestmark = [pytest.mark.slow]

SPAWN = multiprocessing.get_context("spawn")
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
WORKERS = 4
REQUESTS = 100


def _run(settings: dict[str, Any], service: str, token: str | None) -> list[Any]:
    out = SPAWN.Queue()
    barrier = SPAWN.Barrier(WORKERS)
    workers = [
        SPAWN.Process(target=burst, args=(settings, service, token, REQUESTS, barrier, out))
        for _ in range(WORKERS)
    ]
    for proc in workers:
        proc.start()
    try:
        reports = [out.get(timeout=60) for _ in workers]
    finally:
        for proc in workers:
            proc.join(30)
            if proc.exitcode is None:
                proc.kill()
    assert [proc.exitcode for proc in workers] == [0] * WORKERS
    return reports


@pytest.mark.parametrize(
    "store",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
        pytest.param("sentinel", marks=pytest.mark.redis),
        "sqlite",
    ],
)
@pytest.mark.parametrize(
    ("service", "grant"), [("billing", "client_credentials"), ("orders", EXCHANGE)]
)
def test_cl01_tx03_four_workers_one_token_request(
    store: str,
    service: str,
    grant: str,
    identity_provider_server: IdentityProvider,
    prefix: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    idp = identity_provider_server
    urls = {"redis": REDIS_URL, "sqlite": f"sqlite:///{tmp_path / 'authrelay.db'}"}
    url = urls.get(store) or request.getfixturevalue(f"redis_{store}").url
    token = None
    if service == "orders":
        token = idp.mint_access_token(sub="alice", audience="api://app", expires_in=3600)
    # Hold the one token answer back so the other workers really wait for it.
    idp.faults.add("token", delay=0.5, count=1)

    reports = _run(settings_data(idp.issuer, url, prefix), service, token)

    assert [r[1] for r in reports] == ["ok"] * WORKERS, reports
    assert sum(r[3] for r in reports) == WORKERS * REQUESTS
    assert len({value for r in reports for value in r[2]}) == 1  # one token for everybody
    assert token_requests(idp, grant, at_least=1) == 1
    assert idp.counters.count(endpoint="token") == 1
    # The worker that fetched it counted one call; the others found it in the store.
    counters = [r[4] for r in reports]
    assert sum(c.get("token_endpoint_calls", 0) for c in counters) == 1
    assert sum(c.get("store_hits", 0) for c in counters) == WORKERS - 1
