"""Account shards on SQLite and PostgreSQL: one writer per account row (node/actors/shards.py).

A node runs one shard leased (as in a cluster) and its market; "another node" (a second owner in
this process, with leases of its own) runs the other shard. A trade between members of the two
shards settles one side inline and writes the other's to the outbox; the outbox is applied once
however many copies of the notice arrive; a deposed owner's batches, and a market batch that would
settle a shard no longer held at its epoch, change nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from node.actors.account import AccountActor
from node.actors.lease import Leases
from node.actors.messages import ApplySettlements, SubmitOrders
from node.actors.shards import lease_name
from node.audit import audit
from node.bootstrap import start_exchange
from node.errors import ExchangeError, Unavailable
from node.exchange import Exchange, OrderInput
from tests.conftest import config_with

SHARDS = 2


async def balances(ex: Exchange, member: int) -> dict[str, tuple[int, int]]:
    return {a["currency"]: (a["balance"], a["locked"]) for a in await ex.accounts_of(member)}


async def unapplied(ex: Exchange) -> list[Any]:
    return await ex.store.fetch("SELECT * FROM settlements WHERE applied_at IS NULL ORDER BY id")


async def books_balance(ex: Exchange) -> None:
    report = await audit(ex.store, ex.config.markets)
    assert report.ok, report.problems


async def leased_from_now(database_url: str) -> tuple[Exchange, int, int]:
    """A node (no cluster yet) with a buyer and a seller in different shards, whose account actor
    has just been stopped: the test runs the shards from here, leased, as in a cluster."""
    config = config_with(database_url, actors={"account_shards": SHARDS, "sweep_after_ms": 3_600_000})
    ex = await start_exchange(config)
    assert ex.shards is not None
    buyer = await ex.create_member("buyer@example.com")
    seller = await ex.create_member("seller@example.com")
    while seller % SHARDS == buyer % SHARDS:
        seller = await ex.create_member(f"seller{seller}@example.com")
    await ex.deposit(buyer, "usd", "100000")
    await ex.deposit(seller, "btc", "10")
    for old in ex.shards.running():
        await old.stop()
    ex.shards.actors.clear()
    ex.shards.map.leased = True
    return ex, buyer, seller


async def two_shards(database_url: str) -> tuple[Exchange, AccountActor, int, int, int, int]:
    """The exchange owning shard `mine` (leased, fenced), another owner running shard `theirs`, a
    buyer in ours and a seller in theirs."""
    ex, buyer, seller = await leased_from_now(database_url)
    assert ex.shards is not None
    config = ex.config
    mine, theirs = buyer % SHARDS, seller % SHARDS
    epoch = await ex.leases.acquire(lease_name(mine))
    ex.shards.map.epochs = {mine: epoch}
    a = config.actors
    ours = AccountActor(ex.store, ex.refs, config.currencies, mine, ex.tonces, epoch=epoch, shard_count=SHARDS,
                        sweep_after_ms=a.sweep_after_ms, bus=ex.bus)
    await ours.start()
    ex.shards.actors[mine] = ours
    other = Leases(ex.store, "other", config.actors.lease_ms, sole_process=True)
    actor = AccountActor(ex.store, ex.refs, config.currencies, theirs, ex.tonces,
                         epoch=await other.acquire(lease_name(theirs)), sweep_after_ms=a.sweep_after_ms)
    await actor.start()
    return ex, actor, buyer, seller, mine, theirs


async def depose(ex: Exchange, shard: int) -> None:
    """The shard's owner paused past its lease, and another node took the shard."""
    await ex.store.execute("UPDATE market_leases SET expires_at = 0 WHERE market = ?", lease_name(shard))
    await Leases(ex.store, "third", ex.config.actors.lease_ms, sole_process=True).acquire(lease_name(shard))


async def sell(ex: Exchange, actor: AccountActor, seller: int, volume: str, price: str) -> Any:
    """The seller's order, accepted by its own shard's owner (as the node it was forwarded to)."""
    reqs = await ex.prepare_orders(seller, [OrderInput("btcusd", "sell", volume, price)])
    return await actor.ask(SubmitOrders(reqs))


