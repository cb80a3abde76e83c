"""Hand-overs in batches (node/cluster/rabbit.py): the orders an account batch accepts for a remote
market travel as one message, a list. A copy of that list, whether the broker redelivers it (its
consumer went away before the acknowledgement) or it is duplicated, changes nothing: the market
takes each order in once, in the order it was accepted (docs/exactly-once.md).

One node on PostgreSQL and RabbitMQ; its market `btcusd` is made to look remote to its own account
actors (its orders go through the market's queue), and its consumer is stopped while the test takes,
copies and puts back the list messages.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika

from node.audit import audit
from node.bootstrap import start_exchange
from node.cluster.rabbit import RemoteMarket
from node.exchange import Exchange, OrderInput
from tests.conftest import config_with

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"
MARKET = "btcusd"


async def snapshot(ex: Exchange) -> tuple[list[Any], list[Any], list[Any]]:
    """What a copy must not change: the orders, the trades and the ledger."""
    orders = await ex.store.fetch("SELECT id, state, remaining, intake, trades_count FROM orders ORDER BY id")
    trades = await ex.store.fetch("SELECT id, ask_id, bid_id, volume FROM trades ORDER BY id")
    ledger = await ex.store.fetch("SELECT id FROM ledger ORDER BY id")
    return [tuple(r) for r in orders], [tuple(r) for r in trades], [tuple(r) for r in ledger]


async def until(check: Any, what: str, tries: int = 200) -> None:
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_redelivered_and_a_duplicated_list_of_orders_change_nothing(pg_url: str) -> None:
    config = config_with(pg_url, exchange={"name": "t", "database": pg_url, "rabbitmq": RABBITMQ},
                         actors={"sweep_after_ms": 3_600_000, "account_shards": 1})
    ex = await start_exchange(config)
    broker = await aio_pika.connect(RABBITMQ)
    try:
        assert ex.link is not None
        actor = ex.markets[MARKET]
        queue_name = ex.link.market_queue(MARKET)
        members = [await ex.create_member(f"m{i}@example.com") for i in range(4)]
        for m in members:
            await ex.deposit(m, "usd", "1000000")
            await ex.deposit(m, "btc", "100")
        # From here the market's orders go through its queue, which nobody consumes for now.
        await ex.link.stop_serving(MARKET)
        ex.refs[MARKET] = RemoteMarket(MARKET, ex.link)
        sides = ("buy", "sell")
        placed: dict[int, list[int]] = {}
        for round_ in range(3):
            done = await asyncio.gather(*(ex.submit_orders(m, [
                OrderInput(MARKET, sides[(i + k + round_) % 2], "0.5", str(30_000 + k * 10)) for k in range(4)])
                for i, m in enumerate(members)))
            for m, views in zip(members, done, strict=True):
                placed.setdefault(m, []).extend(int(v["id"]) for v in views)
        ids = sorted(i for v in placed.values() for i in v)
        assert len(ids) == 48

        channel = await broker.channel()
        queue = await channel.declare_queue(queue_name, durable=True, passive=True)
        bodies: list[bytes] = []  # held unacknowledged: the broker gives them back with the channel
        for _ in range(200):
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                bodies.append(message.body)
            if sum(body.count(b'"t":"NewOrder"') for body in bodies) >= len(ids):
                break
            await asyncio.sleep(0.05)
        assert len(bodies) < len(ids), "several orders per message"
        assert sum(body.count(b'"t":"NewOrder"') for body in bodies) == len(ids)
        for body in bodies:  # a duplicate of every list, behind the redelivered originals
            await channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue_name)
        await channel.close()  # the originals come back, marked redelivered, ahead of the copies

        ex.refs[MARKET] = actor
        await ex.link.serve_market(actor)
        await until(lambda: _depth_at_most(ex, 0), "the queue to drain")
        await ex.quiesce()
        rows = await ex.store.fetch(
            f"SELECT id, member_id, state, intake FROM orders WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id", *ids)
        assert all(r["state"] != "pending" for r in rows)
        intakes = [int(r["intake"]) for r in rows]
        assert 0 not in intakes and len(set(intakes)) == len(ids), "every order taken in once"
        for member, theirs in placed.items():  # each member's orders reached the book in acceptance order
            mine = [int(r["intake"]) for r in rows if int(r["member_id"]) == member]
            assert mine == sorted(mine) and len(mine) == len(theirs)
        assert actor.duplicates_dropped >= len(ids)
        report = await audit(ex.store, ex.config.markets)
        assert report.ok, report.problems

        # Copies of lists whose orders were all taken in long ago: nothing at all changes.
        before = await snapshot(ex)
        dropped = actor.duplicates_dropped
        channel = await broker.channel()
        for body in bodies:
            await channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue_name)
        await channel.close()
        await until(lambda: _dropped(actor, dropped + len(ids)), "the copies to be dropped")
        await ex.quiesce()
        assert await snapshot(ex) == before
        assert (await audit(ex.store, ex.config.markets)).ok
    finally:
        await broker.close()
        await ex.stop()


async def _depth_at_most(ex: Exchange, n: int) -> bool:
    assert ex.link is not None
    depth = await ex.link.queue_depth(MARKET)
    return depth is not None and depth <= n and ex.markets[MARKET].depth == 0


async def _dropped(actor: Any, n: int) -> bool:
    return bool(actor.duplicates_dropped >= n)


async def test_a_consumer_stopped_and_started_again_leaves_no_channel_open(pg_url: str) -> None:
    """Each consumer has a channel of its own, closed once it stops (and its messages are settled):
    a node that adopts and gives up markets and shards all its life must not run into the broker's
    limit of channels per connection."""
    config = config_with(pg_url, exchange={"name": "t", "database": pg_url, "rabbitmq": RABBITMQ},
                         actors={"account_shards": 1})
    ex = await start_exchange(config)
    try:
        assert ex.link is not None and ex.link.conn is not None
        channels = ex.link.conn.transport.connection.channels  # type: ignore[union-attr]
        before = len(channels)
        actor, shard = ex.markets[MARKET], ex.shards.actors[0]  # type: ignore[union-attr]
        for _ in range(5):
            await ex.link.stop_serving(MARKET)
            await ex.link.stop_serving_shard(0)
            await ex.link.serve_market(actor)
            await ex.link.serve_shard(0, shard)
        await until(lambda: _channels_at_most(channels, before), "the stopped consumers' channels to close")
        # and the market still takes orders through its queue
        m = await ex.create_member("after@example.com")
        await ex.deposit(m, "usd", "1000")
        ex.refs[MARKET] = RemoteMarket(MARKET, ex.link)
        await ex.submit_orders(m, [OrderInput(MARKET, "buy", "0.01", "100")])
        await until(lambda: _depth_at_most(ex, 0), "the order to reach the market")
        await ex.quiesce()
        assert await ex.store.fetchval("SELECT COUNT(*) FROM orders WHERE member_id = ? AND state = 'wait'", m) == 1
    finally:
        await ex.stop()


async def _channels_at_most(channels: Any, n: int) -> bool:
    return len(channels) <= n
