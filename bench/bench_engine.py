"""The matching engine against a naive reference book, on the same seeded workload, in the same run.

Mix: 70% limit orders (about half of them priced through the best opposite price, so they trade on
arrival; the others rest within a few ticks of the mid), 25% cancels of live resting orders, 5%
market orders (half of them buys with a funds budget). The book is first filled with ``--book``
passive orders (not timed) and kept near that size by making takers a little smaller or larger
depending on it, so each run measures a steady book of that depth.

The ceiling is ``RefBook`` below: the book a competent programmer writes first, a ``SortedDict`` of
price -> ``deque`` per side, an id -> order dict, cancels that mark the order dead (skipped when
matching reaches it), the same price-time priority, market-buy budget and self-trade prevention
(cancel the taker) as the engine. Both are fed the same operations from plain input tuples, each as
its caller drives it: ours gets one ``Order`` built per submit, as the market actor does, and the
building is inside the timed loop. Both must end with the same trades and lots traded (checked).
Each timed pass alternates between the two books (best of ``--repeat``), so a noisy neighbour on the
shared machine hits both alike; the process is pinned to one core, with the node's GC settings, and
the time is the process's CPU time, which leaves out the time other processes hold the core.

Memory: bytes per resting order that each book allocates to hold the ``--book`` seed orders (the
input tuples and their ints are the caller's and are not counted; for ours the Order objects, the
priority ``seq`` ints and every index are). Recovery: ``Engine.load`` of the seed book as stored
rows (fresh strings and ints, as a database returns them), against ``restore`` one order at a time.

    python bench/bench_engine.py                      # 1k, 100k, 1M resting orders, 1M operations each
    python bench/bench_engine.py --book 100000 --ops 300000
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterable

from sortedcontainers import SortedDict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import node.market.engine  # noqa: E402
from node.market import BUY, GTC, LIMIT, MARKET, SELL, Engine, Order  # noqa: E402
from node.tuning import tune_runtime  # noqa: E402

MID = 100_000  # ticks: where the book starts
SPREAD = 50  # passive orders rest up to this many ticks behind the mid
AGGRESSION = 3  # aggressive orders reach up to this many ticks through the best opposite price
MAKER_LOTS = 20  # passive order volume: 1..MAKER_LOTS
TAKER_LOTS = (4, 8)  # aggressive/market volume 1..n: the smaller while the book is below target
MEMBERS = 5_000  # few enough that self-trade prevention happens now and then

# (id, member_id, side, ord_type, price, volume, tif, stop_price, funds): Order's own arguments.
OrderArgs = tuple[int, int, str, str, int, int, str, int, int]
# A submit is its OrderArgs; a cancel is the bare order id.
Op = "OrderArgs | int"


# ----------------------------------------------------------------------------- the reference book


class RefOrder:
    __slots__ = ("id", "member", "side", "price", "remaining", "live")

    def __init__(self, id: int, member: int, side: str, price: int, remaining: int) -> None:
        self.id = id
        self.member = member
        self.side = side
        self.price = price
        self.remaining = remaining
        self.live = True


class RefBook:
    """Naive price-time book: SortedDict price -> deque of orders per side, lazy cancels."""

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # best = last key
        self.asks: SortedDict = SortedDict()  # best = first key
        self.orders: dict[int, RefOrder] = {}
        self.trades = 0
        self.lots = 0

    def submit(self, args: OrderArgs) -> list[tuple[int, int, int]]:
        """Match and rest one order; returns its fills as (maker id, price, volume)."""
        oid, member, side, ord_type, price, volume, _tif, _stop, funds = args
        o = RefOrder(oid, member, side, price, volume)
        book = self.asks if side == BUY else self.bids
        market = ord_type == MARKET
        used = 0
        fills = []
        while o.remaining and book:
            best_price, level = book.peekitem(0 if side == BUY else -1)
            if not market and (best_price > price if side == BUY else best_price < price):
                break
            while level and o.remaining:
                m = level[0]
                if not m.live:
                    level.popleft()
                    continue
                if m.member == member:  # self-trade prevention: cancel the taker
                    o.remaining = 0
                    break
                v = min(o.remaining, m.remaining)
                if funds:
                    afford = (funds - used) // best_price
                    if afford == 0:
                        o.remaining = 0
                        break
                    v = min(v, afford)
                    used += v * best_price
                m.remaining -= v
                o.remaining -= v
                fills.append((m.id, best_price, v))
                self.trades += 1
                self.lots += v
                if not m.remaining:
                    level.popleft()
                    del self.orders[m.id]
            if not level:
                del book[best_price]
            else:
                break
        if o.remaining and not market:
            own = self.bids if side == BUY else self.asks
            level = own.get(price)
            if level is None:
                own[price] = level = deque()
            level.append(o)
            self.orders[oid] = o
        return fills

    def cancel(self, oid: int) -> None:
        self.orders.pop(oid).live = False


# ----------------------------------------------------------------------------- the workload


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
            args: OrderArgs = (self.new_id(), rng.randint(1, MEMBERS), side, LIMIT, price,
                               rng.randint(1, MAKER_LOTS), GTC, 0, 0)  # fmt: skip
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


def generate(n_ops: int, seed: int, target_book: int) -> tuple[list[OrderArgs], list[Op], dict[str, int]]:
    """Drive an engine untimed, record the operations and collect workload statistics."""
    w = Workload(seed, target_book)
    seeded = w.seed_book()
    eng = w.engine
    rand = w.rng.random
    trade_id0 = eng.next_trade_id
    ops: list[Op] = []
    limits = crossed = cancels = book_sum = lots = 0
    for i in range(n_ops):
        if not i & 1023:
            book_sum += len(w.live)
        r = rand()
        if r < 0.25 and w.live:
            oid = w.live[w.rng.randint(0, len(w.live) - 1)]
            ops.append(oid)
            cancels += 1
            eng.cancel(oid)
            w.drop(oid)
            continue
        args = w.next_order(r)
        ops.append(args)
        res = eng.submit(Order(*args))
        lots += sum(t.volume for t in res.trades)
        if args[3] == LIMIT:
            limits += 1
            if res.trades:
                crossed += 1
        w.track(res)
    stats = {
        "trades": eng.next_trade_id - trade_id0,
        "lots": lots,
        "limits": limits,
        "crossed": crossed,
        "cancels": cancels,
        "avg_book": book_sum // max(1, (n_ops + 1023) // 1024),
    }
    return seeded, ops, stats


# ----------------------------------------------------------------------------- the two drivers


def run_ours(seeded: list[OrderArgs], ops: list[Op]) -> tuple[int, int, int]:
    """Timed: every submit builds its Order from the inputs, as the market actor does."""
    engine = Engine("bench")
    submit = engine.submit
    cancel = engine.cancel
    for args in seeded:
        submit(Order(*args))
    trade_id0 = engine.next_trade_id
    gc.collect()
    t0 = time.process_time_ns()
    for op in ops:
        if type(op) is int:
            cancel(op)
        else:
            submit(Order(*op))
    elapsed = time.process_time_ns() - t0
    return elapsed, engine.next_trade_id - trade_id0, -1


def run_ref(seeded: list[OrderArgs], ops: list[Op]) -> tuple[int, int, int]:
    book = RefBook()
    submit = book.submit
    cancel = book.cancel
    for args in seeded:
        submit(args)
    trades0, lots0 = book.trades, book.lots
    gc.collect()
    t0 = time.process_time_ns()
    for op in ops:
        if type(op) is int:
            cancel(op)
        else:
            submit(op)
    elapsed = time.process_time_ns() - t0
    return elapsed, book.trades - trades0, book.lots - lots0


def bytes_per_order(build: Callable[[], object], n: int) -> float:
    """tracemalloc'd bytes held after ``build`` (the inputs exist beforehand), per order."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = build()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del book
    return held / n


