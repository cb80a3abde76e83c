"""Property test: the engine against a deliberately naive reference model.

The model keeps plain lists and rescans them linearly for every decision, so that it is obviously
correct rather than fast. Hypothesis drives both with the same random submits (every type and time
in force, few members so self-trade prevention happens, a narrow price range so orders cross) and
cancels, and after each step compares trades, books, order states and the MatchResult lists.
Finally the resting orders are restored into a new engine, which must give the same state hash.

The engine has two builds, pure Python and compiled by mypyc (scripts/compile_engine.py): this file
runs on the one this process imports, and once more, in a subprocess, on the other.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import node.market.engine
from node.market import (
    BUY,
    CANCEL,
    DONE,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    POST_ONLY,
    SELL,
    STOP_LIMIT,
    WAIT,
    Book,
    Engine,
    MatchResult,
    Order,
    OrderNotFound,
    WouldCross,
)
from node.market.reference import RefBook

# ----------------------------------------------------------------------------- reference model


@dataclass
class ROrder:
    id: int
    member: int
    side: str
    kind: str
    price: int
    volume: int
    tif: str
    stop: int
    funds: int
    remaining: int = 0
    used: int = 0
    ntrades: int = 0
    seq: int = 0
    state: str = WAIT
    triggered: bool = False

    def __post_init__(self) -> None:
        self.remaining = self.volume


@dataclass
class RResult:
    trades: list[tuple[int, int, int, int, int]] = field(default_factory=list)  # id, price, vol, maker, taker
    cancelled: list[int] = field(default_factory=list)
    triggered: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    rested: list[int] = field(default_factory=list)


class Rejected(Exception):
    """The model's WouldCross."""


