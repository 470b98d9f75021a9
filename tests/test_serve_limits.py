"""Limits over real HTTP: the retention limit and a full prediction queue (503 OVERLOADED)."""

from __future__ import annotations

import asyncio

import httpx
from serve_helpers import KEYBOARD, publish, synthetic_swipes, trace_for


def test_retention_and_overload(sidecar_factory):
    proc = sidecar_factory(retention_max_rows=5, predict_queue=1, predict_max_batch=1)
    publish(proc.checkpoints())
    proc.start(wait_ready=True)
    swipes = synthetic_swipes(8, seed=5)
    with proc.client() as c:
        refused = c.post("/api/v1/swipes", json={"swipes": swipes})  # more than the store keeps
        assert refused.status_code == 413 and refused.json()["reason"] == "EXCEEDS_STORE_CAPACITY"
        assert len(c.post("/api/v1/swipes", json={"swipes": swipes[:5]}).json()["ids"]) == 5
        assert len(c.post("/api/v1/swipes", json={"swipes": swipes[5:]}).json()["ids"]) == 3
        stats = c.get("/api/v1/stats").json()["swipes"]
        assert stats["total"] == 5  # the oldest went first

    body = {"points": trace_for("hello"), "keyboard": KEYBOARD}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=proc.url, timeout=30) as c:
            return await asyncio.gather(*(c.post("/api/v1/predict", json=body) for _ in range(48)))

    answers = asyncio.run(burst())
    codes = {r.status_code for r in answers}
    assert codes <= {200, 503} and 200 in codes
    overloaded = [r for r in answers if r.status_code == 503]
    assert overloaded, "a queue of one should overflow under 48 concurrent requests"
    assert overloaded[0].json()["code"] == "OVERLOADED"
    assert overloaded[0].headers["Retry-After"] == "1"
