"""The sans-IO drivers: limits (TR-02, TR-03), failures thrown into flows, single-flight."""

from __future__ import annotations

import threading
import time

import anyio
import httpx
import pytest

from authrelay._io import (
    AsyncDriver,
    Flow,
    ResponseTooLarge,
    Shared,
    SyncDriver,
    TransportFailure,
    send,
)


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/big":
        return httpx.Response(200, content=b"x" * 2000)
    if request.url.path == "/same-origin":
        return httpx.Response(302, headers={"location": "/ok"})
    if request.url.path == "/cross-origin":
        return httpx.Response(302, headers={"location": "https://evil.example/ok"})
    if request.url.path == "/loop":
        return httpx.Response(302, headers={"location": "/loop"})
    if request.url.path == "/refused":
        raise httpx.ConnectError("refused")
    if request.url.path == "/read-timeout":
        raise httpx.ReadTimeout("slow")
    return httpx.Response(200, json={"path": request.url.path})


def fetch(path: str, method: str = "GET", max_bytes: int = 1000) -> Flow[object]:
    try:
        response = yield from send(
            httpx.Request(method, f"https://idp.test{path}"), max_bytes=max_bytes, total_timeout=5
        )
    except TransportFailure as exc:
        return ("failure", exc.reached, exc.timeout)
    except ResponseTooLarge:
        return "too-large"
    return (response.status_code, response.content)


@pytest.fixture
def sync_driver() -> SyncDriver:
    return SyncDriver(httpx.Client(transport=httpx.MockTransport(handler)))


def test_tr03_body_cap(sync_driver: SyncDriver) -> None:
    assert sync_driver.run(fetch("/big")) == "too-large"
    assert sync_driver.run(fetch("/big", max_bytes=4000))[0] == 200  # type: ignore[index]


def test_tr02_same_origin_get_redirect_followed(sync_driver: SyncDriver) -> None:
    assert sync_driver.run(fetch("/same-origin")) == (200, b'{"path":"/ok"}')


def test_tr02_cross_origin_redirect_not_followed(sync_driver: SyncDriver) -> None:
    assert sync_driver.run(fetch("/cross-origin"))[0] == 302  # type: ignore[index]


def test_tr02_post_never_follows_and_redirects_bounded(sync_driver: SyncDriver) -> None:
    assert sync_driver.run(fetch("/same-origin", method="POST"))[0] == 302  # type: ignore[index]
    assert sync_driver.run(fetch("/loop"))[0] == 302  # type: ignore[index]


def test_rt04_connect_error_is_marked_not_reached(sync_driver: SyncDriver) -> None:
    assert sync_driver.run(fetch("/refused")) == ("failure", False, False)
    assert sync_driver.run(fetch("/read-timeout")) == ("failure", True, True)


def test_async_driver_same_semantics() -> None:
    async def main() -> None:
        driver = AsyncDriver(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        assert await driver.run(fetch("/big")) == "too-large"
        assert await driver.run(fetch("/refused")) == ("failure", False, False)
        assert await driver.run(fetch("/same-origin")) == (200, b'{"path":"/ok"}')

    anyio.run(main)


def counted(calls: list[int]) -> Flow[int]:
    calls.append(1)
    response = yield from send(
        httpx.Request("GET", "https://idp.test/x"), max_bytes=100, total_timeout=5
    )
    return response.status_code


def test_shared_single_flight_async() -> None:
    calls: list[int] = []

    async def slow_handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.05)
        return httpx.Response(200)

    async def main() -> list[int]:
        driver = AsyncDriver(httpx.AsyncClient(transport=httpx.MockTransport(slow_handler)))
        results: list[int] = []

        def flow() -> Flow[int]:
            value = yield Shared("key", lambda: counted(calls))
            return value  # type: ignore[no-any-return]

        async def one() -> None:
            results.append(await driver.run(flow()))

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(one)
        return results

    results = anyio.run(main)
    assert len(results) == 200 and set(results) == {200}
    assert len(calls) == 1


