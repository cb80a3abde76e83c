"""The interpreter settings of a node: books frozen out of the collector's sight at start-up are
given back to it when they are dropped (their orders link both ways: only the collector frees them)."""

from __future__ import annotations

import asyncio
import gc

from node.exchange import Exchange, OrderInput
from node.tuning import freeze_startup_objects


async def resting_book(ex: Exchange) -> None:
    member = await ex.create_member("frozen@example.com")
    await ex.deposit(member, "usd", "1000")
    for price in ("100", "101", "102"):
        await ex.submit_order(member, OrderInput("btcusd", "buy", "1", price))
    for _ in range(500):  # accepted orders reach their book, and its commit the store, a moment later
        if len(ex.market_actor("btcusd").engine) == 3 and await ex.store.fetchval(
                "SELECT COUNT(*) FROM orders WHERE market = 'btcusd' AND state = 'wait'") == 3:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the orders did not reach their book")


async def test_a_book_frozen_at_start_is_given_back_when_its_market_rebuilds(exchange: Exchange) -> None:
    await resting_book(exchange)
    actor = exchange.market_actor("btcusd")
    freeze_startup_objects()
    try:
        assert gc.get_freeze_count() > 0
        await actor.recover()  # as after a lost claim: the old book is dropped
        assert gc.get_freeze_count() == 0
        assert len(actor.engine) == 3
    finally:
        gc.unfreeze()


async def test_a_book_frozen_at_start_is_given_back_when_its_market_stops(exchange: Exchange) -> None:
    await resting_book(exchange)
    freeze_startup_objects()
    try:
        await exchange.market_actor("btcusd").stop()  # the market moves away or the node stops
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
