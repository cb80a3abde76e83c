"""Recovery of a node's books at start, and the memory each resting order costs in a running node.

A store (SQLite by default; ``--postgres URL`` for an empty PostgreSQL database it may fill) is given
``--orders`` resting orders (``wait``, with their priority ``seq``) of 10,000 members on two
markets (70% btcusd, 30% ltcbtc), bids below and asks above each market's mid, written with the
store's bulk statements (untimed set-up). Then, each in a fresh process so that one measurement's
garbage is not another's:

- ``empty``: a node (``start_exchange``, as ``python -m node serve`` starts it) on the same store
  with no resting order: its RSS is the baseline;
- ``full``: the same node on the full store: start-to-ready time, the market actors' ``recover``
  alone, and RSS growth per resting order (RSS after start minus the baseline, divided by N);
- ``traced``: the same with tracemalloc on: the Python-side bytes per order (minus the empty
  node's) and the top allocation sites by line (``--top``); slower, so not timed;
- ``engine``: the ceiling, ``Engine.load`` alone of the same rows streamed from the store (RSS
  and tracemalloc growth per order, load time).

The node's numbers are printed with their ratio to the engine's. Each process applies the node's
runtime settings (node/tuning.py). The machine may be shared: compare ratios of one run.

    python bench/bench_recovery.py                     # 1M resting orders on SQLite
    python bench/bench_recovery.py --orders 200000 --top 15
    python bench/bench_recovery.py --postgres postgresql://postgres@127.0.0.1/bench_recovery
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.actors.market import MarketActor  # noqa: E402
from node.bootstrap import start_exchange  # noqa: E402
from node.config import parse_config  # noqa: E402
from node.market import LOAD_COLUMNS, Engine, Loader  # noqa: E402
from node.store import Bulk, open_store  # noqa: E402
from node.tuning import tune_runtime  # noqa: E402

MEMBERS = 10_000
# market: (share of the orders, mid price in ticks, ticks between price steps, max lots)
MARKETS = {"btcusd": (0.7, 3_000_000, 1, 10_000), "ltcbtc": (0.3, 1_500, 1, 100_000)}
ORDER_COLUMNS = ("id", "member_id", "market", "side", "ord_type", "tif", "price", "stop_price", "volume", "remaining",
                 "funds", "origin_locked", "locked", "funds_used", "trades_count", "state", "seq", "triggered",
                 "created_at", "updated_at", "intake")
ORDERS = Bulk.insert("orders", ORDER_COLUMNS)
CHUNK = 20_000


def rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def config(url: str) -> Any:
    import tomllib

    data = tomllib.loads((ROOT / "cluster.toml").read_text())
    data["exchange"]["database"] = url
    data["exchange"]["sqlite_synchronous"] = "normal"
    return parse_config(data, "bench")


async def seed(url: str, n: int) -> None:
    """N resting orders, written in bulk; each market's state row knows the next seq."""
    cfg = config(url)
    ex = await start_exchange(cfg, actors=False)  # migrations, house accounts
    store = ex.store
    try:
        rng = random.Random(7)
        ts = int(time.time() * 1000) - 86_400_000
        oid, seq = 1_000_000, {m: 0 for m in MARKETS}
        rows: list[tuple[Any, ...]] = []
        for i in range(n):
            market = "btcusd" if rng.random() < MARKETS["btcusd"][0] else "ltcbtc"
            _, mid, step, lots = MARKETS[market]
            side = "buy" if i % 2 else "sell"
            away = min(int(rng.expovariate(1 / 300)) + 1, mid // 2)  # most orders near the mid, a long tail
            price = mid - away * step if side == "buy" else mid + away * step
            volume = rng.randint(1, lots)
            remaining = volume if rng.random() < 0.8 else rng.randint(1, volume)
            m = cfg.markets[market]
            lock = m.quote_units(price * volume) if side == "buy" else m.base_units(volume)
            seq[market] += 1
            oid += 1
            at = ts + i
            rows.append((oid, 1_000 + rng.randrange(MEMBERS), market, side, "limit", "gtc", price, 0, volume, remaining,
                         0, lock, lock, (volume - remaining) * price, int(remaining != volume), "wait",
                         seq[market], 0, at, at, i + 1))
            if len(rows) == CHUNK or i == n - 1:
                async with store.transaction() as tx:
                    await tx.executemany(ORDERS, rows)
                rows = []
        async with store.transaction() as tx:
            for market, last in seq.items():
                await tx.execute("INSERT INTO markets_state (market, next_seq, updated_at) VALUES (?, ?, ?) "
                                 "ON CONFLICT (market) DO UPDATE SET next_seq = excluded.next_seq", market, last + 1, ts)
                await tx.execute("UPDATE markets_state SET next_intake = ? WHERE market = ?", n + 1, market)
    finally:
        await ex.stop()


async def clear(url: str) -> None:
    store = await open_store(url)
    try:
        await store.migrate()
        async with store.transaction() as tx:
            await tx.execute("DELETE FROM orders")
            await tx.execute("DELETE FROM markets_state")
    finally:
        await store.close()


async def node(url: str, trace: bool, top: int) -> dict[str, Any]:
    """Start a node on the store and measure it (in a fresh process)."""
    recovers: list[float] = []
    recover = MarketActor.recover

    async def timed(self: MarketActor) -> None:
        t = time.perf_counter()
        await recover(self)
        recovers.append(time.perf_counter() - t)

    MarketActor.recover = timed  # type: ignore[method-assign]
    cfg = config(url)
    gc.collect()
    if trace:
        tracemalloc.start(1)
    before = rss()
    t, cpu = time.perf_counter(), time.process_time()
    ex = await start_exchange(cfg)
    ready, cpu = time.perf_counter() - t, time.process_time() - cpu
    gc.collect()
    out: dict[str, Any] = {"ready": ready, "cpu": cpu, "recover": sum(recovers), "rss": rss() - before,
                           "resting": sum(len(a.engine) for a in ex.markets.values())}
    if trace:
        snap = tracemalloc.take_snapshot()
        out["traced"] = tracemalloc.get_traced_memory()[0]
        out["top"] = [f"{s.size / max(1, out['resting']):8.1f} B/order  {s.traceback[0].filename.replace(str(ROOT) + '/', '')}:"
                      f"{s.traceback[0].lineno}" for s in snap.statistics("lineno")[:top]]
    await ex.stop()
    return out


async def engine_alone(url: str, trace: bool) -> dict[str, Any]:
    """Engine.load of every market's rows, streamed from the store (the rows themselves are freed
    as they are read; on PostgreSQL in pages through the Loader): what the engine's book costs, as
    the ceiling."""
    cols = ", ".join(LOAD_COLUMNS)
    sql = f"SELECT {cols} FROM orders WHERE market = ? AND state = 'wait' ORDER BY seq"
    engines = []
    gc.collect()
    if trace:
        tracemalloc.start(1)
    before, traced0 = rss(), tracemalloc.get_traced_memory()[0]
    took = cpu = 0.0
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        for market in MARKETS:
            t, c = time.perf_counter(), time.process_time()
            e = Engine(market)
            e.load(db.execute(sql, (market,)))
            took, cpu = took + time.perf_counter() - t, cpu + time.process_time() - c
            engines.append(e)
        db.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(url)
        for market in MARKETS:
            t, c = time.perf_counter(), time.process_time()
            e = Engine(market)
            loader = Loader(e)
            async with conn.transaction():
                cursor = await conn.cursor(sql.replace("?", "$1"), market)
                while rows := await cursor.fetch(10_000):
                    loader.add([tuple(r) for r in rows])
            loader.install()
            took, cpu = took + time.perf_counter() - t, cpu + time.process_time() - c
            engines.append(e)
        await conn.close()
    gc.collect()
    out = {"load": took, "cpu": cpu, "rss": rss() - before, "resting": sum(len(e) for e in engines)}
    if trace:
        out["traced"] = tracemalloc.get_traced_memory()[0] - traced0
    return out


def child(args: argparse.Namespace) -> None:
    tune_runtime()
    if args.child == "engine":
        res = asyncio.run(engine_alone(args.url, trace=False))
        res.update({k: v for k, v in asyncio.run(engine_alone(args.url, trace=True)).items() if k == "traced"})
    else:
        res = asyncio.run(node(args.url, trace=args.child == "traced", top=args.top))
    print(json.dumps(res))


def run_child(what: str, url: str, top: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", what, "--url", url, "--top", str(top)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the {what} measurement failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measure(url: str, n: int, top: int) -> None:
    asyncio.run(clear(url)) if not url.startswith("sqlite") else None
    empty = run_child("empty", url, top)
    empty_traced = run_child("traced", url, top)
    t = time.perf_counter()
    asyncio.run(seed(url, n))
    print(f"seeded {n:,} resting orders in {time.perf_counter() - t:.1f}s ({url.split(':')[0]})")
    full = run_child("full", url, top)
    traced = run_child("traced", url, top)
    eng = run_child("engine", url, top)
    assert full["resting"] == eng["resting"] == n, (full["resting"], eng["resting"], n)
    node_rss = (full["rss"] - empty["rss"]) / n
    node_py = (traced["traced"] - empty_traced["traced"]) / n
    eng_rss, eng_py = eng["rss"] / n, eng["traced"] / n
    print(f"node: start to ready {full['ready']:.2f}s ({full['cpu']:.2f}s CPU; empty book {empty['ready']:.2f}s), "
          f"market actors' recover {full['recover']:.2f}s")
    print(f"engine alone: Engine.load from the store {eng['load']:.2f}s ({eng['cpu']:.2f}s CPU); node recover / engine "
          f"load = {full['recover'] / eng['load']:.2f}, start-to-ready CPU / engine CPU = {full['cpu'] / eng['cpu']:.2f}")
    print(f"memory per resting order: node RSS {node_rss:.0f} B, tracemalloc {node_py:.0f} B; engine alone RSS "
          f"{eng_rss:.0f} B, tracemalloc {eng_py:.0f} B; node / engine = {node_rss / eng_rss:.2f} (RSS), "
          f"{node_py / eng_py:.2f} (tracemalloc)")
    if top:
        print("top allocation sites of the node with the book (tracemalloc, bytes per resting order):")
        for line in traced["top"]:
            print("  " + line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--postgres", default=None, help="an empty PostgreSQL database to run on instead of SQLite")
    ap.add_argument("--db-dir", default=None, help="where the SQLite file goes (default: a temporary directory)")
    ap.add_argument("--top", type=int, default=8, help="allocation sites to print")
    ap.add_argument("--child", default=None, choices=["empty", "full", "traced", "engine"], help=argparse.SUPPRESS)
    ap.add_argument("--url", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.postgres:
        measure(args.postgres, args.orders, args.top)
        return
    with tempfile.TemporaryDirectory(dir=args.db_dir) as d:
        measure(f"sqlite:///{d}/recovery.db", args.orders, args.top)


if __name__ == "__main__":
    main()
