"""The matching engine against a naive reference book, on the same seeded workload, in the same run.

Mix: 70% limit orders (about half of them priced through the best opposite price, so they trade on
arrival; the others rest within a few ticks of the mid), 25% cancels of live resting orders, 5%
market orders (half of them buys with a funds budget). The book is first filled with ``--book``
passive orders (not timed) and kept near that size by making takers a little smaller or larger
depending on it, so each run measures a steady book of that depth.

The ceiling is ``RefBook`` (node/market/reference.py): the book a competent programmer writes
first, a ``SortedDict`` of price -> ``deque`` per side, an id -> order dict, cancels that mark the
order dead (skipped when matching reaches it), the same price-time priority, market-buy budget and
self-trade prevention (cancel the taker) as the engine. Both are fed the same operations from plain
input tuples, each as its caller drives it: ours gets one ``Order`` built per submit, as the market
actor does, and the building is inside the timed loop. Both must end with the same trades and lots
traded (checked). Ours runs in both builds in the same process: pure Python (a copy of the package's
sources, imported under another name) and, when scripts/compile_engine.py has built it, the mypyc
build that ``node.market`` then is. Each timed pass alternates between the books (best of
``--repeat``), so a noisy neighbour on the shared machine hits all alike; the process is pinned to
one core, with the node's GC settings, and the time is the process's CPU time, which leaves out the
time other processes hold the core.

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
import importlib
import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import node.market  # noqa: E402
import node.market.engine  # noqa: E402
from node.market import BUY, GTC, LIMIT, MARKET, SELL, Book, Engine, Order  # noqa: E402
from node.market.reference import OrderArgs, RefBook  # noqa: E402
from node.tuning import tune_runtime  # noqa: E402

MID = 100_000  # ticks: where the book starts
SPREAD = 50  # passive orders rest up to this many ticks behind the mid
AGGRESSION = 3  # aggressive orders reach up to this many ticks through the best opposite price
MAKER_LOTS = 20  # passive order volume: 1..MAKER_LOTS
TAKER_LOTS = (4, 8)  # aggressive/market volume 1..n: the smaller while the book is below target
MEMBERS = 5_000  # few enough that self-trade prevention happens now and then

# A submit is its OrderArgs; a cancel is the bare order id.
Op = "OrderArgs | int"


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


def pure_build() -> ModuleType:
    """The engine package as pure Python, whatever ``node.market`` is: its sources, copied and imported
    under another name (Python would load a compiled module beside a ``.py`` in its place)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    shutil.copytree(Path(node.market.__file__).parent, tmp / "pure_market", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    sys.path.insert(0, str(tmp))
    mod = importlib.import_module("pure_market")
    assert importlib.import_module("pure_market.engine").__file__.endswith(".py")
    return mod


def run_ours(build: ModuleType, seeded: list[OrderArgs], ops: list[Op]) -> tuple[int, int, int]:
    """Timed: every submit builds its Order from the inputs, as the market actor does."""
    engine = build.Engine("bench")
    order = build.Order
    submit = engine.submit
    cancel = engine.cancel
    for args in seeded:
        submit(order(*args))
    trade_id0 = engine.next_trade_id
    gc.collect()
    t0 = time.process_time_ns()
    for op in ops:
        if type(op) is int:
            cancel(op)
        else:
            submit(order(*op))
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


def memory(build: ModuleType, seeded: list[OrderArgs]) -> tuple[float, float]:
    """Bytes per resting order: ours (this build), and the reference."""

    def ours() -> Book:
        e = build.Engine("bench")
        for args in seeded:
            e.submit(build.Order(*args))
        return e  # type: ignore[no-any-return]

    def ref() -> Book:
        b = RefBook()
        for args in seeded:
            b.submit(args)
        return b

    n = len(ours())  # orders that rest (a few seed orders may cross: MID is shared)
    return bytes_per_order(ours, n), bytes_per_order(ref, n)


def recovery(build: ModuleType, seeded: list[OrderArgs]) -> tuple[float, float]:
    """Seconds to rebuild the seed book from stored rows: bulk ``load``, and ``restore`` per order."""
    rows = [
        (a[0], int(str(a[1])), "".join(a[2]), "".join(LIMIT), int(str(a[4])), a[5], a[5], "".join(GTC), 0, 0, 0, 0,
         i + 1, 0)
        for i, a in enumerate(seeded)
    ]  # fmt: skip
    gc.collect()
    t0 = time.process_time()
    build.Engine("bench").load(rows)
    bulk = time.process_time() - t0
    gc.collect()
    t0 = time.process_time()
    e = build.Engine("bench")
    for r in rows:
        o = build.Order(r[0], r[1], r[2], r[3], r[4], r[5], r[7], r[8], r[9])
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


def bench_size(builds: dict[str, ModuleType], book: int, n_ops: int, seed: int, repeat: int,
               mem: bool) -> dict[str, float]:  # fmt: skip
    """Time every build of ours and the reference on one workload; returns each build's ratio."""
    t0 = time.perf_counter()
    seeded, ops, st = generate(n_ops, seed, book)
    gen_s = time.perf_counter() - t0
    ours: dict[str, list[int]] = {name: [] for name in builds}
    ref: list[int] = []
    for _ in range(max(1, repeat)):
        for name, build in builds.items():
            el, trades, _ = run_ours(build, seeded, ops)
            if trades != st["trades"]:
                raise SystemExit(f"engine ({name}) diverged: {trades} trades vs {st['trades']}")
            ours[name].append(el)
        el, trades, lots = run_ref(seeded, ops)
        if (trades, lots) != (st["trades"], st["lots"]):
            raise SystemExit(f"reference diverged: {trades} trades / {lots} lots vs {st['trades']} / {st['lots']}")
        ref.append(el)
    n = len(ops)
    ref_ops = n / min(ref) * 1e9
    limits = st["limits"]
    print(f"\n{book:,} resting orders (average {st['avg_book']:,} during the run), {n:,} operations, "
          f"generated in {gen_s:.1f}s")  # fmt: skip
    print(f"  mix        {limits / n:.1%} limit ({st['crossed'] / max(1, limits):.1%} of them crossing), "
          f"{st['cancels'] / n:.1%} cancel, {(n - limits - st['cancels']) / n:.1%} market; "
          f"{st['trades']:,} trades, {st['lots']:,} lots, identical in every book")  # fmt: skip
    print(f"  reference  {ref_ops:>11,.0f} ops/s (SortedDict + deque, best of {len(ref)})")
    ratios = {}
    for name in builds:
        ours_ops = n / min(ours[name]) * 1e9
        ratios[name] = ours_ops / ref_ops
        print(f"  {name:<10} {ours_ops:>11,.0f} ops/s   {ratios[name]:.2f}x the reference")
    if mem:
        for name, build in builds.items():
            m_ours, m_ref = memory(build, seeded)
            bulk, one = recovery(build, seeded)
            print(f"  {name:<10} {m_ours:.0f} bytes per resting order (reference {m_ref:.0f}); "
                  f"recovery of {book:,} orders {bulk:.2f}s with load() ({one:.2f}s with restore() per order)")  # fmt: skip
    return ratios


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000, help="timed operations per book size")
    ap.add_argument("--seed", type=int, default=1, help="workload seed")
    ap.add_argument("--book", type=int, action="append", help="resting orders to start from and keep near "
                    "(repeatable; default 1,000, 100,000 and 1,000,000)")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per book; the best is shown")
    ap.add_argument("--no-memory", action="store_true", help="skip the bytes-per-order and recovery measurements")
    ap.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    ap.add_argument("--pure-only", action="store_true", help="leave the compiled build out even when it is built")
    ns = ap.parse_args(argv)
    if not ns.all_cores:
        pin_one_core()
    tune_runtime()  # the node's GC and switch-interval settings, for every book
    builds = {"pure": pure_build()}
    if not node.market.engine.__file__.endswith(".py") and not ns.pure_only:
        builds["compiled"] = node.market
    print(f"python {sys.version.split()[0]}, engine builds: {', '.join(builds)}, seed {ns.seed}")
    sizes = ns.book or (1_000, 100_000, 1_000_000)
    ratios = {b: bench_size(builds, b, ns.ops, ns.seed, ns.repeat, not ns.no_memory) for b in sizes}
    for name in builds:
        print(f"\nratio to the reference, {name}: " + ", ".join(f"{b:,} resting {r[name]:.2f}x" for b, r in ratios.items()))


if __name__ == "__main__":
    main()
