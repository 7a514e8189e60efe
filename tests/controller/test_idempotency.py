"""The Idempotency-Key middleware on a small ASGI app that counts what it really ran (in-process ASGI
transport; the controller's routes behind it are tested over a real socket in test_admission_http.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from controller.api.idempotency import Idempotency
from tests.support import async_wait_until


class Counting:
    """An ASGI app: POST /run answers {"n": how many times it ran}; /boom answers 500; `gate` holds it."""

    def __init__(self) -> None:
        self.ran = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.gate.wait()
        self.ran += 1
        status = 500 if scope["path"] == "/boom" else 201
        body = f'{{"n": {self.ran}}}'.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccfo")


def h(key: str | None, token: str = "t1") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} | ({"Idempotency-Key": key} if key else {})


@pytest.mark.asyncio
async def test_a_repeated_key_replays_the_first_answer_and_runs_nothing():
    inner = Counting()
    async with client(Idempotency(inner)) as c:
        first = await c.post("/run", headers=h("a"))
        again = await c.post("/run", headers=h("a"))
        assert first.status_code == again.status_code == 201 and first.json() == again.json() == {"n": 1}
        assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
        assert inner.ran == 1
        assert (await c.post("/run", headers=h("b"))).json() == {"n": 2}, "another key is another request"
        assert (await c.post("/run", headers=h("a", token="t2"))).json() == {"n": 3}, "keys are per token"
        assert (await c.put("/run", headers=h("a"))).json() == {"n": 4}, "and per method"
        assert (await c.post("/run", headers=h(None))).json() == {"n": 5}, "no key: no memory"
        assert (await c.get("/run", headers=h("a"))).json() == {"n": 6}, "reads pass through"


@pytest.mark.asyncio
async def test_concurrent_repetitions_wait_for_the_first_answer():
    inner = Counting()
    inner.gate.clear()
    mw = Idempotency(inner)
    arrived = []

    async def front(scope: dict[str, Any], receive: Any, send: Any) -> None:
        arrived.append(scope["path"])
        await mw(scope, receive, send)
    async with client(front) as c:
        pending = [asyncio.create_task(c.post("/run", headers=h("same"))) for _ in range(5)]
        await async_wait_until(lambda: len(arrived) == 5, timeout=5)  # all in before the first is answered
        inner.gate.set()
        answers = await asyncio.gather(*pending)
    assert inner.ran == 1 and {r.json()["n"] for r in answers} == {1}


@pytest.mark.asyncio
async def test_a_server_error_is_not_kept_so_a_retry_runs():
    inner = Counting()
    async with client(Idempotency(inner)) as c:
        assert (await c.post("/boom", headers=h("x"))).status_code == 500
        assert (await c.post("/boom", headers=h("x"))).json() == {"n": 2}


@pytest.mark.asyncio
async def test_memory_is_bounded_and_answers_expire():
    now = [0.0]
    inner = Counting()
    mw = Idempotency(inner, max_entries=3, ttl_s=60, clock=lambda: now[0])
    async with client(mw) as c:
        for key in "abcd":
            await c.post("/run", headers=h(key))
        assert len(mw._answers) == 3
        assert (await c.post("/run", headers=h("a"))).json() == {"n": 5}, "the oldest key was forgotten"
        now[0] = 61.0
        assert (await c.post("/run", headers=h("d"))).json() == {"n": 6}, "an expired answer is not replayed"


@pytest.mark.asyncio
async def test_an_oversized_key_is_refused():
    async with client(Idempotency(Counting())) as c:
        r = await c.post("/run", headers=h("k" * 201))
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["detail"]
