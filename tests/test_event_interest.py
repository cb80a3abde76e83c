"""Events only where they are followed (node/cluster/rabbit.py): nodes announce the event keys
their clients follow, and a node publishes an envelope only while another node follows one of its
keys. Two real links on RabbitMQ, each with its own bus, as two nodes of one cluster."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest

from node.cluster.rabbit import INTEREST_UNSURE, RabbitLink, interest_exchange
from node.events import EventBus
from tests.conftest import need_service

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
async def two_links() -> AsyncIterator[tuple[RabbitLink, RabbitLink, str]]:
    need_service("RabbitMQ", "127.0.0.1", 5672)
    ns = "t" + secrets.token_hex(6)
    a = RabbitLink(RABBITMQ, "a", EventBus(), namespace=ns, boot=secrets.token_hex(4))
    b = RabbitLink(RABBITMQ, "b", EventBus(), namespace=ns, boot=secrets.token_hex(4))
    await a.start()
    await b.start()
    try:
        yield a, b, ns
    finally:
        await a.close()
        await b.close()
        conn = await aio_pika.connect(RABBITMQ)
        async with conn:
            channel = await conn.channel()
            for name in (interest_exchange(ns), f"exchange.{ns}.event-lists"):
                await channel.exchange_delete(name)


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    for _ in range(100):
        got = check()
        if got if isinstance(got, bool) else await got:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


async def test_a_node_publishes_only_what_another_node_follows(two_links: tuple[RabbitLink, RabbitLink, str]) -> None:
    a, b, _ = two_links
    assert b.followed_elsewhere("market.btcusd")  # just started: it cannot tell yet, so it sends all
    await asyncio.sleep(INTEREST_UNSURE)
    assert not b.followed_elsewhere("market.btcusd") and not b.followed_elsewhere("member.7")
    assert b.followed_elsewhere("market.btcusd.status")  # halts go everywhere, always

    sent, unfollowed = b.events_published, b.events_unfollowed
    b.bus.publish("market.btcusd", {"trades": []})
    await asyncio.sleep(0.2)
    assert (b.events_published, b.events_unfollowed) == (sent, unfollowed + 1)

    received: list[tuple[str, dict[str, object]]] = []
    a.bus.subscribe(lambda topic, event: received.append((topic, event)))
    await a.bus.follow("market.btcusd")  # a client on A subscribes: B hears of it at once
    await until(lambda: b.followed_elsewhere("market.btcusd"), "B never heard that A follows btcusd")
    assert not b.followed_elsewhere("market.ltcbtc")
    b.bus.publish("market.btcusd", {"trades": [1]})
    await until(lambda: any(t == "market.btcusd" for t, _ in received), "A did not receive what it follows")

    await a.bus.follow("market.*")  # Peatio's all-market stream: every market's envelopes
    await until(lambda: b.followed_elsewhere("market.ltcbtc"), "B never heard that A follows every market")
    await a.bus.unfollow("market.*")
    await a.bus.unfollow("market.btcusd")
    await until(lambda: not b.followed_elsewhere("market.btcusd"), "B still sends what A no longer follows")


async def test_a_malformed_announcement_changes_nothing(two_links: tuple[RabbitLink, RabbitLink, str]) -> None:
    a, b, ns = two_links
    await asyncio.sleep(INTEREST_UNSURE)
    await a.bus.follow("member.42")
    await until(lambda: b.followed_elsewhere("member.42"), "B never heard that A follows member 42")
    conn = await aio_pika.connect(RABBITMQ)
    async with conn:
        channel = await conn.channel()
        exchange = await channel.get_exchange(interest_exchange(ns))
        for body in (b"not json", b'{"node": "x"}', b'{"node": "x", "boot": "1", "keys": [1, 2]}',
                     b'{"node": "x", "boot": "1", "keys": "member.42"}'):
            await exchange.publish(aio_pika.Message(body), routing_key="")
    await asyncio.sleep(0.3)
    assert b.followed_elsewhere("member.42") and not b.followed_elsewhere("member.43")