async def test_a_trade_across_shards_is_settled_once_by_each_side(database_url: str) -> None:
    ex, actor, buyer, seller, _mine, theirs = await two_shards(database_url)
    try:
        await sell(ex, actor, seller, "1", "50000")
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "50000"))
        await ex.quiesce()
        # The buyer (our shard) is settled in the market's own transaction; the seller's side waits.
        assert (await balances(ex, buyer))["btc"] == (998_000_00, 0)  # 1 BTC less the 0.2 % taker fee
        assert (await balances(ex, seller))["btc"] == (9_0000_0000, 1_0000_0000)
        rows = await unapplied(ex)
        assert rows and {int(r["shard"]) for r in rows} == {theirs}
        await books_balance(ex)  # in flight, and counted as such

        ids = tuple(int(r["id"]) for r in rows)
        assert await actor.ask(ApplySettlements(theirs, ids)) == len(ids)
        assert await actor.ask(ApplySettlements(theirs, ids)) == 0  # a duplicated notice applies nothing
        assert await actor.sweep_settlements(0) == 0
        assert await unapplied(ex) == []
        assert (await balances(ex, seller))["btc"] == (9_0000_0000, 0)
        assert (await balances(ex, seller))["usd"] == (49_950_000000, 0)  # less the 0.1 % maker fee
        await books_balance(ex)
        rows = await ex.store.fetch("SELECT member_id, epoch FROM ledger WHERE ref_type = 'trade'")
        assert len([r for r in rows if int(r["member_id"]) == seller]) == 2
        # Every row carries the epoch of the shard owner that wrote it: the seller's its owner's.
        assert {int(r["epoch"]) for r in rows if int(r["member_id"]) == seller} == {actor.epoch}
        assert {int(r["epoch"]) for r in rows if int(r["member_id"]) == buyer} == {ex.shards.map.epochs[buyer % SHARDS]}
    finally:
        await actor.stop()
        await ex.stop()


async def test_the_sweep_applies_settlements_whose_notice_was_lost(database_url: str) -> None:
    ex, actor, buyer, seller, _mine, _theirs = await two_shards(database_url)
    try:
        await sell(ex, actor, seller, "1", "50000")
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "0.5", "50000"))
        await ex.quiesce()
        assert await unapplied(ex)
        assert await actor.sweep_settlements(0) > 0
        await actor.mailbox.join()
        assert await unapplied(ex) == []
        assert (await balances(ex, seller))["btc"] == (9_0000_0000, 5000_0000)
        await books_balance(ex)
    finally:
        await actor.stop()
        await ex.stop()


async def test_a_deposed_shard_owner_changes_nothing(database_url: str) -> None:
    ex, actor, buyer, seller, _mine, theirs = await two_shards(database_url)
    try:
        await sell(ex, actor, seller, "1", "50000")
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "50000"))
        await ex.quiesce()
        rows = await unapplied(ex)
        before = await balances(ex, seller)
        await depose(ex, theirs)
        try:
            await actor.ask(ApplySettlements(theirs, tuple(int(r["id"]) for r in rows)))
            raise AssertionError("a fenced owner applied settlements")
        except ExchangeError:
            pass
        assert actor.fenced
        assert await balances(ex, seller) == before
        assert len(await unapplied(ex)) == len(rows)
        await books_balance(ex)
    finally:
        await actor.stop()
        await ex.stop()


async def test_a_market_batch_never_settles_a_shard_it_lost(database_url: str) -> None:
    ex, actor, buyer, seller, mine, _theirs = await two_shards(database_url)
    try:
        order = await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "40000"))
        await ex.quiesce()
        locked = await balances(ex, buyer)
        # Another owner takes our shard; until our tick notices, the market still believes it ours.
        await depose(ex, mine)
        try:
            await ex.cancel_order(buyer, order["id"])
            raise AssertionError("a batch settled a shard held by another owner")
        except ExchangeError:
            pass
        assert await balances(ex, buyer) == locked
        assert (await ex.order_row(order["id"]) or {})["state"] == "wait"
        # Once the shard is known gone, the cancel's unlock goes to the outbox for its new owner.
        assert ex.shards is not None
        ex.shards.map.epochs.pop(mine)
        for _ in range(50):  # the market is rebuilding after the rolled-back batch
            try:
                await ex.cancel_order(buyer, order["id"])
                break
            except ExchangeError:
                await asyncio.sleep(0.1)
        assert (await ex.order_row(order["id"]) or {})["state"] == "cancel"
        assert await balances(ex, buyer) == locked  # not applied here: its owner does
        assert {int(r["shard"]) for r in await unapplied(ex)} == {mine}
        await books_balance(ex)
    finally:
        await actor.stop()
        await ex.stop()


