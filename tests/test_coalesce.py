"""The bus's natural batching: what comes while a send is in flight goes in the next send, in order,
and a caller that cannot wait is refused (nothing taken) while the limit is reached."""

from __future__ import annotations

import asyncio

from node.cluster.coalesce import Coalescer


async def test_items_offered_during_a_send_go_together_in_order_and_the_limit_refuses() -> None:
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(key: str, items: list[int]) -> None:
        sent.append(items)
        await gate.wait()

    c: Coalescer[int] = Coalescer(send, most=3, limit=4)
    assert c.offer("q", [1])
    await asyncio.sleep(0)  # the first send is in flight
    assert c.offer("q", [2, 3]) and c.offer("q", [4, 5])
    assert not c.offer("q", [6]) and c.waiting == 4
    gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert sent == [[1], [2, 3, 4], [5]] and c.waiting == 0
    c.close()