def test_shared_single_flight_threads_and_error_shared() -> None:
    calls: list[int] = []
    barrier = threading.Barrier(20)

    def failing() -> Flow[int]:
        calls.append(1)
        yield from send(
            httpx.Request("GET", "https://idp.test/refused"), max_bytes=100, total_timeout=5
        )
        return 0

    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.1)
        raise httpx.ConnectError("down")

    driver = SyncDriver(httpx.Client(transport=httpx.MockTransport(slow)))
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()

        def flow() -> Flow[int]:
            value = yield Shared("k", failing)
            return value  # type: ignore[no-any-return]

        try:
            driver.run(flow())
        except TransportFailure as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 20
    assert len(calls) == 1


@pytest.mark.parametrize("drip_from", [0, 350], ids=["status-line", "body"])
def test_tr03_sync_driver_deadline_covers_a_drip_fed_answer(drip_from: int) -> None:
    """A byte every 0.1 s: no single read waits long, so only a total deadline stops it."""
    import socket
    import threading

    head = b"HTTP/1.1 200 OK\r\nx-pad: " + b"p" * 300 + b"\r\ncontent-length: 4000\r\n\r\n"
    answer = head + b"x" * 4000
    stop = threading.Event()

    def serve(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer[:drip_from])
            for i in range(drip_from, len(answer)):
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(answer[i : i + 1])
                except OSError:
                    return

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        thread = threading.Thread(target=serve, args=(listener,), daemon=True)
        thread.start()
        driver = SyncDriver(httpx.Client(timeout=60))

        def slow() -> Flow[object]:
            try:
                yield from send(
                    httpx.Request("GET", f"http://127.0.0.1:{port}/"),
                    max_bytes=10_000,
                    total_timeout=0.5,
                )
            except TransportFailure as exc:
                return ("failure", exc.reached, exc.timeout)
            return "answered"

        try:
            started = time.monotonic()
            assert driver.run(slow()) == ("failure", True, True)
            assert time.monotonic() - started < 5  # the 400 s drip was cut off
        finally:
            stop.set()
            thread.join(5)


def test_hook_effect_runs_sync_hooks_in_both_drivers_and_async_hooks_under_asgi() -> None:
    from authrelay._io import Hook

    def sync_hook(name: str) -> str:
        return f"user-{name}"

    async def async_hook(name: str) -> str:
        return f"async-{name}"

    def flow(hook: object) -> Flow[str]:
        value = yield Hook(hook, ("alice",))  # type: ignore[arg-type]
        return value  # type: ignore[no-any-return]

    sync = SyncDriver(httpx.Client())
    assert sync.run(flow(sync_hook)) == "user-alice"
    with pytest.raises(TypeError, match="under WSGI hooks must be plain functions"):
        sync.run(flow(async_hook))

    async def main() -> tuple[str, str]:
        driver = AsyncDriver(httpx.AsyncClient())
        return await driver.run(flow(sync_hook)), await driver.run(flow(async_hook))

    assert anyio.run(main) == ("user-alice", "async-alice")


def test_shared_waiters_get_an_error_when_the_leader_is_cancelled() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(10)
        return httpx.Response(200)

    def leader_flow() -> Flow[int]:
        response = yield from send(
            httpx.Request("GET", "https://idp.test/x"), max_bytes=100, total_timeout=30
        )
        return response.status_code

    def flow() -> Flow[int]:
        value = yield Shared("k", leader_flow)
        return value  # type: ignore[no-any-return]

    async def main() -> list[object]:
        driver = AsyncDriver(httpx.AsyncClient(transport=httpx.MockTransport(slow)))
        outcomes: list[object] = []

        async def waiter() -> None:
            try:
                outcomes.append(await driver.run(flow()))
            except TransportFailure as exc:
                outcomes.append(exc)

        scopes: list[anyio.CancelScope] = []

        async def leader() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                await driver.run(flow())

        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await anyio.sleep(0.05)
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            scopes[0].cancel()
        return outcomes

    outcomes = anyio.run(main)
    assert len(outcomes) == 1 and isinstance(outcomes[0], TransportFailure)
