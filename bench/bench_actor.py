"""Actor path benchmark: durable orders/s and ask→answer latency with group commit on SQLite.

Two measurements, each on a fresh database file (synchronous=FULL unless --sync normal):
1. market actor alone: N accepted orders (stored `pending`, funds locked) are asked to the market
   actor by many concurrent askers; each answer comes after the batch that matched it committed.
   Its ceiling, measured in the same run: the rows it wrote (trades, order updates, account deltas,
   ledger), written again into a fresh database in the same number of transactions with the
   store's bulk statements and nothing else to do; the ratio of the two rates is printed.
2. the whole order path through the exchange: account actor (lock, store) → market actor (match,
   settle), with C concurrent clients; answer = durable acceptance.

    python bench/bench_actor.py [--orders 100000] [--concurrency 2000] [--db-dir /tmp] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.actors.messages import NewOrder  # noqa: E402
from node.bootstrap import start_exchange  # noqa: E402
from node.config import load_config, parse_config  # noqa: E402
from node.exchange import Exchange, OrderInput  # noqa: E402
from node.store import Bulk  # noqa: E402
from node.tuning import tune_runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MAX_BATCH = 2_000  # --max-batch


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


async def make_exchange(url: str, sync: str) -> Exchange:
    import tomllib

    data = tomllib.loads((ROOT / "cluster.toml").read_text())
    data["exchange"]["database"] = url
    data["exchange"]["sqlite_synchronous"] = sync
    data["actors"] = {"mailbox_size": 100_000, "max_batch": MAX_BATCH, "ask_timeout_ms": 60_000}
    return await start_exchange(parse_config(data, "bench"))


async def seed_orders(ex: Exchange, n: int) -> list[NewOrder]:
    """Store n accepted limit orders (`pending`, funds locked) of 20 members; untimed set-up."""
    rng = random.Random(1)
    members = [await ex.create_member(f"b{i}@bench") for i in range(20)]
    ts = int(time.time() * 1000)
    orders = []
    async with ex.store.transaction() as tx:
        rows = []
        for i in range(n):
            oid = 10_000_000 + i
            side = "buy" if rng.random() < 0.5 else "sell"
            price = 3_000_000 + rng.randint(-50, 50) * 100 + (-2000 if side == "buy" else 2000) * (rng.random() < 0.5)
            vol = rng.randint(1, 100)
            lock = price * vol if side == "buy" else vol * 10_000
            mem = members[i % len(members)]
            rows.append((oid, mem, "btcusd", side, "limit", "gtc", price, 0, vol, vol, 0, lock, lock, ts, ts))
            orders.append(NewOrder(oid, mem, side, "limit", price, vol, "gtc", 0, 0, lock, ts))
        await tx.executemany(
            "INSERT INTO orders (id, member_id, market, side, ord_type, tif, price, stop_price, volume, remaining, funds, "
            "origin_locked, locked, funds_used, trades_count, state, seq, triggered, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 'pending', 0, 0, ?, ?)", rows)
        for mem in members:
            await tx.execute("UPDATE accounts SET locked = locked + ? WHERE member_id = ? AND currency = 'usd'", 10**15, mem)
            await tx.execute("UPDATE accounts SET locked = locked + ? WHERE member_id = ? AND currency = 'btc'", 10**15, mem)
    return orders


# The ceiling's statements: what a market batch writes, in the store's fastest bulk form.
TRADES = Bulk.insert("trades", ("id", "market", "price", "volume", "funds", "ask_id", "bid_id", "ask_member_id",
                                "bid_member_id", "taker_side", "ask_fee", "bid_fee", "created_at"))
LEDGER = Bulk.insert("ledger", ("member_id", "currency", "d_balance", "d_locked", "fee", "reason", "ref_type",
                                "ref_id", "created_at"))
ORDERS = Bulk.update("orders", "remaining = {0}, state = {1}, funds_used = {2}, locked = {3}, trades_count = {4}, "
                     "seq = {5}, triggered = {6}, updated_at = {7}", "{t}.id = {8}")
ACCOUNTS = Bulk.update("accounts", "balance = {t}.balance + {0}, locked = {t}.locked + {1}",
                       "{t}.member_id = {2} AND {t}.currency = {3}")


async def written_rows(ex: Exchange, since_ms: int) -> tuple[list[Any], list[Any], list[Any]]:
    """The trades, ledger rows and final order rows that the market actor's run wrote."""
    trades = await ex.store.fetch(
        "SELECT id, market, price, volume, funds, ask_id, bid_id, ask_member_id, bid_member_id, taker_side, ask_fee, "
        "bid_fee, created_at FROM trades ORDER BY id")
    ledger = await ex.store.fetch(
        "SELECT member_id, currency, d_balance, d_locked, fee, reason, ref_type, ref_id, created_at FROM ledger "
        "WHERE created_at >= ? ORDER BY id", since_ms)
    orders = await ex.store.fetch(
        "SELECT remaining, state, funds_used, locked, trades_count, seq, triggered, updated_at, id FROM orders "
        "WHERE market = 'btcusd' ORDER BY id")
    return [tuple(r) for r in trades], [tuple(r) for r in ledger], [tuple(r) for r in orders]


