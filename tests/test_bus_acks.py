"""A market queue's acknowledgements (node/cluster/rabbit.py, `_Acks`): in delivery order, one per run
of settled messages, so a message is never acknowledged before one delivered earlier has settled,
and one whose batch failed comes again, alone. Against a real RabbitMQ queue."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aio_pika
from aiormq.abc import DeliveredMessage

from node.cluster.rabbit import _Acks, _Inbox
from node.errors import Unavailable

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"


async def test_runs_are_acknowledged_in_order_and_a_failed_message_comes_again() -> None:
    conn = await aio_pika.connect_robust(RABBITMQ)
    name = "test-acks-" + secrets.token_hex(4)
    try:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=100)
        await channel.declare_queue(name, auto_delete=False)
        for i in range(5):
            await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), routing_key=name)
        inbox = _Inbox(channel, name, no_ack=False)  # type: ignore[arg-type]
        await inbox.start()
        acks = _Acks()
        loop = asyncio.get_running_loop()
        got: list[DeliveredMessage] = [await inbox.get() for _ in range(5)]
        assert [m.body for m in got] == [b"0", b"1", b"2", b"3", b"4"]
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in got]
        for m, f in zip(got, futures, strict=True):
            acks.track(m.channel, m.delivery_tag or 0, [f], requeue=True)

        async def unacked() -> int:
            probe = await conn.channel()
            try:
                q = await probe.declare_queue(name, passive=True, robust=False)
                return int(q.declaration_result.message_count or 0)
            finally:
                await probe.close()

        # Settled out of order: 1 and 3 first (nothing can be acknowledged while 0 is open), then 0
        # (0 and 1 go together), then 2 fails (it alone comes back), then 4 (3 and 4 go together).
        futures[1].set_result(None)
        futures[3].set_result(None)
        await asyncio.sleep(0.1)
        assert [d.tag for d in acks._open] == [m.delivery_tag for m in got]
        futures[0].set_result(None)
        await asyncio.sleep(0.1)
        assert [d.tag for d in acks._open] == [m.delivery_tag for m in got[2:]]
        futures[2].set_exception(Unavailable("the batch failed"))
        futures[4].set_result(None)
        again = await asyncio.wait_for(inbox.get(), 5)
        assert again.body == b"2" and again.delivery.redelivered  # type: ignore[union-attr]
        assert not acks._open
        acks.track(again.channel, again.delivery_tag or 0, [], requeue=True)
        await asyncio.sleep(0.2)
        await inbox.stop()
        await channel.close()
        assert await unacked() == 0  # nothing went back to the queue: all five were acknowledged
    finally:
        cleanup = await conn.channel()
        await cleanup.queue_delete(name)
        await conn.close()


async def test_a_consumer_the_broker_cancelled_consumes_again() -> None:
    """A queue deleted by hand ends its consumer on the broker's side: the inbox declares it again
    and takes what comes to it, instead of leaving the market to the store's sweep for good."""
    conn = await aio_pika.connect_robust(RABBITMQ)
    name = "test-cancel-" + secrets.token_hex(4)
    try:
        channel = await conn.channel()
        await channel.declare_queue(name, durable=True)
        inbox = _Inbox(channel, name, no_ack=True)  # type: ignore[arg-type]
        await inbox.start()
        other = await conn.channel()
        await other.queue_delete(name)
        for _ in range(100):  # declared again by the inbox
            try:
                probe = await conn.channel()
                await probe.declare_queue(name, passive=True, robust=False)
                await probe.close()
                break
            except aio_pika.exceptions.ChannelClosed:
                await asyncio.sleep(0.1)
        await other.default_exchange.publish(aio_pika.Message(b"again"), routing_key=name)
        assert (await asyncio.wait_for(inbox.get(), 10)).body == b"again"
        await inbox.stop()
    finally:
        cleanup = await conn.channel()
        await cleanup.queue_delete(name)
        await conn.close()