class Model:
    """Spec, executed literally: lists scanned in full, sorted copies, no indexes."""

    def __init__(self, stp: str, last_price: int | None) -> None:
        self.stp = stp
        self.book: list[ROrder] = []  # every resting order, in no particular order
        self.stops: list[ROrder] = []  # every untriggered stop
        self.last_price = last_price
        self.next_trade_id = 1
        self.next_seq = 1

    def priority(self, side: str) -> list[ROrder]:
        """Resting orders of one side, best price first, then oldest first."""
        orders = [o for o in self.book if o.side == side]
        if side == BUY:
            return sorted(orders, key=lambda o: (-o.price, o.seq))
        return sorted(orders, key=lambda o: (o.price, o.seq))

    @staticmethod
    def crosses(taker: ROrder, maker_price: int) -> bool:
        if taker.kind == MARKET:
            return True
        return maker_price <= taker.price if taker.side == BUY else maker_price >= taker.price

    def submit(self, o: ROrder) -> RResult:
        res = RResult()
        if o.kind == STOP_LIMIT:
            lp = self.last_price
            if lp is not None and self.reached(o, lp):
                o.triggered = True
                res.triggered.append(o.id)
                self.run([o], [], res)
            else:
                self.stops.append(o)
                res.rested.append(o.id)
            return res
        if o.kind == LIMIT and o.tif == POST_ONLY:
            opposite = self.priority(SELL if o.side == BUY else BUY)
            if any(self.crosses(o, m.price) for m in opposite):
                raise Rejected
        prices = self.execute(o, res)
        self.run([], prices, res)
        return res

    @staticmethod
    def reached(stop: ROrder, price: int) -> bool:
        return price >= stop.stop if stop.side == BUY else price <= stop.stop

    def run(self, pending: list[ROrder], prices: list[int], res: RResult) -> None:
        """Fire the stops reached by any of ``prices``; execute waiting stops lowest id first."""
        while True:
            fired = sorted(
                (s for s in self.stops if any(self.reached(s, p) for p in prices)), key=lambda s: s.id
            )
            for s in fired:
                self.stops.remove(s)
                s.triggered = True
                res.triggered.append(s.id)
                pending.append(s)
            if not pending:
                return
            nxt = min(pending, key=lambda s: s.id)
            pending.remove(nxt)
            prices = self.execute(nxt, res)

    def execute(self, o: ROrder, res: RResult) -> list[int]:
        """Match one taker; returns its trade prices."""
        tif = IOC if o.kind == MARKET else o.tif
        makers = [m for m in self.priority(SELL if o.side == BUY else BUY) if self.crosses(o, m.price)]
        if makers and tif == POST_ONLY:  # only a triggered stop gets here
            o.state = CANCEL
            res.cancelled.append(o.id)
            return []
        if tif == FOK:
            available = 0
            for m in makers:
                if m.member == o.member and self.stp == "cancel_taker":
                    break
                if m.member == o.member and self.stp == "cancel_maker":
                    continue
                available += m.remaining
            if available < o.remaining:
                o.state = CANCEL
                res.cancelled.append(o.id)
                return []
        prices: list[int] = []
        stp_cut = False
        for m in makers:
            if o.remaining == 0:
                break
            if o.kind == MARKET and o.side == BUY and o.funds - o.used < m.price:
                break  # cannot pay for one more lot: stop before touching this maker
            if m.member == o.member and self.stp != "none":
                if self.stp == "cancel_taker":
                    stp_cut = True
                    break
                self.book.remove(m)
                m.state = CANCEL
                res.cancelled.append(m.id)
                continue
            vol = min(o.remaining, m.remaining)
            if o.kind == MARKET and o.side == BUY:
                vol = min(vol, (o.funds - o.used) // m.price)
            res.trades.append((self.next_trade_id, m.price, vol, m.id, o.id))
            self.next_trade_id += 1
            prices.append(m.price)
            for x in (m, o):
                x.remaining -= vol
                x.used += m.price * vol
                x.ntrades += 1
            if m.remaining == 0:
                self.book.remove(m)
                m.state = DONE
                res.done.append(m.id)
        if prices:
            self.last_price = prices[-1]
        if o.remaining == 0:
            o.state = DONE
            res.done.append(o.id)
        elif tif in (GTC, POST_ONLY) and not stp_cut:
            o.seq = self.next_seq
            self.next_seq += 1
            self.book.append(o)
            res.rested.append(o.id)
        else:
            o.state = CANCEL
            res.cancelled.append(o.id)
        return prices

    def cancel_all(self, member: int, side: str | None) -> list[int]:
        victims = [o for o in self.book + self.stops if o.member == member and side in (None, o.side)]
        for o in victims:
            self.cancel(o.id)
        return sorted(o.id for o in victims)

    def cancel(self, oid: int) -> ROrder:
        for lst in (self.book, self.stops):
            for o in lst:
                if o.id == oid:
                    lst.remove(o)
                    o.state = CANCEL
                    return o
        raise KeyError(oid)


# ----------------------------------------------------------------------------- strategies

PRICES = st.integers(95, 105)
MEMBERS = st.integers(1, 3)

# Budgets near a multiple of a price hit the "cannot pay one more lot" edge.
FUNDS = st.one_of(
    st.integers(1, 1200),
    st.builds(lambda n, p, d: max(1, n * p + d), st.integers(0, 8), PRICES, st.integers(-1, 1)),
)
limit_ops = st.tuples(
    st.just(LIMIT), st.sampled_from([BUY, SELL]), PRICES, st.integers(1, 8), MEMBERS,
    st.sampled_from([GTC, GTC, GTC, IOC, FOK, POST_ONLY]), st.just(0), st.just(0),
)  # fmt: skip
market_ops = st.tuples(
    st.just(MARKET), st.sampled_from([BUY, SELL]), st.just(0), st.integers(1, 10), MEMBERS,
    st.just(GTC), st.just(0), FUNDS,
)  # fmt: skip
stop_ops = st.tuples(
    st.just(STOP_LIMIT), st.sampled_from([BUY, SELL]), PRICES, st.integers(1, 8), MEMBERS,
    st.sampled_from([GTC, GTC, IOC, FOK, POST_ONLY]), PRICES, st.just(0),
)  # fmt: skip
cancel_ops = st.tuples(st.just("cancel"), st.integers(0, 1000))
cancel_all_ops = st.tuples(st.just("cancel_all"), MEMBERS, st.sampled_from([None, BUY, SELL]))
ops_strategy = st.lists(
    st.one_of(limit_ops, limit_ops, limit_ops, limit_ops, market_ops, stop_ops, cancel_ops, cancel_all_ops),
    min_size=30,
    max_size=60,
)


def make_orders(spec: tuple, oid: int) -> tuple[Order, ROrder]:
    kind, side, price, volume, member, tif, stop, funds = spec
    if kind == MARKET and side == SELL:
        funds = 0
    eng = Order(oid, member, side, kind, price, volume, tif=tif, stop_price=stop, funds=funds)
    ref = ROrder(oid, member, side, kind, price, volume, tif, stop, funds)
    return eng, ref


def result_view(res: MatchResult) -> RResult:
    return RResult(
        trades=[(t.id, t.price, t.volume, t.maker.id, t.taker.id) for t in res.trades],
        cancelled=[o.id for o in res.cancelled],
        triggered=[o.id for o in res.triggered],
        done=[o.id for o in res.done],
        rested=[o.id for o in res.rested],
    )


def assert_same_state(engine: Engine, model: Model, pairs: dict[int, tuple[Order, ROrder]]) -> None:
    for side in (BUY, SELL):
        got = [(o.id, o.remaining, o.seq) for o in engine.orders(side)]
        want = [(o.id, o.remaining, o.seq) for o in model.priority(side)]
        assert got == want, side
    assert sorted(o.id for o in engine.stop_orders()) == sorted(o.id for o in model.stops)
    for eng, ref in pairs.values():
        assert (eng.state, eng.remaining, eng.funds_used, eng.trades_count, eng.triggered) == (
            ref.state,
            ref.remaining,
            ref.used,
            ref.ntrades,
            ref.triggered,
        ), eng
        assert 0 <= eng.remaining <= eng.volume
        if eng.ord_type == MARKET and eng.side == BUY:
            assert eng.funds_used <= eng.funds
    assert engine.last_price == model.last_price
    assert engine.next_trade_id == model.next_trade_id
    engine.check_consistency()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stp=st.sampled_from(["cancel_taker", "cancel_maker", "none"]),
    last_price=st.one_of(st.none(), PRICES),
    ops=ops_strategy,
)
def test_engine_matches_reference_model(stp: str, last_price: int | None, ops: list[tuple]) -> None:
    engine = Engine("prop", stp=stp)
    engine.last_price = last_price
    model = Model(stp, last_price)
    pairs: dict[int, tuple[Order, ROrder]] = {}
    next_id = 1
    for op in ops:
        if op[0] == "cancel_all":
            got_ids = [o.id for o in engine.cancel_all(op[1], side=op[2])]
            assert got_ids == model.cancel_all(op[1], op[2])
        elif op[0] == "cancel":
            if not pairs:
                continue
            oid = sorted(pairs)[op[1] % len(pairs)]  # any order ever submitted: live or not
            try:
                want = model.cancel(oid)
            except KeyError:
                want = None
            try:
                got = engine.cancel(oid)
            except OrderNotFound:
                got = None
            assert (got is None) == (want is None)
            if got is not None:
                assert got is pairs[oid][0] and got.state == CANCEL
        else:
            eng, ref = make_orders(op, next_id)
            next_id += 1
            try:
                want_res = model.submit(ref)
            except Rejected:
                want_res = None
            try:
                got_res = result_view(engine.submit(eng))
            except WouldCross:
                got_res = None
            assert got_res == want_res
            if want_res is not None:
                pairs[eng.id] = (eng, ref)
        assert_same_state(engine, model, pairs)

    # Recovery: the resting orders and waiting stops, restored into a fresh engine in any order,
    # rebuild the same book.
    rebuilt = Engine("prop", stp=stp)
    resting = [*engine.orders(SELL), *engine.orders(BUY), *engine.stop_orders()]
    for o in reversed(resting):
        c = Order(o.id, o.member_id, o.side, o.ord_type, o.price, o.volume, o.tif, o.stop_price, o.funds)
        c.remaining, c.seq, c.triggered = o.remaining, o.seq, o.triggered
        rebuilt.restore(c)
    rebuilt.check_consistency()
    assert rebuilt.state_hash() == engine.state_hash()
    assert rebuilt.depth(100) == engine.depth(100)

    # Bulk recovery: the same orders as stored rows (strings and ints as fresh objects, as a
    # database returns them), resting ones by seq and stops anywhere, give the same book too.
    def row(o: Order) -> tuple:
        return (o.id, o.member_id, "".join(o.side), "".join(o.ord_type), o.price, o.volume, o.remaining,
                "".join(o.tif), o.stop_price, o.funds, o.funds_used, o.trades_count, o.seq, int(o.triggered))  # fmt: skip

    stops = engine.stop_orders()
    book = sorted([*engine.orders(SELL), *engine.orders(BUY)], key=lambda o: o.seq)
    loaded = Engine("prop", stp=stp)
    got = loaded.load([row(o) for o in [*stops[: len(stops) // 2], *book, *stops[len(stops) // 2 :]]])
    assert sorted(o.id for o in got) == sorted(o.id for o in resting)
    loaded.check_consistency()
    assert loaded.state_hash() == engine.state_hash()
    assert loaded.depth(100) == engine.depth(100)
    assert loaded.next_seq == max((o.seq for o in book), default=0) + 1


# ----------------------------------------------------------------------------- the bench's reference book

book_ops = st.lists(
    st.one_of(
        st.tuples(st.just("limit"), st.sampled_from([BUY, SELL]), st.integers(95, 105), st.integers(1, 6),
                  st.integers(1, 3)),
        st.tuples(st.just("market"), st.sampled_from([BUY, SELL]), st.integers(1, 6), st.integers(1, 3),
                  st.integers(1, 700)),
        st.tuples(st.just("cancel"), st.integers(0, 10_000)),
    ),
    max_size=60,
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=book_ops)
def test_engine_and_the_naive_reference_book_agree(ops: list[tuple]) -> None:
    """bench/bench_engine.py times the engine against RefBook: on what both do (GTC limit and market
    orders, cancels, self-trade prevention cancelling the taker) they must give the same fills and,
    through the Book protocol, the same book."""
    engine = Engine("prop")
    ref = RefBook()
    books: list[Book] = [engine, ref]
    assert all(isinstance(b, Book) for b in books)
    live: list[int] = []
    for i, op in enumerate(ops, start=1):
        if op[0] == "cancel":
            if not live:
                continue
            oid = live.pop(op[1] % len(live))
            for b in books:
                b.cancel(oid)
        else:
            if op[0] == "limit":
                _, side, price, volume, member = op
                args = (i, member, side, LIMIT, price, volume, GTC, 0, 0)
            else:
                _, side, volume, member, funds = op
                args = (i, member, side, MARKET, 0, volume, GTC, 0, funds if side == BUY else 0)
            res = engine.submit(Order(*args))
            assert [(t.maker.id, t.price, t.volume) for t in res.trades] == ref.submit(args)
            gone = {o.id for o in [*res.done, *res.cancelled]}
            live = [x for x in live if x not in gone] + [o.id for o in res.rested]
        assert engine.best_bid() == ref.best_bid() and engine.best_ask() == ref.best_ask()
        assert engine.depth(50) == ref.depth(50)
        assert len(engine) == len(ref) == len(live)
        for price in (95, 100, 105):
            assert engine.level_volume(BUY, price) == ref.level_volume(BUY, price)
            assert engine.level_volume(SELL, price) == ref.level_volume(SELL, price)
    engine.check_consistency()


ROOT = Path(__file__).resolve().parents[1]
COMPILED = not node.market.engine.__file__.endswith(".py")


def test_this_process_runs_the_expected_build() -> None:
    want = os.environ.get("EXCHANGE_EXPECT_ENGINE")
    if want:
        assert ("compiled" if COMPILED else "pure") == want


@pytest.mark.slow
def test_the_other_build_passes_this_file_too(tmp_path: Path) -> None:
    other = "pure" if COMPILED else "compiled"
    if other == "compiled" and (importlib.util.find_spec("mypyc") is None or shutil.which("cc") is None):
        pytest.skip("no mypyc or no C compiler: the compiled build cannot be made here")
    build = [sys.executable, str(ROOT / "scripts" / "compile_engine.py"), "--into", str(tmp_path)]
    subprocess.run([*build, *(["--pure"] if other == "pure" else [])], check=True, capture_output=True)
    # cwd: tmp_path, whose node/market is the other build (`python -m` puts the cwd first on sys.path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "EXCHANGE_EXPECT_ENGINE": other}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", __file__,
         "-k", "not the_other_build"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "3 passed" in run.stdout, run.stdout[-1000:]