def memory(seeded: list[OrderArgs]) -> tuple[float, float]:
    def ours() -> Engine:
        e = Engine("bench")
        for args in seeded:
            e.submit(Order(*args))
        return e

    def ref() -> RefBook:
        b = RefBook()
        for args in seeded:
            b.submit(args)
        return b

    n = len(ours())  # orders that rest (a few seed orders may cross: MID is shared)
    return bytes_per_order(ours, n), bytes_per_order(ref, n)


def recovery(seeded: list[OrderArgs]) -> tuple[float, float]:
    """Seconds to rebuild the seed book from stored rows: bulk ``load``, and ``restore`` per order."""
    rows = [
        (a[0], int(str(a[1])), "".join(a[2]), "".join(LIMIT), int(str(a[4])), a[5], a[5], "".join(GTC), 0, 0, 0, 0,
         i + 1, 0)
        for i, a in enumerate(seeded)
    ]  # fmt: skip
    gc.collect()
    t0 = time.process_time()
    Engine("bench").load(rows)
    bulk = time.process_time() - t0
    gc.collect()
    t0 = time.process_time()
    e = Engine("bench")
    for r in rows:
        o = Order(r[0], r[1], r[2], r[3], r[4], r[5], r[7], r[8], r[9])
        o.remaining, o.funds_used, o.trades_count, o.seq, o.triggered = r[6], r[10], r[11], r[12], bool(r[13])
        e.restore(o)
    one_by_one = time.process_time() - t0
    return bulk, one_by_one


