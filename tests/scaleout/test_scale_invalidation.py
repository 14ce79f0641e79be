"""A token dropped in one worker stops being used in the others (issue #6, Redis pub/sub).

Two relays in this process stand for two workers: each has its own in-process caches,
its own Redis pools and its own invalidation listener; they share only Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from scale_support import REDIS_URL, Downstream, digest, settings_data, token_requests

from authrelay import Relay, Settings
from authrelay.principal import Credentials, Principal
from authrelay.services import ServiceRegistry
from authrelay.testing import IdentityProvider, serve_asgi

pytestmark = [pytest.mark.redis]

CLIENT_CREDENTIALS = "client_credentials"


@pytest.fixture
def api() -> Iterator[tuple[Downstream, str]]:
    downstream = Downstream()
    with serve_asgi(downstream.app) as url:
        yield downstream, url


def _holds(registry: ServiceRegistry, header: str) -> bool:
    cache = registry.runtimes["billing"].cache
    return any(entry.header == header for entry in list(cache.entries.values()))


def _until(predicate: object, what: str) -> None:
    assert callable(predicate)
    for _ in range(1000):  # a bound for a hung listener, not a latency assertion
        if predicate():
            return
        time.sleep(0.01)
    pytest.fail(f"never happened: {what}")


def test_downstream_401_in_one_worker_reacquires_once_and_the_others_drop_the_token(
    identity_provider_server: IdentityProvider,
    prefix: str,
    api: tuple[Downstream, str],
    redis_url: str,
) -> None:
    idp = identity_provider_server
    downstream, url = api
    data = settings_data(idp.issuer, redis_url, prefix, downstream=url)
    worker_a = Relay(Settings.model_validate(data))
    worker_b = Relay(Settings.model_validate(data))
    try:
        a = worker_a.services.client("billing", Principal(), Credentials(), asynchronous=False)
        b = worker_b.services.client("billing", Principal(), Credentials(), asynchronous=False)
        first = a.authorization_header()
        assert b.authorization_header() == first  # read from Redis, no second request
        assert token_requests(idp, CLIENT_CREDENTIALS, at_least=1) == 1
        _until(worker_b.backend.hub.connected.is_set, "worker B listens for invalidations")

        downstream.reject_next = 1
        assert a.get("/whoami").status_code == 200  # 401, dropped, acquired again, retried
        assert token_requests(idp, CLIENT_CREDENTIALS, at_least=2) == 2
        second = a.authorization_header()
        assert second != first
        assert downstream.seen[-2:] == [digest(first), digest(second)]

        # Worker B heard that the record changed and dropped its copy of the old token
        # without making a request of its own.
        _until(lambda: not _holds(worker_b.services, first), "worker B drops the old token")
        assert b.authorization_header() == second
        assert b.get("/whoami").status_code == 200
        assert downstream.seen[-1] == digest(second)
        assert token_requests(idp, CLIENT_CREDENTIALS) == 2  # re-acquired once in all
        assert worker_a.metrics.count("refreshes", target="billing") == 1
        assert worker_b.metrics.count("token_endpoint_calls", target="billing") == 0
    finally:
        worker_a.close()
        worker_b.close()


def test_st06_shared_record_holds_no_token_and_opens_only_under_its_key(
    identity_provider_server: IdentityProvider, prefix: str
) -> None:
    import redis.client

    idp = identity_provider_server
    relay = Relay(Settings.model_validate(settings_data(idp.issuer, REDIS_URL, prefix)))
    raw = redis.Redis.from_url(REDIS_URL)
    try:
        header = relay.services.client(
            "billing", Principal(), Credentials(), asynchronous=False
        ).authorization_header()
        token = header.split(" ", 1)[1]
        names = [n.decode() for n in raw.scan_iter(match=prefix + "svc:*")]
        assert len(names) == 1
        assert token not in names[0] and "billing" not in names[0]
        sealed = raw.hget(names[0], "v")
        assert isinstance(sealed, bytes) and token.encode() not in sealed
        assert 0 < raw.pttl(names[0]) <= 300_000  # removed by Redis at the token's expiry
        # Cut and paste: the same sealed bytes under another key do not open (a miss).
        shared = relay.services.shared
        assert shared is not None
        other = shared.key_for(["app", "someone-else"])
        raw.hset(other, mapping={"v": sealed, "n": 1})
        found, version = relay.sync_driver.run(shared.load(other))
        assert found is None and version == 1
    finally:
        raw.close()
        relay.close()