async def test_told_settlements_go_with_the_next_batch_of_orders(database_url: str) -> None:
    """A notice told (not asked) waits for the owner's next batch of orders, so that the two share a
    transaction; with no orders coming, a batch of its own applies it within SETTLE_WAIT."""
    ex, actor, buyer, seller, _mine, theirs = await two_shards(database_url)
    try:
        await sell(ex, actor, seller, "1", "50000")
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "0.5", "50000"))
        await ex.quiesce()
        ids = tuple(int(r["id"]) for r in await unapplied(ex))
        batches = actor.batches
        assert actor.offer(ApplySettlements(theirs, ids)) and actor.offer(ApplySettlements(theirs, ids))  # and a copy
        await actor.drained()
        assert await unapplied(ex) == [] and actor.settled == len(ids)
        assert actor.batches == batches + 1

        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "0.5", "50000"))
        await ex.quiesce()
        more = tuple(int(r["id"]) for r in await unapplied(ex))
        assert more
        reqs = await ex.prepare_orders(seller, [OrderInput("btcusd", "sell", "0.1", "60000")])
        batches = actor.batches
        assert actor.offer(ApplySettlements(theirs, more))
        await actor.ask(SubmitOrders(reqs))  # the same batch applies the notice
        assert actor.batches == batches + 1
        assert await unapplied(ex) == [] and actor.settled == len(ids) + len(more)
        await books_balance(ex)
    finally:
        await actor.stop()
        await ex.stop()


async def test_a_node_without_a_cluster_writes_every_shard_in_one_transaction(database_url: str) -> None:
    """Unleased, the shards only lay out the data for a later cluster: one actor writes them all, so
    orders of members in four shards, arriving together, take one batch and one transaction."""
    config = config_with(database_url, actors={"account_shards": 4})
    ex = await start_exchange(config)
    try:
        assert ex.shards is not None
        [actor] = ex.accounts
        assert actor.shards == (0, 1, 2, 3) and actor.name == "accounts:0-3" and actor.epoch is None
        assert {ex.shards.local(m) for m in range(1, 9)} == {actor}
        members: list[int] = []
        while {m % 4 for m in members} != {0, 1, 2, 3}:
            mid = await ex.create_member(f"m{len(members)}@example.com")
            await ex.deposit(mid, "usd", "1000")
            members.append(mid)
        asks = [SubmitOrders(await ex.prepare_orders(m, [OrderInput("btcusd", "buy", "0.01", "100")])) for m in members]
        batches = actor.batches
        results = await asyncio.gather(*(actor.ask(a) for a in asks))
        assert actor.batches == batches + 1
        assert all(r is not None for r in results)
        for m in members:
            assert (await balances(ex, m))["usd"] == (999_000000, 1_000000)
        await books_balance(ex)
    finally:
        await ex.stop()


async def test_settlements_a_cluster_left_are_applied_by_a_node_without_one(database_url: str) -> None:
    """The cluster stopped with a seller's settlement still in the outbox (its shard's owner gone);
    the same store served by one node alone: its one actor of every shard sweeps it up at start."""
    ex, actor, buyer, seller, _mine, theirs = await two_shards(database_url)
    try:
        await sell(ex, actor, seller, "1", "50000")
        await actor.stop()  # the seller's shard's owner leaves: nobody applies its settlements now
        await ex.submit_order(buyer, OrderInput("btcusd", "buy", "1", "50000"))
        await ex.quiesce()
        assert {int(r["shard"]) for r in await unapplied(ex)} == {theirs}
    finally:
        await actor.stop()
        await ex.stop()
    alone = await start_exchange(config_with(database_url, actors={"account_shards": SHARDS}))
    try:
        [one] = alone.accounts
        assert one.shards == tuple(range(SHARDS))
        for _ in range(100):  # the sweep at start runs beside the actor's first batches
            if not await unapplied(alone):
                break
            await asyncio.sleep(0.05)
        await alone.quiesce()
        assert await unapplied(alone) == []
        assert (await balances(alone, seller))["btc"] == (9_0000_0000, 0)
        assert (await balances(alone, seller))["usd"] == (49_950_000000, 0)  # less the 0.1 % maker fee
        await books_balance(alone)
    finally:
        await alone.stop()