def pin_one_core() -> None:
    """Run on a single core, so the numbers are per core and steadier on a shared machine."""
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass


def bench_size(book: int, n_ops: int, seed: int, repeat: int, mem: bool) -> float:
    t0 = time.perf_counter()
    seeded, ops, st = generate(n_ops, seed, book)
    gen_s = time.perf_counter() - t0
    ours: list[int] = []
    ref: list[int] = []
    for _ in range(max(1, repeat)):
        el, trades, _ = run_ours(seeded, ops)
        if trades != st["trades"]:
            raise SystemExit(f"engine diverged: {trades} trades vs {st['trades']}")
        ours.append(el)
        el, trades, lots = run_ref(seeded, ops)
        if (trades, lots) != (st["trades"], st["lots"]):
            raise SystemExit(f"reference diverged: {trades} trades / {lots} lots vs {st['trades']} / {st['lots']}")
        ref.append(el)
    n = len(ops)
    ours_ops = n / min(ours) * 1e9
    ref_ops = n / min(ref) * 1e9
    limits = st["limits"]
    print(f"\n{book:,} resting orders (average {st['avg_book']:,} during the run), {n:,} operations, "
          f"generated in {gen_s:.1f}s")  # fmt: skip
    print(f"  mix       {limits / n:.1%} limit ({st['crossed'] / max(1, limits):.1%} of them crossing), "
          f"{st['cancels'] / n:.1%} cancel, {(n - limits - st['cancels']) / n:.1%} market; "
          f"{st['trades']:,} trades, {st['lots']:,} lots, identical in both books")  # fmt: skip
    print(f"  ours      {ours_ops:>11,.0f} ops/s (best of {len(ours)})")
    print(f"  reference {ref_ops:>11,.0f} ops/s (SortedDict + deque)")
    print(f"  ratio     {ours_ops / ref_ops:.2f}x the reference")
    if mem:
        m_ours, m_ref = memory(seeded)
        print(f"  memory    {m_ours:.0f} bytes per resting order (reference {m_ref:.0f})")
        bulk, one = recovery(seeded)
        print(f"  recovery  {bulk:.2f}s to load {book:,} stored orders in bulk ({one:.2f}s with restore() per order)")
    return ours_ops / ref_ops


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000, help="timed operations per book size")
    ap.add_argument("--seed", type=int, default=1, help="workload seed")
    ap.add_argument("--book", type=int, action="append", help="resting orders to start from and keep near "
                    "(repeatable; default 1,000, 100,000 and 1,000,000)")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per book; the best is shown")
    ap.add_argument("--no-memory", action="store_true", help="skip the bytes-per-order measurement")
    ap.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    ns = ap.parse_args(argv)
    if not ns.all_cores:
        pin_one_core()
    tune_runtime()  # the node's GC and switch-interval settings, for both books
    compiled = not node.market.engine.__file__.endswith(".py")
    print(f"python {sys.version.split()[0]}, engine {'compiled (mypyc)' if compiled else 'pure Python'}, "
          f"seed {ns.seed}")  # fmt: skip
    ratios = {b: bench_size(b, ns.ops, ns.seed, ns.repeat, not ns.no_memory) for b in ns.book or (1_000, 100_000, 1_000_000)}
    print("\nratio to the reference: " + ", ".join(f"{b:,} resting {r:.2f}x" for b, r in ratios.items()))


if __name__ == "__main__":
    main()
