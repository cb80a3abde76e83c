"""The books audit catches a damaged store: a trade deleted, a trade duplicated, an order lost, a
cancel undone, a changed balance, a deposit credited twice and a withdrawal left half-paid. Each is
done to a store whose books balance, and each must be named with the row it is about.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node.audit import Violation, audit, check_books
from node.exchange import Exchange, OrderInput


async def trading(exchange: Exchange) -> dict[str, Any]:
    """A store with trades, a resting order and a canceled one; answers the ids the damage needs."""
    ex = exchange
    alice = await ex.create_member("alice@example.com")
    bob = await ex.create_member("bob@example.com")
    await ex.deposit(alice, "btc", "5")
    await ex.deposit(bob, "usd", "500000")
    await ex.submit_order(alice, OrderInput("btcusd", "sell", "1", "30000"))
    await ex.submit_order(alice, OrderInput("btcusd", "sell", "1", "31000"))
    await ex.submit_order(bob, OrderInput("btcusd", "buy", "1.5", "31000"))  # fills 1 @ 30000 and 0.5 @ 31000
    resting = await ex.submit_order(bob, OrderInput("btcusd", "buy", "0.5", "29000"))
    gone = await ex.submit_order(alice, OrderInput("btcusd", "sell", "0.3", "40000"))
    await ex.quiesce()
    await ex.cancel_order(alice, int(gone["id"]))
    await ex.quiesce()
    report = await audit(ex.store, ex.config.markets)
    assert report.ok, report.lines()
    trade = await ex.store.fetchrow("SELECT * FROM trades ORDER BY id LIMIT 1")
    assert trade is not None
    return {"alice": alice, "bob": bob, "trade": dict(trade), "resting": int(resting["id"]), "gone": int(gone["id"])}


async def delete_trade(ex: Exchange, ids: dict[str, Any]) -> str:
    await ex.store.execute("DELETE FROM trades WHERE id = ?", ids["trade"]["id"])
    return f"trade {ids['trade']['id']}"


async def duplicate_trade(ex: Exchange, ids: dict[str, Any]) -> str:
    t = dict(ids["trade"])
    t["id"] = int(t["id"]) + 10_000_000
    cols = list(t)
    await ex.store.execute(f"INSERT INTO trades ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", *t.values())
    return f"trade {t['id']}"


async def lose_order(ex: Exchange, ids: dict[str, Any]) -> str:
    await ex.store.execute("DELETE FROM orders WHERE id = ?", ids["resting"])
    return f"order {ids['resting']}"


async def undo_cancel(ex: Exchange, ids: dict[str, Any]) -> str:
    await ex.store.execute("UPDATE orders SET state = 'wait' WHERE id = ?", ids["gone"])
    return f"order {ids['gone']}"


async def undo_cancel_with_its_lock(ex: Exchange, ids: dict[str, Any]) -> str:
    """The cancel undone thoroughly: the order's lock and the account's locked restored too."""
    o = await ex.store.fetchrow("SELECT * FROM orders WHERE id = ?", ids["gone"])
    assert o is not None
    await ex.store.execute("UPDATE orders SET state = 'wait', locked = origin_locked WHERE id = ?", ids["gone"])
    await ex.store.execute("UPDATE accounts SET balance = balance - ?, locked = locked + ? WHERE member_id = ? AND "
                           "currency = 'btc'", int(o["origin_locked"]), int(o["origin_locked"]), ids["alice"])
    return f"order {ids['gone']}"


async def change_balance(ex: Exchange, ids: dict[str, Any]) -> str:
    await ex.store.execute("UPDATE accounts SET balance = balance + 1 WHERE member_id = ? AND currency = 'usd'", ids["bob"])
    return f"member {ids['bob']} usd"


async def credit_twice(ex: Exchange, ids: dict[str, Any]) -> str:
    d = await ex.store.fetchrow("SELECT * FROM deposits WHERE member_id = ? AND currency = 'btc'", ids["alice"])
    assert d is not None
    await ex.store.execute("INSERT INTO ledger (member_id, currency, d_balance, d_locked, fee, reason, ref_type, ref_id, "
                           "created_at) VALUES (?, 'btc', ?, 0, 0, 'deposit', 'deposit', ?, 0)", ids["alice"], d["amount"], d["id"])
    await ex.store.execute("UPDATE accounts SET balance = balance + ? WHERE member_id = ? AND currency = 'btc'",
                           d["amount"], ids["alice"])
    return f"deposit {d['id']}"


DAMAGE = [delete_trade, duplicate_trade, lose_order, undo_cancel, undo_cancel_with_its_lock, change_balance, credit_twice]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__ for d in DAMAGE])
async def test_each_damage_is_caught_and_names_its_row(exchange: Exchange, damage: Any) -> None:
    ids = await trading(exchange)
    ref = await damage(exchange, ids)
    found = await check_books(exchange.store, exchange.config.markets)
    assert found, f"{damage.__name__} went unnoticed"
    assert all(isinstance(v, Violation) and v.check and v.message for v in found)
    assert ref in {v.ref for v in found}, [str(v) for v in found]


async def test_an_audit_during_trading_sees_one_instant(exchange: Exchange) -> None:
    """While orders trade, every audit reads one snapshot: never a mismatch that is not there."""
    ex = exchange
    alice = await ex.create_member("alice@example.com")
    bob = await ex.create_member("bob@example.com")
    await ex.deposit(alice, "btc", "100")
    await ex.deposit(bob, "usd", "10000000")
    stop = asyncio.Event()

    async def trade() -> None:
        while not stop.is_set():
            await ex.submit_order(alice, OrderInput("btcusd", "sell", "0.01", "30000"))
            await ex.submit_order(bob, OrderInput("btcusd", "buy", "0.01", "30000"))

    traders = [asyncio.create_task(trade()) for _ in range(3)]
    try:
        for _ in range(15):
            report = await audit(ex.store, ex.config.markets)
            assert report.ok, report.lines()
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*traders)
