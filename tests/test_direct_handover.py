"""Direct hand-overs: an order that the account actor which accepted it hands to a market in the same
process, every earlier order of its member for that market having gone the same way, reaches the
book without a store read, as on a single node; any other order is checked against the store first,
so that each member's orders reach the book in the order they were accepted (node/actors/market.py
`_intake_plan`, node/actors/account.py `_direct`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from node.actors.account import AccountActor
from node.actors.messages import NewOrder, SubmitOrders
from node.bootstrap import start_exchange
from node.cluster.rabbit import RemoteMarket
from node.exchange import Exchange, OrderInput
from tests.conftest import config_with

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"


class Mailbox:
    """A market's mailbox that keeps what it is handed, and matches nothing."""

    def __init__(self) -> None:
        self.got: list[NewOrder] = []

    def offer(self, msg: NewOrder) -> bool:
        self.got.append(msg)
        return True

    async def put(self, msg: NewOrder) -> None:
        self.got.append(msg)

    async def put_all(self, msgs: Sequence[NewOrder]) -> None:
        self.got.extend(msgs)


async def test_an_order_is_direct_only_while_its_market_has_had_one_mailbox(database_url: str) -> None:
    config = config_with(database_url, actors={"account_shards": 1, "sweep_after_ms": 3_600_000})
    ex = await start_exchange(config)
    actors: list[AccountActor] = []
    try:
        assert ex.shards is not None
        member = await ex.create_member("ann@example.com")
        await ex.deposit(member, "btc", "10")
        await ex.deposit(member, "usd", "100")
        await ex.shards.actors.pop(0).stop()  # from here the test's own account actors run the shard
        first, other, ltc = Mailbox(), Mailbox(), Mailbox()
        refs = {"btcusd": first, "ltcbtc": ltc}

        async def start() -> AccountActor:
            actor = AccountActor(ex.store, refs, config.currencies, 0, ex.tonces, shard_count=1)
            await actor.start()
            actors.append(actor)
            return actor

        async def buy(actor: AccountActor, market: str) -> None:
            reqs = await ex.prepare_orders(member, [OrderInput(market, "buy", "0.01", "0.001" if market == "ltcbtc"
                                                               else "100")])
            assert not isinstance(await actor.ask(SubmitOrders(reqs)), Exception)

        actor = await start()
        await buy(actor, "btcusd")
        await buy(actor, "btcusd")
        assert [o.direct for o in first.got] == [True, True]

        refs["btcusd"] = other  # the market moved (or its actor was replaced): earlier orders may be on the way
        await buy(actor, "btcusd")
        refs["btcusd"] = first
        await buy(actor, "btcusd")
        assert [o.direct for o in other.got] == [False]
        assert [o.direct for o in first.got] == [True, True, False], "checked by the store until a restart"

        await actor.stop()
        actor = await start()  # the shard's orders for btcusd are still pending: checked; ltcbtc had none
        await buy(actor, "btcusd")
        await buy(actor, "ltcbtc")
        assert first.got[-1].direct is False
        assert [o.direct for o in ltc.got] == [True]
    finally:
        for a in actors:
            await a.stop()
        await ex.stop()


async def until_taken(ex: Exchange, market: str) -> None:
    for _ in range(200):
        await ex.quiesce()
        if not await ex.store.fetch("SELECT id FROM orders WHERE market = ? AND state = 'pending'", market):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("orders still pending")


async def test_a_cluster_node_reads_the_store_only_for_orders_that_were_not_direct(pg_url: str) -> None:
    config = config_with(pg_url, exchange={"name": "t", "database": pg_url, "rabbitmq": RABBITMQ},
                         actors={"sweep_after_ms": 3_600_000, "account_shards": 1})
    ex = await start_exchange(config)
    try:
        assert ex.link is not None
        market = ex.markets["btcusd"]
        buyer = await ex.create_member("buyer@example.com")
        seller = await ex.create_member("seller@example.com")
        await ex.deposit(buyer, "usd", "100000")
        await ex.deposit(seller, "btc", "10")

        async def trade() -> None:
            await ex.submit_orders(seller, [OrderInput("btcusd", "sell", "0.1", "30000")])
            await ex.submit_orders(buyer, [OrderInput("btcusd", "buy", "0.1", "30000")])
            await until_taken(ex, "btcusd")

        await trade()
        assert market.intake_reads == 0, "orders accepted and handed over in this process: no read"
        assert market.trades_total == 1

        ex.refs["btcusd"] = RemoteMarket("btcusd", ex.link)  # through the market's queue, as from another node
        await trade()
        through_queue = market.intake_reads
        assert through_queue >= 1

        ex.refs["btcusd"] = market  # back in process: the market has had two ways in, so it stays checked
        await trade()
        assert market.intake_reads > through_queue
        assert market.trades_total == 3
    finally:
        await ex.stop()
