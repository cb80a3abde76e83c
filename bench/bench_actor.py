"""Actor path benchmark: durable orders/s and ask→answer latency with group commit on SQLite.

Two measurements, each on a fresh database file (synchronous=FULL unless --sync normal):
1. market actor alone: N accepted orders (stored `pending`, funds locked) are asked to the market
   actor by many concurrent askers; each answer comes after the batch that matched it committed.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import node.actors.market  # noqa: E402
from node.actors.messages import NewOrder  # noqa: E402
from node.config import load_config, parse_config  # noqa: E402
from node.exchange import Exchange, OrderInput  # noqa: E402
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
    return await Exchange.start(parse_config(data, "bench"))


async def bench_market(url: str, n: int, conc: int, sync: str) -> None:
    # The orders are stored `pending` up front and then asked one by one: keep the pending sweep
    # (a safety net for lost hand-overs) from taking them first.
    node.actors.market.SWEEP_EVERY = 3600.0
    ex = await make_exchange(url, sync)
    rng = random.Random(1)
    members = [await ex.create_member(f"b{i}@bench") for i in range(20)]
    ts = int(time.time() * 1000)
    orders = []
    async with ex.store.transaction() as tx:
        rows, ledger = [], []
        for i in range(n):
            oid = 10_000_000 + i
            side = "buy" if rng.random() < 0.5 else "sell"
            price = 3_000_000 + rng.randint(-50, 50) * 100 + (-2000 if side == "buy" else 2000) * (rng.random() < 0.5)
            vol = rng.randint(1, 100)
            lock = price * vol if side == "buy" else vol * 10_000
            cur = "usd" if side == "buy" else "btc"
            mem = members[i % len(members)]
            rows.append((oid, mem, "btcusd", side, "limit", "gtc", price, 0, vol, vol, 0, lock, lock, ts, ts))
            orders.append(NewOrder(oid, mem, side, "limit", price, vol, "gtc", 0, 0, lock, ts))
            ledger.append((mem, cur, lock))
        await tx.executemany(
            "INSERT INTO orders (id, member_id, market, side, ord_type, tif, price, stop_price, volume, remaining, funds, "
            "origin_locked, locked, funds_used, trades_count, state, seq, triggered, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 'pending', 0, 0, ?, ?)", rows)
        for mem in members:
            await tx.execute("UPDATE accounts SET locked = locked + ? WHERE member_id = ? AND currency = 'usd'", 10**15, mem)
            await tx.execute("UPDATE accounts SET locked = locked + ? WHERE member_id = ? AND currency = 'btc'", 10**15, mem)
    actor = ex.markets["btcusd"]
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
    print(f"market actor ({ex.store.backend}, sync={sync}): {n} orders, {actor.trades_total} trades, "
          f"{actor.batches} batches in {el:.2f}s -> {n / el:,.0f} durable orders/s; "
          f"ask->answer p50 {pct(lat, .5):.1f} ms, p99 {pct(lat, .99):.1f} ms (concurrency {conc})")
    await ex.stop()


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
        run(bench_market(f"sqlite:///{d}/m.db", args.orders, args.concurrency, args.sync))
        run(bench_pipeline(f"sqlite:///{d}/p.db", args.orders, args.concurrency, args.sync))
    if args.postgres:
        run(bench_pipeline(args.postgres, args.orders, args.concurrency, args.sync))


if __name__ == "__main__":
    main()
