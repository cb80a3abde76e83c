"""Bus micro-benchmark: the node CPU one RabbitMQ message costs, whatever it carries.

A cross-node order costs a few bus messages, and each costs Python in the client library on both
ends, more than the broker's own work or the bytes. This measures, in this one process (the broker's
CPU is not counted), the CPU-µs per message of:

- `library`: the client library as it can be called, one message in flight per publisher (as the
  coalescers send: the next list waits for the last one's confirm), a few publishers at once:
  aio-pika (`Message` + `exchange.publish`) and aiormq's channel directly (`basic_publish`), with and
  without publisher confirms; then consuming a queue that holds N messages: aio-pika's iterator with
  one ack per message, aio-pika's callback, and aiormq's `basic_consume` with one `basic_ack`
  (multiple=True) per run of deliveries;
- `link`: node/cluster/rabbit.py end to end, two links in this process (a sender and the owner of a
  market and of an account shard): N hand-overs of one order each, one at a time (each publish,
  confirm, delivery and ack, with no coalescing), then N settlement notices likewise.

    python bench/bench_bus.py [--messages 5000] [--publishers 4] [--only library|link]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import aiormq  # noqa: E402
from pamqp.commands import Basic  # noqa: E402

RABBITMQ = os.environ.get("EXCHANGE_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
BODY = b'[{"t":"NewOrder","id":123456,"member_id":42,"side":"buy","ord_type":"limit","price":3000000,' \
       b'"volume":100,"tif":"gtc","stop_price":0,"funds":0,"origin_locked":300000000,"created_at":1700000000000}]'


def cpu() -> float:
    return time.process_time()


async def timed(label: str, n: int, work: Callable[[], Awaitable[None]]) -> float:
    c0, t0 = cpu(), time.monotonic()
    await work()
    us = (cpu() - c0) / n * 1e6
    print(f"  {label:<58} {us:7.1f} CPU-µs/message  ({n / (time.monotonic() - t0):,.0f} messages/s)")
    return us


async def library(n: int, publishers: int) -> None:
    conn = await aio_pika.connect_robust(RABBITMQ)
    try:
        confirmed = await conn.channel(publisher_confirms=True)
        quick = await conn.channel(publisher_confirms=False)
        name = "bench-bus-" + secrets.token_hex(4)
        queue = await confirmed.declare_queue(name, durable=True)
        each = n // publishers

        def spread(one: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                async def publisher() -> None:
                    for _ in range(each):
                        await one()
                await asyncio.gather(*(publisher() for _ in range(publishers)))
            return run

        print(f"publish, {publishers} publishers, one message in flight each:")
        for ch, what in ((confirmed, "confirmed"), (quick, "unconfirmed")):
            async def via_aio_pika(ch: aio_pika.abc.AbstractChannel = ch) -> None:
                await ch.default_exchange.publish(
                    aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT, headers={"from": "n1"}),
                    routing_key=name, timeout=10)
            await timed(f"aio-pika Message + default_exchange.publish, {what}", each * publishers, spread(via_aio_pika))
            raw = await ch.get_underlay_channel()
            props = Basic.Properties(delivery_mode=1, headers={"from": "n1"}, message_id="m")

            async def via_aiormq(raw: aiormq.abc.AbstractChannel = raw, props: Basic.Properties = props) -> None:
                await raw.basic_publish(BODY, routing_key=name, properties=props, timeout=10)
            await timed(f"aiormq basic_publish, {what}", each * publishers, spread(via_aiormq))
        await queue.purge()

        print(f"consume {n} waiting messages (prefetch 2,000):")

        async def fill() -> None:
            raw = await quick.get_underlay_channel()
            props = Basic.Properties(delivery_mode=1, headers={"from": "n1"})
            for _ in range(n):
                await raw.basic_publish(BODY, routing_key=name, properties=props)
            while True:
                q = await quick.declare_queue(name, passive=True, robust=False)
                if (q.declaration_result.message_count or 0) >= n:
                    return
                await asyncio.sleep(0.05)

        async def drained() -> None:
            while True:
                q = await quick.declare_queue(name, passive=True, robust=False)
                if q.declaration_result.message_count == 0 and q.declaration_result.consumer_count:
                    return
                await asyncio.sleep(0.01)

        consumer = await conn.channel()
        await consumer.set_qos(prefetch_count=2000)
        cq = await consumer.declare_queue(name, durable=True)

        await fill()

        async def iterate() -> None:
            seen = 0
            async with cq.iterator() as it:
                async for message in it:
                    await message.ack()
                    seen += 1
                    if seen == n:
                        break
        await timed("aio-pika queue.iterator, message.ack() each", n, iterate)

        await fill()

        async def callback() -> None:
            done = asyncio.get_running_loop().create_future()
            seen = 0

            async def on(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                nonlocal seen
                await message.ack()
                seen += 1
                if seen == n and not done.done():
                    done.set_result(None)
            tag = await cq.consume(on)
            await done
            await cq.cancel(tag)
        await timed("aio-pika queue.consume callback, message.ack() each", n, callback)

        await fill()

        async def direct() -> None:
            raw = await consumer.get_underlay_channel()
            done = asyncio.get_running_loop().create_future()
            loop = asyncio.get_running_loop()
            highest = seen = 0
            pending = False

            def flush() -> None:
                nonlocal pending
                pending = False
                loop.create_task(raw.basic_ack(highest, multiple=True, wait=False))
                if seen == n and not done.done():
                    done.set_result(None)

            def on(message: aiormq.abc.DeliveredMessage) -> None:
                nonlocal highest, pending, seen
                highest = message.delivery_tag or 0
                seen += 1
                if not pending:
                    pending = True
                    loop.call_soon(flush)

            # aiormq wraps a plain function in a coroutine and runs each delivery as a task
            ok = await raw.basic_consume(name, on)  # type: ignore[arg-type]
            await done
            await raw.basic_cancel(ok.consumer_tag or "")
        await timed("aiormq basic_consume, basic_ack(multiple) per run", n, direct)
        await drained()
        await cq.delete(if_unused=False, if_empty=False)
    finally:
        await conn.close()


async def link(n: int) -> None:
    from node.actors.messages import ApplySettlements, NewOrder
    from node.cluster.rabbit import RabbitLink, events_exchange
    from node.events import EventBus

    class Owner:
        """Stands in for a market actor and an account actor: takes every message at once."""

        name = "bench"

        def __init__(self, market: str) -> None:
            self.market = type("M", (), {"id": market})()
            self.taken = 0
            self.arrived = asyncio.Event()

        async def ask_later(self, msg: Any, timeout: float | None = None) -> asyncio.Future[Any]:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            self.taken += 1
            self.arrived.set()
            return fut

        async def put(self, msg: Any) -> None:
            self.taken += 1
            self.arrived.set()

        def offer(self, msg: Any) -> bool:
            self.taken += 1
            self.arrived.set()
            return True

    ns = "benchbus" + secrets.token_hex(3)
    sender = RabbitLink(RABBITMQ, "a", EventBus(), namespace=ns, boot="1")
    owner = RabbitLink(RABBITMQ, "b", EventBus(), namespace=ns, boot="1")
    await sender.start()
    await owner.start()
    market, shard = Owner("m1"), Owner("s")
    try:
        await owner.serve_market(market)  # type: ignore[arg-type]
        await owner.serve_shard(7, shard)  # type: ignore[arg-type]
        order = NewOrder(1, 42, "buy", "limit", 3000000, 100, "gtc", 0, 0, 300000000, 1700000000000)

        async def one_by_one(send: Callable[[], Awaitable[None]], owner: Owner) -> None:
            for _ in range(n):
                owner.arrived.clear()
                await send()
                await owner.arrived.wait()
        print("node/cluster/rabbit.py, one message at a time, sender and owner in this process:")
        await timed("hand-over of one order (publish, confirm, consume, ack)", n,
                    lambda: one_by_one(lambda: sender.hand_over("m1", [order]), market))
        await timed("settlement notice (publish, consume)", n,
                    lambda: one_by_one(lambda: sender.tell_shard(7, ApplySettlements(7, (1, 2))), shard))
        await asyncio.sleep(0.5)  # the last acks
    finally:
        await owner.stop_serving("m1")
        await owner.stop_serving_shard(7)
        assert owner.conn is not None
        ch = await owner.conn.channel()
        for q in (owner.market_queue("m1"), owner.shard_queue(7)):
            await ch.queue_delete(q)
        await ch.exchange_delete(events_exchange(ns))
        await sender.close()
        await owner.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--only", choices=("library", "link"))
    args = ap.parse_args()
    if args.only != "link":
        await library(args.messages, args.publishers)
    if args.only != "library":
        await link(args.messages)


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