async def one_actor_of_two_leased_shards(database_url: str) -> tuple[Exchange, AccountActor, int, int]:
    """This node's one account actor holds both shards under leases (as a node of a cluster that
    adopted them one after the other): a buyer in one, a seller in the other."""
    ex, buyer, seller = await leased_from_now(database_url)
    assert ex.shards is not None
    config = ex.config
    first, second = buyer % SHARDS, seller % SHARDS
    epochs = {s: await ex.leases.acquire(lease_name(s)) for s in (first, second)}
    actor = AccountActor(ex.store, ex.refs, config.currencies, first, ex.tonces, epoch=epochs[first],
                         shard_count=SHARDS, sweep_after_ms=3_600_000, bus=ex.bus)
    await actor.start()
    await actor.adopt(second, epochs[second])
    ex.shards.map.epochs = dict(epochs)
    ex.shards.actors.update({first: actor, second: actor})
    return ex, actor, buyer, seller


async def submit(ex: Exchange, actor: AccountActor, member: int, side: str, price: str) -> Any:
    reqs = await ex.prepare_orders(member, [OrderInput("btcusd", side, "0.1", price)])
    return await actor.ask(SubmitOrders(reqs))


async def test_a_shard_taken_over_fails_one_batch_and_the_other_shards_go_on(database_url: str) -> None:
    ex, actor, buyer, seller = await one_actor_of_two_leased_shards(database_url)
    try:
        assert actor.shards == tuple(sorted({buyer % SHARDS, seller % SHARDS})) and actor.epoch is None
        await asyncio.gather(submit(ex, actor, buyer, "buy", "40000"), submit(ex, actor, seller, "sell", "60000"))
        await depose(ex, seller % SHARDS)
        before = {m: await balances(ex, m) for m in (buyer, seller)}
        try:  # the batch fences both shards: one is another node's now, so nothing of it is written
            await submit(ex, actor, buyer, "buy", "40000")
            raise AssertionError("a batch fenced by a lost shard was written")
        except Unavailable:
            pass
        assert {m: await balances(ex, m) for m in (buyer, seller)} == before
        assert actor.lost == {seller % SHARDS} and actor.shards == (buyer % SHARDS,) and not actor.fenced
        await submit(ex, actor, buyer, "buy", "40000")  # the shard still held goes on
        try:
            await submit(ex, actor, seller, "sell", "60000")
            raise AssertionError("an order of a shard no longer held was accepted")
        except Unavailable:
            pass
        assert (await balances(ex, seller))["btc"] == before[seller]["btc"]
        rows = await ex.store.fetch("SELECT member_id, epoch FROM ledger WHERE reason = 'order_submit'")
        assert {int(r["epoch"]) for r in rows if int(r["member_id"]) == seller} == {ex.shards.map.epochs[seller % SHARDS]}
        await books_balance(ex)
    finally:
        await ex.stop()


async def test_a_released_shard_commits_what_was_taken_then_refuses(database_url: str) -> None:
    ex, actor, buyer, seller = await one_actor_of_two_leased_shards(database_url)
    try:
        reqs = await ex.prepare_orders(seller, [OrderInput("btcusd", "sell", "0.1", "60000")])
        taken = await actor.ask_later(SubmitOrders(reqs))
        await actor.release(seller % SHARDS)
        assert taken.done() and taken.result()[0]["state"] == "wait"
        assert actor.shards == (buyer % SHARDS,) and not actor.lost
        try:
            await submit(ex, actor, seller, "sell", "60000")
            raise AssertionError("an order of a released shard was accepted")
        except Unavailable:
            pass
        await submit(ex, actor, buyer, "buy", "40000")
        assert (await balances(ex, seller))["btc"] == (9_9000_0000, 1000_0000)
        await books_balance(ex)
    finally:
        await ex.stop()