async def raw_writes(url: str, sync: str, n: int, batches: int, rows: tuple[list[Any], list[Any], list[Any]]) -> float:
    """The ceiling: the same rows written in the same number of transactions, with nothing else to do.

    A fresh database gets the same pending orders (untimed); then each of ``batches`` transactions
    inserts its share of the trades and ledger rows, updates its share of the orders, applies the
    account deltas summed per (member, currency) as the actor does, and the market's state row.
    Returns the seconds taken.
    """
    trades, ledger, orders = rows
    ex = await make_exchange(url, sync)
    # Nothing else may write meanwhile: the market actor's sweep would match the pending orders
    # (on a slow machine the seeding alone takes longer than its period).
    ex.markets["btcusd"].sweep_after_ms = 3_600_000
    await seed_orders(ex, n)

    def share(rows: list[Any], i: int) -> list[Any]:
        return rows[len(rows) * i // batches: len(rows) * (i + 1) // batches]

    chunks = []
    for i in range(batches):
        led = share(ledger, i)
        deltas: dict[tuple[int, str], list[int]] = {}
        for r in led:
            d = deltas.setdefault((r[0], r[1]), [0, 0])
            d[0] += r[2]
            d[1] += r[3]
        accounts = [(d[0], d[1], k[0], k[1]) for k, d in sorted(deltas.items())]
        chunks.append((share(trades, i), share(orders, i), accounts, led))
    t = time.perf_counter()
    for tr, od, ac, led in chunks:
        async with ex.store.transaction() as tx:
            await tx.executemany(TRADES, tr)
            await tx.executemany(ORDERS, od)
            await tx.executemany(ACCOUNTS, ac)
            await tx.executemany(LEDGER, led)
            await tx.executemany("UPDATE markets_state SET next_seq = ?, updated_at = ? WHERE market = ?",
                                 [(n, int(time.time() * 1000), "btcusd")])
    el = time.perf_counter() - t
    await ex.stop()
    return el


async def bench_market(url: str, raw_url: str, n: int, conc: int, sync: str) -> None:
    ex = await make_exchange(url, sync)
    actor = ex.markets["btcusd"]
    # The orders are stored `pending` up front and then asked one by one: keep the pending sweep
    # (a safety net for lost hand-overs) from taking them first on a slow run.
    actor.sweep_after_ms = 3_600_000
    orders = await seed_orders(ex, n)
    since = int(time.time() * 1000)
    lat: list[float] = []
    it = iter(orders)

    async def asker() -> None:
        for o in it:
            t0 = time.perf_counter()
            await actor.ask(o)
            lat.append(time.perf_counter() - t0)

    t = time.perf_counter()
    await asyncio.gather(*(asker() for _ in range(conc)))
    el = time.perf_counter() - t
    batches = actor.batches
    rows = await written_rows(ex, since)
    print(f"market actor ({ex.store.backend}, sync={sync}): {n} orders, {actor.trades_total} trades, "
          f"{batches} batches in {el:.2f}s -> {n / el:,.0f} durable orders/s; "
          f"ask->answer p50 {pct(lat, .5):.1f} ms, p99 {pct(lat, .99):.1f} ms (concurrency {conc})")
    await ex.stop()
    raw = await raw_writes(raw_url, sync, n, batches, rows)
    print(f"ceiling: the same {len(rows[0])} trades, {len(rows[2])} order updates and {len(rows[1])} ledger rows "
          f"in {batches} raw batched transactions: {raw:.2f}s -> {n / raw:,.0f} orders/s")
    print(f"ratio: the market actor runs at {raw / el:.2f}x the raw batched writes of its own rows")


async def bench_pipeline(url: str, n: int, conc: int, sync: str) -> None:
    ex = await make_exchange(url, sync)
    members = []
    for i in range(50):
        m = await ex.create_member(f"p{i}@bench")
        await ex.deposit(m, "usd", "100000000")
        await ex.deposit(m, "btc", "10000")
        members.append(m)
    lat: list[float] = []
    it = iter(range(n))

    async def client(k: int) -> None:
        rng = random.Random(k)
        for _ in it:
            side = rng.choice(("buy", "sell"))
            px = 30000 + rng.randint(-50, 50) + (-20 if side == "buy" else 20) * (rng.random() < 0.5)
            o = OrderInput("btcusd", side, f"0.{rng.randint(1, 99):04d}", str(px))
            t0 = time.perf_counter()
            await ex.submit_order(rng.choice(members), o)
            lat.append(time.perf_counter() - t0)

    t = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(conc)))
    acc = time.perf_counter() - t
    await ex.quiesce()
    el = time.perf_counter() - t
    m = ex.markets["btcusd"]
    print(f"order path ({ex.store.backend}, sync={sync}): {n} orders accepted in {acc:.2f}s, matched by {el:.2f}s -> "
          f"{n / el:,.0f} orders/s end to end, {m.trades_total} trades; accept latency p50 {pct(lat, .5):.1f} ms, "
          f"p99 {pct(lat, .99):.1f} ms (concurrency {conc})")
    await ex.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=2_000)
    ap.add_argument("--sync", default="full", choices=["full", "normal"])
    ap.add_argument("--max-batch", type=int, default=2_000, help="actors' max_batch (cluster.toml [actors])")
    ap.add_argument("--postgres", default=None, help="also run against this PostgreSQL URL (an empty database)")
    args = ap.parse_args()
    load_config(ROOT / "cluster.toml")
    tune_runtime()  # as a node process does (node/tuning.py)
    global MAX_BATCH
    MAX_BATCH = args.max_batch
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    with tempfile.TemporaryDirectory() as d:
        run(bench_market(f"sqlite:///{d}/m.db", f"sqlite:///{d}/raw.db", args.orders, args.concurrency, args.sync))
        run(bench_pipeline(f"sqlite:///{d}/p.db", args.orders, args.concurrency, args.sync))
    if args.postgres:
        run(bench_pipeline(args.postgres, args.orders, args.concurrency, args.sync))


if __name__ == "__main__":
    main()
