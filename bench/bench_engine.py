"""Benchmark of the pure matching engine on a seeded mixed workload.

Mix: 70% limit orders, 25% cancels of live resting orders, 5% market orders (half of them buys with
a funds budget). Limit orders are priced around the current mid: half reach through the best
opposite price (they cross on arrival), half rest behind the mid on their own side. The book is
first filled with --book passive orders (not measured), and kept near that size by making takers
a little smaller or larger depending on it, so the run measures a steady book, not a draining one.

Two passes over the same operations, because timing each call distorts throughput:
1. a generating pass drives the engine, picks live orders to cancel and records every operation;
2. a replay pass feeds the recorded operations, as fresh pre-built Order objects, to a new engine
   and times each call with perf_counter_ns (p50/p99 latency);
3. --repeat more replay passes without per-op timing give operations/s (best and median: the
   machine is shared). The engine is deterministic, so every pass must end with the same trade
   count and state hash as the first (checked).

Order construction is the caller's cost and is kept out of the measured loop. The process is
pinned to one core.

    python bench/bench_engine.py --ops 1000000 --seed 1
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from node.market import BUY, GTC, LIMIT, MARKET, SELL, Engine, Order  # noqa: E402

MID = 100_000  # ticks: where the book starts
SPREAD = 50  # passive orders rest up to this many ticks behind the mid
AGGRESSION = 3  # aggressive orders reach up to this many ticks through the best opposite price
MAKER_LOTS = 20  # passive order volume: 1..MAKER_LOTS
TAKER_LOTS = (4, 8)  # aggressive/market volume 1..n: the smaller while the book is below target
MEMBERS = 5_000  # few enough that self-trade prevention happens now and then

OrderArgs = tuple[int, int, str, str, int, int, str, int, int]
Op = tuple[str, "OrderArgs | int"]


def pin_one_core() -> None:
    """Run on a single core, so the number is per core and steadier on a shared machine."""
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass


def percentile(sorted_ns: list[int], permille: int) -> int:
    """Nearest-rank percentile (in per mille: 990 is p99) of an ascending list."""
    if not sorted_ns:
        return 0
    rank = -(-len(sorted_ns) * permille // 1000)  # ceil
    return sorted_ns[max(rank, 1) - 1]


class Workload:
    """Generates operations against a live engine and keeps the harness bookkeeping."""

    def __init__(self, seed: int, target_book: int) -> None:
        self.rng = random.Random(seed)
        self.engine = Engine("bench")
        self.target = target_book
        self.live: list[int] = []  # ids of resting orders; pos gives O(1) random removal
        self.pos: dict[int, int] = {}
        self.next_id = 1

    def drop(self, oid: int) -> None:
        i = self.pos.pop(oid, None)
        if i is None:
            return
        last = self.live.pop()
        if last != oid:
            self.live[i] = last
            self.pos[last] = i

    def track(self, res: object) -> None:
        for o in res.done:  # type: ignore[attr-defined]
            self.drop(o.id)
        for o in res.cancelled:  # type: ignore[attr-defined]
            self.drop(o.id)
        for o in res.rested:  # type: ignore[attr-defined]
            self.pos[o.id] = len(self.live)
            self.live.append(o.id)

    def new_id(self) -> int:
        oid = self.next_id
        self.next_id += 1
        return oid

    def seed_book(self) -> list[OrderArgs]:
        """Passive orders on both sides of MID, the book the measured run starts from."""
        rng = self.rng
        seeded: list[OrderArgs] = []
        for i in range(self.target):
            side = BUY if i % 2 else SELL
            off = rng.randint(1, SPREAD)
            price = MID - off if side == BUY else MID + off
            args: OrderArgs = (
                self.new_id(),
                rng.randint(1, MEMBERS),
                side,
                LIMIT,
                price,
                rng.randint(1, MAKER_LOTS),
                GTC,
                0,
                0,
            )
            seeded.append(args)
            self.track(self.engine.submit(Order(*args)))
        return seeded

    def next_order(self, r: float) -> OrderArgs:
        """A limit (r < 0.95) or market order, priced from the current book."""
        rng = self.rng
        randint = rng.randint
        eng = self.engine
        side = BUY if rng.random() < 0.5 else SELL
        aggressive = rng.random() < 0.5
        taker_lots = TAKER_LOTS[0] if len(self.live) < self.target else TAKER_LOTS[1]
        member = randint(1, MEMBERS)
        bb = eng.best_bid()
        ba = eng.best_ask()
        if r >= 0.95:
            vol = randint(1, taker_lots)
            funds = vol * ((ba if ba is not None else MID) + SPREAD) if side == BUY else 0
            return (self.new_id(), member, side, MARKET, 0, vol, GTC, 0, funds)
        if bb is not None and ba is not None:
            mid = (bb + ba) // 2
        else:
            mid = bb if bb is not None else ba if ba is not None else MID
        vol = randint(1, taker_lots) if aggressive else randint(1, MAKER_LOTS)
        if side == BUY:
            if aggressive and ba is not None:
                price = ba + randint(0, AGGRESSION)
            else:
                price = mid - randint(0, SPREAD)
                if ba is not None and price >= ba:
                    price = ba - 1
        else:
            if aggressive and bb is not None:
                price = bb - randint(0, AGGRESSION)
            else:
                price = mid + randint(0, SPREAD)
                if bb is not None and price <= bb:
                    price = bb + 1
        return (self.new_id(), member, side, LIMIT, price, vol, GTC, 0, 0)


def generate(
    n_ops: int, seed: int, target_book: int
) -> tuple[list[OrderArgs], list[Op], dict[str, int | str]]:
    """Pass 1: drive an engine, record the operations and collect workload statistics."""
    w = Workload(seed, target_book)
    seeded = w.seed_book()
    eng = w.engine
    rand = w.rng.random
    trade_id0 = eng.next_trade_id
    ops: list[Op] = []
    limits = crossed = cancels = book_sum = 0
    for i in range(n_ops):
        if not i & 1023:
            book_sum += len(w.live)
        r = rand()
        if r < 0.25 and w.live:
            oid = w.live[w.rng.randint(0, len(w.live) - 1)]
            ops.append(("c", oid))
            cancels += 1
            eng.cancel(oid)
            w.drop(oid)
            continue
        args = w.next_order(r)
        ops.append(("s", args))
        res = eng.submit(Order(*args))
        if args[3] == LIMIT:
            limits += 1
            if res.trades:
                crossed += 1
        w.track(res)
    asks, bids = eng.depth(1 << 30)
    stats: dict[str, int | str] = {
        "trades": eng.next_trade_id - trade_id0,
        "limits": limits,
        "crossed": crossed,
        "cancels": cancels,
        "resting": len(eng),
        "avg_book": book_sum // max(1, (n_ops + 1023) // 1024),
        "levels": len(asks) + len(bids),
        "hash": eng.state_hash(),
    }
    return seeded, ops, stats


def replay(seeded: list[OrderArgs], ops: list[Op], per_op: bool) -> tuple[int, list[int], int, str]:
    """Replay the recorded operations on a fresh engine, from pre-built orders.

    Returns the elapsed ns of the whole loop, the per-operation ns (only when ``per_op``: timing
    each call costs about as much as a cancel, so throughput comes from passes without it), the
    trade count and the final state hash.
    """
    engine = Engine("bench")
    for args in seeded:
        engine.submit(Order(*args))
    trade_id0 = engine.next_trade_id
    submit = engine.submit
    cancel = engine.cancel
    calls: list[tuple[Callable[..., object], object]] = [
        (cancel, arg) if kind == "c" else (submit, Order(*arg))  # type: ignore[misc]
        for kind, arg in ops
    ]
    lat: list[int] = []
    gc.collect()
    gc.freeze()  # the pre-built orders belong to the harness: keep them out of the collector's scans
    perf = time.perf_counter_ns
    t0 = perf()
    if per_op:
        append = lat.append
        for fn, arg in calls:
            t = perf()
            fn(arg)
            append(perf() - t)
    else:
        for fn, arg in calls:
            fn(arg)
    elapsed = perf() - t0
    gc.unfreeze()
    return elapsed, lat, engine.next_trade_id - trade_id0, engine.state_hash()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000, help="number of measured operations")
    ap.add_argument("--seed", type=int, default=1, help="workload seed")
    ap.add_argument("--book", type=int, default=5_000, help="resting orders to start from and keep near")
    ap.add_argument("--repeat", type=int, default=3, help="replay passes; the best and the median are shown")
    ap.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    ns = ap.parse_args()
    if not ns.all_cores:
        pin_one_core()

    t0 = time.perf_counter()
    seeded, ops, st = generate(ns.ops, ns.seed, ns.book)
    gen_s = time.perf_counter() - t0
    runs: list[int] = []
    lat: list[int] = []
    for i in range(max(1, ns.repeat) + 1):
        elapsed, times, trades, digest = replay(seeded, ops, per_op=i == 0)
        if trades != st["trades"] or digest != st["hash"]:
            raise SystemExit(
                f"replay diverged: {trades} trades vs {st['trades']}, hash {digest} vs {st['hash']}"
            )
        if i == 0:
            lat = sorted(times)
        else:
            runs.append(elapsed)
    runs.sort()

    n = len(ops)
    limits = int(st["limits"])
    cancels = int(st["cancels"])
    best, median = runs[0], runs[len(runs) // 2]
    print(f"python {sys.version.split()[0]}, {n:,} ops, seed {ns.seed}, generation pass {gen_s:.1f}s")
    print(
        f"throughput      {n / best * 1e9:,.0f} ops/s best, {n / median * 1e9:,.0f} median of {len(runs)}"
        f" replay passes without per-op timing ({best / 1e9:.3f}s)"
    )
    print(
        f"latency         p50 {percentile(lat, 500) / 1000:.2f} us   p99 {percentile(lat, 990) / 1000:.2f} us"
        f"   p99.9 {percentile(lat, 999) / 1000:.2f} us   max {lat[-1] / 1000:.1f} us (per-op timed pass)"
    )
    print(
        f"mix             {limits / n:.1%} limit, {cancels / n:.1%} cancel, {(n - limits - cancels) / n:.1%} market"
    )
    print(
        f"crossing        {int(st['crossed']) / max(1, limits):.1%} of {limits:,} limit orders traded on arrival"
    )
    print(f"trades          {int(st['trades']):,}")
    print(
        f"book            {int(st['avg_book']):,} resting orders on average; at the end {int(st['resting']):,}"
        f" in {st['levels']} levels (hash {str(digest)[:16]}...)"
    )


if __name__ == "__main__":
    main()
