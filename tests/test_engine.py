"""Unit tests of the pure matching engine, one rule at a time: read them as its specification.

Prices are integer ticks, volumes integer lots, funds price*volume in tick*lot units.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import node.market.engine
from node.market import (
    BUY,
    CANCEL,
    CODED_COLUMNS,
    DONE,
    FOK,
    GTC,
    IOC,
    LIMIT,
    LOAD_COLUMNS,
    MARKET,
    POST_ONLY,
    SELL,
    STOP_LIMIT,
    WAIT,
    DuplicateOrder,
    Engine,
    EngineError,
    InvalidOrder,
    Loader,
    MatchResult,
    NotOwner,
    Order,
    OrderNotFound,
    Trade,
    WouldCross,
)
from node.market.recovery import MAX_TRADES, TAIL_BITS

COMPILED = not node.market.engine.__file__.endswith(".py")


class Book:
    """Test helper: an engine plus terse order constructors with automatic ids."""

    def __init__(self, stp: str = "cancel_taker", **kw: int) -> None:
        self.e = Engine("btcusd", stp=stp, **kw)
        self.next_id = 1

    def _id(self) -> int:
        oid = self.next_id
        self.next_id += 1
        return oid

    def limit(self, side: str, price: int, volume: int, member: int = 1, tif: str = GTC) -> MatchResult:
        return self.e.submit(Order(self._id(), member, side, LIMIT, price, volume, tif=tif))

    def buy(self, price: int, volume: int, member: int = 1, tif: str = GTC) -> MatchResult:
        return self.limit(BUY, price, volume, member, tif)

    def sell(self, price: int, volume: int, member: int = 1, tif: str = GTC) -> MatchResult:
        return self.limit(SELL, price, volume, member, tif)

    def market(self, side: str, volume: int, member: int = 1, funds: int = 0) -> MatchResult:
        return self.e.submit(Order(self._id(), member, side, MARKET, 0, volume, funds=funds))

    def stop(
        self, side: str, stop: int, price: int, volume: int, member: int = 1, tif: str = GTC
    ) -> MatchResult:
        return self.e.submit(
            Order(self._id(), member, side, STOP_LIMIT, price, volume, tif=tif, stop_price=stop)
        )

    def book(self, side: str) -> list[tuple[int, int, int]]:
        """(id, price, remaining) in priority order."""
        return [(o.id, o.price, o.remaining) for o in self.e.orders(side)]


def fills(res: MatchResult) -> list[tuple[int, int, int, int]]:
    """(price, volume, maker id, taker id) of each trade."""
    return [(t.price, t.volume, t.maker.id, t.taker.id) for t in res.trades]


def ids(orders: list[Order]) -> list[int]:
    return [o.id for o in orders]


# --------------------------------------------------------------------------- priority and prices


def test_resting_orders_do_not_trade_until_crossed() -> None:
    b = Book()
    b.buy(99, 5)
    res = b.sell(100, 5)
    assert res.trades == [] and ids(res.rested) == [2]
    assert b.e.best_bid() == 99 and b.e.best_ask() == 100


def test_better_price_is_matched_first() -> None:
    b = Book()
    b.sell(101, 1, member=1)
    b.sell(100, 1, member=2)
    b.sell(102, 1, member=3)
    res = b.buy(102, 3, member=9)
    assert fills(res) == [(100, 1, 2, 4), (101, 1, 1, 4), (102, 1, 3, 4)]


def test_same_price_is_first_come_first_served() -> None:
    b = Book()
    b.buy(100, 1, member=1)
    b.buy(100, 1, member=2)
    b.buy(100, 1, member=3)
    res = b.sell(100, 2, member=9)
    assert [t.maker.id for t in res.trades] == [1, 2]
    assert b.book(BUY) == [(3, 100, 1)]


def test_trade_price_is_the_makers_price_for_a_buy_taker() -> None:
    b = Book()
    b.sell(100, 5, member=1)
    res = b.buy(105, 5, member=2)
    assert fills(res) == [(100, 5, 1, 2)]


def test_trade_price_is_the_makers_price_for_a_sell_taker() -> None:
    b = Book()
    b.buy(105, 5, member=1)
    res = b.sell(100, 5, member=2)
    assert fills(res) == [(105, 5, 1, 2)]


def test_taker_stops_at_its_limit_price() -> None:
    b = Book()
    b.sell(100, 1, member=1)
    b.sell(101, 1, member=1)
    b.sell(103, 1, member=1)
    res = b.buy(101, 5, member=2)
    assert [t.price for t in res.trades] == [100, 101]
    assert b.book(BUY) == [(4, 101, 3)]
    assert b.book(SELL) == [(3, 103, 1)]


def test_volume_is_the_smaller_remaining_and_maker_keeps_its_place() -> None:
    b = Book()
    b.sell(100, 10, member=1)
    b.sell(100, 10, member=2)
    res = b.buy(100, 4, member=3)
    assert fills(res) == [(100, 4, 1, 3)]
    assert ids(res.done) == [3]
    maker = b.e.get(1)
    assert maker is not None and maker.remaining == 6 and maker.state == WAIT
    assert b.book(SELL) == [(1, 100, 6), (2, 100, 10)]  # the partly filled maker is still first


def test_limit_remainder_rests_with_a_new_sequence() -> None:
    b = Book(next_seq=500)
    b.sell(100, 3, member=1)
    res = b.buy(100, 5, member=2)
    taker = res.rested[0]
    assert taker.id == 2 and taker.remaining == 2 and taker.state == WAIT
    assert taker.seq == 501  # the maker got 500
    assert b.e.next_seq == 502
    assert b.book(BUY) == [(2, 100, 2)]
    assert b.e.best_ask() is None


def test_done_lists_makers_and_taker_that_filled_completely() -> None:
    b = Book()
    b.sell(100, 2, member=1)
    b.sell(100, 3, member=1)
    res = b.buy(100, 5, member=2)
    assert ids(res.done) == [1, 2, 3]
    assert all(o.state == DONE and o.remaining == 0 for o in res.done)
    assert b.e.get(1) is None and b.e.get(3) is None


def test_trade_ids_are_consecutive_from_next_trade_id() -> None:
    b = Book(next_trade_id=1000)
    b.sell(100, 1)
    b.sell(101, 1)
    res = b.buy(101, 2, member=2)
    assert [t.id for t in res.trades] == [1000, 1001]
    assert b.e.next_trade_id == 1002


def test_trade_helpers_and_fill_accounting() -> None:
    b = Book()
    b.sell(100, 2, member=1)
    b.sell(101, 2, member=1)
    res = b.buy(101, 3, member=2)
    t = res.trades[1]
    assert isinstance(t, Trade)
    assert t.funds == 101 and t.bid.id == 3 and t.ask.id == 2
    taker = res.done[-1]
    assert taker.funds_used == 2 * 100 + 1 * 101 and taker.trades_count == 2
    maker = b.e.get(2)
    assert maker is not None and maker.funds_used == 101 and maker.trades_count == 1
    assert b.e.last_price == 101


# --------------------------------------------------------------------------- market orders


def test_market_sell_takes_what_it_can_and_never_rests() -> None:
    b = Book()
    b.buy(100, 2, member=1)
    b.buy(90, 2, member=1)
    res = b.market(SELL, 10, member=2)
    assert [(t.price, t.volume) for t in res.trades] == [(100, 2), (90, 2)]
    taker = res.cancelled[0]
    assert taker.id == 3 and taker.state == CANCEL and taker.remaining == 6
    assert res.rested == [] and b.e.best_bid() is None and b.e.get(3) is None


def test_market_order_on_an_empty_book_is_cancelled() -> None:
    b = Book()
    res = b.market(BUY, 1, funds=1000)
    assert res.trades == [] and ids(res.cancelled) == [1]


def test_market_buy_never_spends_more_than_its_funds() -> None:
    b = Book()
    b.sell(100, 3, member=1)
    b.sell(150, 10, member=1)
    # 3 lots at 100 cost 300; 700 left buys 4 lots at 150 (600); 100 left cannot buy a 5th.
    res = b.market(BUY, 10, member=2, funds=1000)
    assert [(t.price, t.volume) for t in res.trades] == [(100, 3), (150, 4)]
    taker = res.cancelled[0]
    assert taker.funds_used == 900 <= taker.funds and taker.remaining == 3
    assert b.book(SELL) == [(2, 150, 6)]


def test_market_buy_with_funds_for_less_than_one_lot_does_not_trade() -> None:
    b = Book()
    b.sell(100, 3, member=1)
    res = b.market(BUY, 1, member=2, funds=99)
    assert res.trades == [] and ids(res.cancelled) == [2]
    assert b.book(SELL) == [(1, 100, 3)]


def test_market_buy_stops_when_one_more_lot_is_unaffordable_even_against_own_orders() -> None:
    b = Book(stp="cancel_maker")
    b.sell(100, 1, member=1)
    b.sell(100, 1, member=2)  # the buyer's own order: it is not cancelled, the buyer stops first
    res = b.market(BUY, 5, member=2, funds=199)
    assert [(t.price, t.volume) for t in res.trades] == [(100, 1)]
    assert ids(res.cancelled) == [3] and res.cancelled[0].funds_used == 100
    assert b.book(SELL) == [(2, 100, 1)]


def test_market_buy_stops_at_its_volume_when_funds_are_plenty() -> None:
    b = Book()
    b.sell(100, 5, member=1)
    res = b.market(BUY, 2, member=2, funds=10**9)
    assert [(t.price, t.volume) for t in res.trades] == [(100, 2)]
    assert ids(res.done) == [2] and res.done[0].funds_used == 200


def test_market_order_ignores_its_time_in_force() -> None:
    b = Book()
    b.buy(100, 1, member=1)
    for tif in (GTC, FOK, POST_ONLY):
        res = b.e.submit(Order(b._id(), 2, SELL, MARKET, 0, 5, tif=tif))
        assert res.rested == [] and ids(res.cancelled) == [res.cancelled[0].id]
    assert b.e.best_bid() is None and b.e.best_ask() is None


# --------------------------------------------------------------------------- time in force


def test_ioc_fills_what_crosses_and_cancels_the_rest() -> None:
    b = Book()
    b.sell(100, 2, member=1)
    res = b.buy(100, 5, member=2, tif=IOC)
    assert fills(res) == [(100, 2, 1, 2)]
    assert ids(res.cancelled) == [2] and res.cancelled[0].remaining == 3
    assert b.e.best_bid() is None


def test_ioc_that_does_not_cross_is_cancelled_untouched() -> None:
    b = Book()
    b.sell(101, 2, member=1)
    res = b.buy(100, 5, member=2, tif=IOC)
    assert res.trades == [] and ids(res.cancelled) == [2] and res.rested == []


def test_fok_fills_completely_or_not_at_all() -> None:
    b = Book()
    b.sell(100, 2, member=1)
    b.sell(101, 2, member=1)
    before = b.e.state_hash()
    res = b.buy(101, 5, member=2, tif=FOK)
    assert res.trades == [] and ids(res.cancelled) == [3] and res.cancelled[0].remaining == 5
    assert b.e.state_hash() == before
    res = b.buy(101, 4, member=2, tif=FOK)
    assert [(t.price, t.volume) for t in res.trades] == [(100, 2), (101, 2)]
    assert ids(res.done) == [1, 2, 4]


def test_fok_only_counts_liquidity_within_its_limit() -> None:
    b = Book()
    b.sell(100, 2, member=1)
    b.sell(102, 5, member=1)
    res = b.buy(101, 3, member=2, tif=FOK)
    assert res.trades == [] and ids(res.cancelled) == [3]


def test_fok_respects_self_trade_prevention_cancel_taker() -> None:
    b = Book()
    b.sell(100, 2, member=1)
    b.sell(100, 2, member=2)  # the taker's own order: liquidity behind it does not count
    b.sell(100, 5, member=1)
    res = b.buy(100, 3, member=2, tif=FOK)
    assert res.trades == [] and ids(res.cancelled) == [4]
    assert len(b.book(SELL)) == 3


def test_fok_with_cancel_maker_skips_own_orders_and_removes_them_when_it_fills() -> None:
    b = Book(stp="cancel_maker")
    b.sell(100, 2, member=1)
    b.sell(100, 2, member=2)
    b.sell(100, 5, member=1)
    res = b.buy(100, 3, member=2, tif=FOK)
    assert fills(res) == [(100, 2, 1, 4), (100, 1, 3, 4)]
    assert ids(res.cancelled) == [2]
    assert b.book(SELL) == [(3, 100, 4)]


def test_post_only_rests_when_it_does_not_cross() -> None:
    b = Book()
    b.sell(101, 1, member=1)
    res = b.buy(100, 1, member=2, tif=POST_ONLY)
    assert ids(res.rested) == [2] and b.e.best_bid() == 100


def test_post_only_that_would_take_liquidity_is_rejected_and_changes_nothing() -> None:
    b = Book()
    b.sell(101, 1, member=1)
    before = (b.e.state_hash(), b.e.next_seq, b.e.next_trade_id)
    order = Order(99, 2, BUY, LIMIT, 101, 1, tif=POST_ONLY)
    with pytest.raises(WouldCross) as exc:
        b.e.submit(order)
    assert exc.value.code == "would_cross"
    assert (b.e.state_hash(), b.e.next_seq, b.e.next_trade_id) == before
    assert order.state == WAIT and b.e.get(99) is None


# --------------------------------------------------------------------------- stop-limit orders


def test_stop_waits_outside_the_book() -> None:
    b = Book()
    res = b.stop(BUY, stop=105, price=106, volume=1)
    assert ids(res.rested) == [1] and res.trades == []
    assert b.e.best_bid() is None and b.e.depth(10) == ([], [])
    assert list(b.e.orders(BUY)) == []
    assert b.e.get(1) is not None and not b.e.get(1).triggered  # type: ignore[union-attr]


def test_buy_stop_triggers_when_last_price_reaches_it() -> None:
    b = Book()
    b.stop(BUY, stop=105, price=110, volume=2, member=3)  # id 1
    b.sell(104, 1, member=1)
    b.sell(105, 1, member=1)
    b.sell(107, 5, member=1)
    res = b.buy(104, 1, member=2)  # trades at 104: below the stop
    assert res.triggered == []
    res = b.buy(105, 1, member=2)  # trades at 105: the stop fires and buys at 107
    assert ids(res.triggered) == [1]
    assert fills(res) == [(105, 1, 3, 6), (107, 2, 4, 1)]
    stop = res.triggered[0]
    assert stop.triggered and stop.state == DONE and ids(res.done) == [3, 6, 1]


def test_sell_stop_triggers_when_last_price_falls_to_it() -> None:
    b = Book()
    b.stop(SELL, stop=95, price=90, volume=1, member=3)
    b.buy(95, 1, member=1)
    b.buy(92, 1, member=1)
    res = b.sell(95, 1, member=2)
    assert ids(res.triggered) == [1]
    assert fills(res) == [(95, 1, 2, 4), (92, 1, 3, 1)]


def test_stop_triggers_at_submit_if_last_price_already_reached_it() -> None:
    b = Book()
    b.e.last_price = 100
    b.sell(101, 5, member=1)
    res = b.stop(BUY, stop=100, price=101, volume=2, member=2)
    assert ids(res.triggered) == [2] and fills(res) == [(101, 2, 1, 2)]
    res = b.stop(BUY, stop=101, price=101, volume=2, member=2)  # last is 101 now: fires too
    assert ids(res.triggered) == [3] and fills(res) == [(101, 2, 1, 3)]
    res = b.stop(BUY, stop=102, price=103, volume=1, member=2)  # not reached: waits
    assert res.triggered == [] and ids(res.rested) == [4]


def test_stop_is_not_triggered_without_any_last_price() -> None:
    b = Book()
    res = b.stop(SELL, stop=10**6, price=1, volume=1)
    assert res.triggered == [] and ids(res.rested) == [1]


def test_triggered_stop_remainder_rests_as_a_limit_order() -> None:
    b = Book(next_seq=10)
    b.stop(BUY, stop=100, price=100, volume=5, member=3)  # id 1, no seq while waiting
    assert b.e.get(1).seq == 0  # type: ignore[union-attr]
    b.sell(100, 1, member=1)
    res = b.buy(100, 1, member=2)
    assert ids(res.triggered) == [1] and ids(res.rested) == [1]
    stop = b.e.get(1)
    assert stop is not None and stop.triggered and stop.remaining == 5 and stop.seq == 11
    assert b.book(BUY) == [(1, 100, 5)]


def test_stops_fired_together_run_lowest_id_first() -> None:
    b = Book()
    b.sell(100, 1, member=1)  # 1
    b.sell(101, 1, member=1)  # 2: only one of the two stops can have it
    b.stop(BUY, stop=100, price=101, volume=1, member=3)  # 3
    b.stop(BUY, stop=100, price=101, volume=1, member=4)  # 4
    res = b.buy(100, 1, member=2)  # 5
    assert ids(res.triggered) == [3, 4]
    assert fills(res) == [(100, 1, 1, 5), (101, 1, 2, 3)]
    assert ids(res.rested) == [4] and b.book(BUY) == [(4, 101, 1)]


def test_triggered_stops_run_in_id_order_and_cascade() -> None:
    b = Book()
    b.sell(100, 1, member=1)  # 1
    b.sell(101, 1, member=1)  # 2
    b.sell(102, 1, member=1)  # 3
    b.stop(BUY, stop=101, price=102, volume=1, member=4)  # 4: fired by the trade at 101 of stop 5
    b.stop(BUY, stop=100, price=101, volume=1, member=5)  # 5: fired by the trade at 100
    b.stop(BUY, stop=100, price=100, volume=1, member=6)  # 6: fired by the trade at 100 too
    res = b.buy(100, 1, member=2)  # 7
    # 5 and 6 fire together and run by id: 5 buys at 101, which fires 4 (lowest id waiting),
    # 4 buys at 102, then 6 finds no ask at 100 and rests.
    assert ids(res.triggered) == [5, 6, 4]
    assert fills(res) == [(100, 1, 1, 7), (101, 1, 2, 5), (102, 1, 3, 4)]
    assert ids(res.rested) == [6]
    assert b.e.last_price == 102


def test_a_stop_reached_in_the_middle_of_a_sweep_fires() -> None:
    b = Book()
    b.e.last_price = 90
    b.stop(BUY, stop=100, price=102, volume=1, member=3)  # 1
    b.buy(101, 1, member=1)  # 2
    b.buy(95, 1, member=1)  # 3
    b.sell(102, 1, member=4)  # 4: a resting ask the fired stop can take
    res = b.sell(95, 2, member=2)  # 5: trades at 101 (>= 100) then 95; the stop fired at 101
    assert ids(res.triggered) == [1]
    assert fills(res) == [(101, 1, 2, 5), (95, 1, 3, 5), (102, 1, 4, 1)]


def test_triggered_post_only_stop_that_would_cross_is_cancelled() -> None:
    b = Book()
    b.stop(BUY, stop=100, price=105, volume=1, member=3, tif=POST_ONLY)  # 1
    b.sell(100, 1, member=1)
    b.sell(104, 1, member=1)
    res = b.buy(100, 1, member=2)
    assert ids(res.triggered) == [1] and ids(res.cancelled) == [1]
    assert res.cancelled[0].state == CANCEL and b.e.get(1) is None


def test_triggered_ioc_stop_cancels_its_remainder() -> None:
    b = Book()
    b.stop(SELL, stop=100, price=99, volume=3, member=3, tif=IOC)  # 1
    b.buy(100, 1, member=1)
    b.buy(99, 1, member=1)
    res = b.sell(100, 1, member=2)
    assert fills(res) == [(100, 1, 2, 4), (99, 1, 3, 1)]
    assert ids(res.cancelled) == [1] and res.cancelled[0].remaining == 2


# --------------------------------------------------------------------------- self-trade prevention


def test_stp_cancel_taker_is_the_default_and_keeps_earlier_trades() -> None:
    b = Book()
    assert b.e.stp == "cancel_taker"
    b.sell(100, 1, member=1)
    b.sell(100, 1, member=2)  # own order of the taker below
    b.sell(100, 1, member=1)
    res = b.buy(100, 3, member=2)
    assert fills(res) == [(100, 1, 1, 4)]
    assert ids(res.cancelled) == [4] and res.cancelled[0].remaining == 2
    assert b.book(SELL) == [(2, 100, 1), (3, 100, 1)]  # own order untouched
    assert b.e.best_bid() is None  # a GTC taker cancelled by STP does not rest


def test_stp_cancel_maker_removes_own_resting_orders_and_continues() -> None:
    b = Book(stp="cancel_maker")
    b.sell(100, 1, member=1)
    b.sell(100, 1, member=2)
    b.sell(101, 1, member=2)
    b.sell(101, 1, member=1)
    res = b.buy(101, 3, member=2)
    assert fills(res) == [(100, 1, 1, 5), (101, 1, 4, 5)]
    assert ids(res.cancelled) == [2, 3]
    assert all(o.state == CANCEL and o.remaining == 1 for o in res.cancelled)
    assert b.book(BUY) == [(5, 101, 1)] and b.book(SELL) == []
    b.e.check_consistency()


def test_stp_none_allows_self_trades() -> None:
    b = Book(stp="none")
    b.sell(100, 1, member=1)
    res = b.buy(100, 1, member=1)
    assert fills(res) == [(100, 1, 1, 2)]


def test_unknown_stp_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        Engine("btcusd", stp="cancel_both")


# --------------------------------------------------------------------------- cancel


def test_cancel_removes_a_resting_order() -> None:
    b = Book()
    b.buy(100, 3, member=1)
    b.buy(100, 4, member=2)
    o = b.e.cancel(1, member_id=1)
    assert o.id == 1 and o.state == CANCEL and o.remaining == 3
    assert b.e.level_volume(BUY, 100) == 4 and b.book(BUY) == [(2, 100, 4)]
    b.e.cancel(2)
    assert b.e.best_bid() is None and b.e.depth(5) == ([], [])
    b.e.check_consistency()


def test_cancel_errors() -> None:
    b = Book()
    b.buy(100, 3, member=1)
    with pytest.raises(NotOwner) as e1:
        b.e.cancel(1, member_id=2)
    assert e1.value.code == "not_owner" and b.e.get(1) is not None
    with pytest.raises(OrderNotFound) as e2:
        b.e.cancel(42)
    assert e2.value.code == "order_not_found"
    b.sell(100, 3, member=2)  # fills order 1
    with pytest.raises(OrderNotFound):
        b.e.cancel(1)


def test_cancel_an_untriggered_stop() -> None:
    b = Book()
    b.stop(BUY, stop=101, price=101, volume=1, member=3)
    assert b.e.cancel(1).state == CANCEL
    b.sell(101, 1, member=1)
    res = b.buy(101, 1, member=2)
    assert res.triggered == []


def test_cancel_all_of_a_member_includes_stops_and_can_filter_a_side() -> None:
    b = Book()
    b.buy(99, 1, member=1)  # 1
    b.sell(101, 1, member=1)  # 2
    b.buy(98, 1, member=2)  # 3
    b.stop(SELL, stop=90, price=90, volume=1, member=1)  # 4
    b.sell(102, 1, member=1)  # 5
    assert ids(b.e.cancel_all(1, side=SELL)) == [2, 4, 5]
    assert ids(b.e.cancel_all(1)) == [1]
    assert b.e.cancel_all(1) == []
    assert b.book(BUY) == [(3, 98, 1)]
    b.e.check_consistency()


def test_a_deep_level_eaten_one_order_at_a_time_keeps_time_priority() -> None:
    # Cancels unlink orders from the middle of a level's list; priority must survive them, and
    # the level must hold exactly the live orders afterwards.
    b = Book()
    for _ in range(1000):
        b.sell(100, 1, member=1)  # ids 1..1000
    for oid in range(2, 400, 2):
        b.e.cancel(oid)
    makers = [b.buy(100, 1, member=2).trades[0].maker.id for _ in range(300)]
    assert makers == [i for i in range(1, 1001) if i >= 400 or i % 2][:300]
    assert [o.id for o in b.e.orders(SELL)] == [i for i in range(1, 1001) if i >= 400 or i % 2][300:]
    assert b.e.level_volume(SELL, 100) == 1000 - 199 - 300
    b.e.check_consistency()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "order",
    [
        lambda: Order(1, 1, BUY, LIMIT, 100, 0),
        lambda: Order(1, 1, BUY, LIMIT, 100, -1),
        lambda: Order(1, 1, BUY, LIMIT, 0, 1),
        lambda: Order(1, 1, BUY, LIMIT, -5, 1),
        lambda: Order(1, 1, BUY, LIMIT, 1 << 63, 1),
        lambda: Order(1, 1, BUY, LIMIT, 100, 1 << 63),
        lambda: Order(1, 1, BUY, LIMIT, 100.0, 1),  # type: ignore[arg-type]
        lambda: Order(1, 1, BUY, LIMIT, 100, 1.0),  # type: ignore[arg-type]
        pytest.param(
            lambda: Order(1, 1, BUY, LIMIT, True, 1),  # type: ignore[arg-type]
            marks=pytest.mark.skipif(COMPILED, reason="the compiled Order stores a bool as the int it is"),
        ),
        lambda: Order("1", 1, BUY, LIMIT, 100, 1),  # type: ignore[arg-type]
        lambda: Order(1, 1, "bid", LIMIT, 100, 1),
        lambda: Order(1, 1, BUY, "iceberg", 100, 1),
        lambda: Order(1, 1, BUY, LIMIT, 100, 1, tif="gtd"),
        lambda: Order(1, 1, BUY, LIMIT, 100, 1, stop_price=90),
        lambda: Order(1, 1, BUY, LIMIT, 100, 1, funds=100),
        lambda: Order(1, 1, SELL, MARKET, 100, 1),
        lambda: Order(1, 1, BUY, MARKET, 0, 1),
        lambda: Order(1, 1, BUY, MARKET, 0, 1, funds=-1),
        lambda: Order(1, 1, SELL, MARKET, 0, 1, funds=100),
        lambda: Order(1, 1, SELL, MARKET, 0, 1, stop_price=5),
        lambda: Order(1, 1, BUY, STOP_LIMIT, 100, 1),
        lambda: Order(1, 1, BUY, STOP_LIMIT, 0, 1, stop_price=100),
        lambda: Order(1, 1, BUY, STOP_LIMIT, 100, 1, stop_price=100, funds=5),
    ],
)
def test_invalid_orders_are_rejected_without_any_change(order: Callable[[], Order]) -> None:
    b = Book()
    b.sell(100, 1, member=9)
    before = (b.e.state_hash(), b.e.next_seq, b.e.next_trade_id)
    try:
        o = order()
    except TypeError:  # the compiled Order refuses a non-int field already
        assert COMPILED
        return
    with pytest.raises(InvalidOrder) as exc:
        b.e.submit(o)
    assert exc.value.code == "invalid_order" and isinstance(exc.value, EngineError)
    assert (b.e.state_hash(), b.e.next_seq, b.e.next_trade_id) == before


def test_an_order_that_already_traded_is_not_new() -> None:
    o = Order(5, 1, BUY, LIMIT, 100, 3)
    o.remaining = 2
    with pytest.raises(InvalidOrder):
        Engine("x").submit(o)


def test_duplicate_ids_are_rejected() -> None:
    b = Book()
    b.buy(100, 1)  # id 1
    b.stop(SELL, stop=90, price=90, volume=1)  # id 2
    for oid in (1, 2):
        with pytest.raises(DuplicateOrder) as exc:
            b.e.submit(Order(oid, 1, SELL, LIMIT, 200, 1))
        assert exc.value.code == "duplicate_order"
    assert b.book(SELL) == []


# --------------------------------------------------------------------------- queries


def test_depth_is_aggregated_best_first_on_both_sides() -> None:
    b = Book()
    for price, vol in ((101, 1), (103, 2), (102, 3), (101, 4)):
        b.sell(price, vol)
    for price, vol in ((99, 1), (97, 2), (99, 5), (98, 1)):
        b.buy(price, vol)
    asks, bids = b.e.depth(10)
    assert asks == [(101, 5), (102, 3), (103, 2)]
    assert bids == [(99, 6), (98, 1), (97, 2)]
    assert b.e.depth(2) == ([(101, 5), (102, 3)], [(99, 6), (98, 1)])
    assert b.e.depth(0) == ([], [])
    assert b.e.level_volume(SELL, 101) == 5 and b.e.level_volume(BUY, 101) == 0
    assert b.e.level_volume(BUY, 97) == 2


def test_orders_iterates_in_priority_order() -> None:
    b = Book()
    b.buy(99, 1)  # 1
    b.buy(100, 1)  # 2
    b.buy(99, 1)  # 3
    b.sell(105, 1)  # 4
    b.sell(104, 1)  # 5
    assert [o.id for o in b.e.orders(BUY)] == [2, 1, 3]
    assert [o.id for o in b.e.orders(SELL)] == [5, 4]


def test_estimate_market_buy() -> None:
    b = Book()
    b.sell(100, 2)
    b.sell(110, 3)
    assert b.e.estimate_market_buy(1) == 100
    assert b.e.estimate_market_buy(2) == 200
    assert b.e.estimate_market_buy(4) == 200 + 220
    assert b.e.estimate_market_buy(5) == 530
    assert b.e.estimate_market_buy(6) is None
    # the estimate is exactly what a market buy with that budget gets
    res = b.market(BUY, 4, member=2, funds=420)
    assert sum(t.volume for t in res.trades) == 4 and res.done[-1].funds_used == 420


def test_state_hash_depends_on_the_book_only() -> None:
    a, c = Book(), Book()
    for bk in (a, c):
        bk.buy(99, 1)
        bk.sell(101, 2)
    assert a.e.state_hash() == c.e.state_hash()
    a.buy(98, 1)
    assert a.e.state_hash() != c.e.state_hash()
    a.e.cancel(3)
    assert a.e.state_hash() == c.e.state_hash()  # same resting orders again
    a.stop(BUY, stop=120, price=120, volume=1)
    assert a.e.state_hash() != c.e.state_hash()  # untriggered stops are part of the state


# --------------------------------------------------------------------------- recovery


def _busy_book() -> Book:
    b = Book(stp="cancel_maker")
    b.sell(101, 5, member=1)
    b.sell(101, 2, member=2)
    b.sell(103, 1, member=3)
    b.buy(99, 4, member=1)
    b.buy(100, 2, member=2)
    b.buy(101, 3, member=4)  # takes 3 from order 1
    b.buy(99, 1, member=3)
    b.stop(SELL, stop=95, price=94, volume=2, member=1)
    b.stop(BUY, stop=110, price=111, volume=1, member=2)
    b.e.cancel(4)
    return b


def test_restore_rebuilds_an_identical_book_without_matching() -> None:
    live = _busy_book().e
    resting = [*live.orders(BUY), *live.orders(SELL), *live.stop_orders()]
    copies = []
    for o in reversed(resting):  # any order: levels are kept sorted by seq
        c = Order(o.id, o.member_id, o.side, o.ord_type, o.price, o.volume, o.tif, o.stop_price)
        c.remaining, c.seq, c.triggered = o.remaining, o.seq, o.triggered
        c.funds_used, c.trades_count = o.funds_used, o.trades_count
        copies.append(c)
    rebuilt = Engine("btcusd", stp="cancel_maker", next_trade_id=live.next_trade_id)
    for c in copies:
        rebuilt.restore(c)
    rebuilt.last_price = live.last_price
    assert rebuilt.state_hash() == live.state_hash()
    assert rebuilt.depth(10) == live.depth(10)
    assert rebuilt.next_seq == max(o.seq for o in resting) + 1
    rebuilt.check_consistency()
    # and the two engines behave the same from here on
    outcomes = []
    for eng in (live, rebuilt):
        res = eng.submit(Order(50, 9, SELL, LIMIT, 90, 10))
        outcomes.append(([(t.id, t.price, t.volume, t.maker.id) for t in res.trades], eng.state_hash()))
    assert outcomes[0] == outcomes[1]
    assert [t[1:] for t in outcomes[0][0]] == [(100, 2, 5), (99, 1, 7)]


def test_restore_refuses_what_cannot_rest() -> None:
    e = Engine("btcusd")
    e.restore(_resting(1, BUY, 100, seq=1))
    with pytest.raises(DuplicateOrder):
        e.restore(_resting(1, BUY, 99, seq=2))
    with pytest.raises(InvalidOrder):
        e.restore(_resting(2, SELL, 100, seq=3))  # would cross the bid at 100
    with pytest.raises(InvalidOrder):
        e.restore(_resting(3, SELL, 101, seq=0))  # no priority
    done = _resting(4, SELL, 101, seq=4)
    done.state = DONE
    with pytest.raises(InvalidOrder):
        e.restore(done)
    mkt = Order(5, 1, SELL, MARKET, 0, 1)
    mkt.seq = 5
    with pytest.raises(InvalidOrder):
        e.restore(mkt)
    e.check_consistency()


def _row(oid: int, side: str, price: int, seq: int, remaining: int = 1, **kw: object) -> tuple[object, ...]:
    """A stored order row in LOAD_COLUMNS order, with fresh string and int objects like a database's."""
    fields: dict[str, object] = dict(
        id=oid, member_id=int("7"), side="".join(side), ord_type="".join(LIMIT), price=int(str(price)), volume=5,
        remaining=remaining, tif="".join(GTC), stop_price=0, funds=0, funds_used=0, trades_count=0, seq=seq,
        triggered=0,
    )  # fmt: skip
    fields.update(kw)
    return tuple(fields[c] for c in LOAD_COLUMNS)


def test_load_rebuilds_the_book_in_bulk_like_restore() -> None:
    live = _busy_book().e
    book = sorted([*live.orders(BUY), *live.orders(SELL)], key=lambda o: o.seq)
    rows = [
        tuple(getattr(o, c) if c != "triggered" else int(o.triggered) for c in LOAD_COLUMNS)
        for o in [*live.stop_orders(), *book]
    ]
    rebuilt = Engine("btcusd", stp="cancel_maker", next_trade_id=live.next_trade_id)
    orders = rebuilt.load(rows)
    assert [o.id for o in orders] == [r[0] for r in rows]
    rebuilt.last_price = live.last_price
    assert rebuilt.state_hash() == live.state_hash()
    assert rebuilt.depth(10) == live.depth(10)
    assert rebuilt.next_seq == book[-1].seq + 1
    rebuilt.check_consistency()
    res = rebuilt.submit(Order(50, 9, SELL, LIMIT, 90, 10))
    assert [(t.price, t.volume, t.maker.id) for t in res.trades] == [(100, 2, 5), (99, 1, 7)]


def test_load_shares_strings_and_ints_and_accepts_rows_out_of_seq_order() -> None:
    e = Engine("btcusd")
    orders = e.load([_row(3, BUY, 1000, seq=9), _row(1, BUY, 1000, seq=4), _row(2, SELL, 1001, seq=6)])
    a, b, c = orders
    assert a.side is BUY and a.tif is GTC and a.ord_type is LIMIT and a.state is WAIT
    if not COMPILED:  # (compiled, an Order holds its ints unboxed)
        assert a.price is b.price and a.member_id is c.member_id
    assert [o.id for o in e.orders(BUY)] == [1, 3]
    assert e.next_seq == 10
    e.check_consistency()



def _coded(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """The rows as a real SQLite reads them back in CODED_COLUMNS (KIND_SQL evaluated by SQLite)."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    try:
        db.execute(f"CREATE TABLE orders ({', '.join(LOAD_COLUMNS)})")
        db.executemany(f"INSERT INTO orders VALUES ({', '.join('?' * len(LOAD_COLUMNS))})", rows)
        return db.execute(f"SELECT {', '.join(CODED_COLUMNS)} FROM orders ORDER BY rowid").fetchall()
    finally:
        db.close()


def test_coded_rows_rebuild_the_same_book_as_plain_rows() -> None:
    live = _busy_book().e
    book = sorted([*live.orders(BUY), *live.orders(SELL)], key=lambda o: o.seq)
    rows = [
        tuple(getattr(o, c) if c != "triggered" else int(o.triggered) for c in LOAD_COLUMNS)
        for o in [*live.stop_orders(), *book]
    ]
    plain = Engine("btcusd", stp="cancel_maker")
    plain.load(rows)
    coded = Engine("btcusd", stp="cancel_maker")
    loader = Loader(coded)
    loader.add_coded(_coded(rows))
    loader.install()
    assert coded.state_hash() == plain.state_hash() and coded.next_seq == plain.next_seq
    assert {o.id: o.kind for o in coded._orders.values()} == {o.id: o.kind for o in plain._orders.values()}
    coded.check_consistency()


def test_a_coded_row_keeps_its_trades_count_up_to_the_limit() -> None:
    e = Engine("btcusd")
    loader = Loader(e)
    loader.add_coded(_coded([_row(1, BUY, 100, seq=1, trades_count=MAX_TRADES, funds_used=3),
                             _row(2, SELL, 101, seq=2, trades_count=0)]))  # fmt: skip
    loader.install()
    assert [(o.trades_count, o.funds_used, o.funds) for o in (e._orders[1], e._orders[2])] == [(MAX_TRADES, 3, 0), (0, 0, 0)]


@pytest.mark.parametrize(
    "bad",
    [_row(2, "bid", 101, seq=2), _row(2, SELL, 101, seq=2, ord_type=MARKET),
     _row(2, SELL, 101, seq=2, ord_type="twap"), _row(2, SELL, 101, seq=2, tif="gtd"),
     _row(2, SELL, 101, seq=2, funds=5), _row(2, SELL, 101, seq=2, funds=None), _row(2, SELL, 101, seq=2, trades_count=-1),
     _row(2, SELL, 101, seq=2, trades_count=MAX_TRADES + 1), _row(2, SELL, 101, seq=2, trades_count=2.5)],
)  # fmt: skip
def test_a_coded_row_of_no_order_kind_refuses_to_load(bad: tuple[object, ...]) -> None:
    """A row read as one KIND_SQL: an unknown text, funds (no resting order has any) or a trade
    count that does not fit refuses the load, as the plain columns' checks would."""
    e = Engine("btcusd")
    loader = Loader(e)
    with pytest.raises(InvalidOrder):
        loader.add_coded(_coded([_row(1, BUY, 100, seq=1), bad]))
    assert len(e) == 0


@pytest.mark.parametrize(
    "rows",
    [
        [_row(1, BUY, 100, seq=1), _row(1, BUY, 99, seq=2)],  # duplicate id
        [_row(1, BUY, 100, seq=1), _row(2, SELL, 100, seq=2)],  # crossed
        [_row(1, BUY, 100, seq=0)],  # no priority
        [_row(1, BUY, 100, seq=2), _row(2, BUY, 100, seq=2)],  # same seq
        [_row(1, BUY, 100, seq=1, remaining=6)],  # more left than its volume
        [_row(1, BUY, 100, seq=1, remaining=0)],
        [_row(1, BUY, 100, seq=1, funds_used=1.0)],
        [_row(1, "bid", 100, seq=1)],
        [_row(1, BUY, 100, seq=1, ord_type=MARKET)],
        [_row(1, BUY, 100, seq=1, tif="gtd")],
        [_row(1, BUY, 100, seq=0, ord_type=STOP_LIMIT, stop_price=0)],
    ],
)
def test_load_refuses_bad_rows_and_leaves_the_engine_empty(rows: list[tuple[object, ...]]) -> None:
    e = Engine("btcusd")
    with pytest.raises(EngineError):
        e.load(rows)
    assert len(e) == 0 and e.depth(10) == ([], []) and e.next_seq == 1
    e.check_consistency()


def test_load_needs_an_empty_engine() -> None:
    e = Engine("btcusd")
    e.load([_row(1, BUY, 100, seq=1)])
    with pytest.raises(EngineError):
        e.load([_row(2, BUY, 99, seq=2)])
    assert len(e) == 1


def test_loader_builds_from_pages_the_book_load_builds_at_once() -> None:
    """Recovery reads the book in pages (node/actors/market.py): the same rows in any split make the
    same book, a seq out of order across pages included, and an unfilled order's remaining is its
    volume's int object."""
    live = _busy_book().e
    book = sorted([*live.orders(BUY), *live.orders(SELL)], key=lambda o: o.seq)
    rows = [
        tuple(getattr(o, c) if c != "triggered" else int(o.triggered) for c in LOAD_COLUMNS)
        for o in [*live.stop_orders(), *book]
    ]
    rows[1], rows[-1] = rows[-1], rows[1]
    whole = Engine("btcusd", stp="cancel_maker")
    whole.load(rows)
    for size in (1, 2, 5, len(rows)):
        paged = Engine("btcusd", stp="cancel_maker")
        loader = Loader(paged)
        for i in range(0, len(rows), size):
            loader.add(rows[i:i + size])
            assert len(paged) == 0  # nothing is installed before the last page
        loader.install()
        assert paged.state_hash() == whole.state_hash() == live.state_hash()
        assert paged.next_seq == whole.next_seq
        paged.check_consistency()
    e = Engine("btcusd")
    (o,) = e.load([_row(1, BUY, 100, seq=1, volume=int("5000"), remaining=int("5000"))])
    if not COMPILED:
        assert o.remaining is o.volume


def test_loader_refuses_a_duplicate_across_pages() -> None:
    e = Engine("btcusd")
    loader = Loader(e)
    loader.add([_row(1, BUY, 100, seq=1)])
    loader.add([_row(1, BUY, 99, seq=2)])
    with pytest.raises(EngineError):
        loader.install()
    assert len(e) == 0


def test_loader_takes_pages_lazily_and_shares_ints_across_them() -> None:
    """Pages given as one-shot iterators over wider rows (as the market actor hands each row's head
    to the loader): the same book as one load, and in the pure build an order shares its level's
    price and its member's int with the orders of earlier pages."""
    from operator import itemgetter

    def row(oid: int, side: str, price: int, seq: int, remaining: int = 1) -> tuple[object, ...]:
        # ints above the interpreter's cached small ones, fresh per row as a database's are
        return _row(oid, side, 100_000 + price, seq, remaining=int(str(remaining)), member_id=int("70000"),
                    volume=int("5000000"))  # fmt: skip

    rows = [row(1, BUY, 0, seq=1, remaining=5_000_000), row(2, SELL, 1, seq=2), row(3, BUY, 0, seq=3),
            row(4, BUY, -1, seq=4), row(5, SELL, 1, seq=5, remaining=3)]  # fmt: skip
    whole = Engine("btcusd")
    whole.load(rows)
    paged = Engine("btcusd")
    loader = Loader(paged)
    head = itemgetter(slice(0, len(CODED_COLUMNS)))
    wide = [(*r, "the caller's", 0) for r in _coded(rows)]
    loader.add_coded(map(head, wide[:2]))
    loader.add_coded(map(head, wide[2:]))
    loader.install()
    assert paged.state_hash() == whole.state_hash() and paged.next_seq == whole.next_seq == 6
    paged.check_consistency()
    o = paged._orders
    if not COMPILED:  # (compiled, an Order holds its ints unboxed)
        assert o[3].price is o[1].price and o[5].price is o[2].price and o[3].member_id is o[1].member_id
        assert o[1].remaining is o[1].volume


def test_loader_packs_each_rows_tail_for_the_caller() -> None:
    """Rows wider than CODED_COLUMNS by three ints (the market actor's lock, birth and intake):
    with ``tails`` the loader keeps them as one int per order, and the book is the same as without."""
    rows = _coded([_row(1, BUY, 100, seq=1), _row(2, SELL, 101, seq=2), _row(3, BUY, 99, seq=3)])
    wide = [(*r, (1 << 70) + oid, int("1700000000000"), (1 << TAIL_BITS) - 1 if oid == 3 else oid)
            for oid, r in enumerate(rows, 1)]  # fmt: skip
    tails: dict[int, int] = {}
    e = Engine("btcusd")
    loader = Loader(e)
    loader.add_coded(wide[:1], tails)
    loader.add_coded(iter(wide[1:]), tails)
    loader.install()
    plain = Engine("btcusd")
    plain.load([_row(1, BUY, 100, seq=1), _row(2, SELL, 101, seq=2), _row(3, BUY, 99, seq=3)])
    assert e.state_hash() == plain.state_hash()
    assert tails == {w[0]: (w[-3] << 2 * TAIL_BITS) | (w[-2] << TAIL_BITS) | w[-1] for w in wide}
    e.check_consistency()


@pytest.mark.parametrize("tail", [(-1, 0, 0), (0, -1, 0), (0, 1 << TAIL_BITS, 0), (0, 0, 1 << TAIL_BITS), (0, None, 0),
                                  (0, 0, 1.0), (0, 0, "7")])  # fmt: skip
def test_a_row_whose_tail_does_not_fit_refuses_to_load(tail: tuple[object, object, object]) -> None:
    rows = [(*r, *t) for r, t in zip(_coded([_row(1, BUY, 100, seq=1), _row(2, SELL, 101, seq=2)]), [(0, 0, 0), tail], strict=True)]
    e = Engine("btcusd")
    loader = Loader(e)
    with pytest.raises(InvalidOrder):
        loader.add_coded(rows, {})
    assert len(e) == 0


def _resting(oid: int, side: str, price: int, seq: int) -> Order:
    o = Order(oid, 1, side, LIMIT, price, 1)
    o.seq = seq
    return o


# --------------------------------------------------------------------------- memory-saving shapes


def test_orders_of_the_same_kind_share_one_kind_and_firing_a_stop_changes_it() -> None:
    a = Order(1, 1, BUY, LIMIT, 100, 1)
    b = Order(2, 2, BUY, LIMIT, 101, 2, tif=GTC)
    assert a.kind is b.kind and (a.side, a.ord_type, a.tif, a.triggered) == (BUY, LIMIT, GTC, False)
    s1 = Order(3, 1, SELL, STOP_LIMIT, 100, 1, tif=IOC, stop_price=99)
    s2 = Order(4, 1, SELL, STOP_LIMIT, 100, 1, tif=IOC, stop_price=98)
    s1.triggered = True
    assert s1.triggered and not s2.triggered and s1.kind is not s2.kind
    assert (s1.side, s1.ord_type, s1.tif) == (SELL, STOP_LIMIT, IOC)
    s2.triggered = True
    assert s1.kind is s2.kind
    odd = Order(5, 1, "bid", LIMIT, 100, 1)  # invalid: a kind of its own, refused on submit
    assert odd.side == "bid" and not odd.kind.plain


def test_a_result_that_only_rested_shares_read_only_empty_lists() -> None:
    b = Book()
    res = b.sell(100, 1)
    assert ids(res.rested) == [1]
    assert res.trades == [] and res.cancelled == [] and res.done == [] and res.triggered == []
    with pytest.raises(TypeError):
        res.trades.append(res.trades)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        res.done += res.rested
    assert b.buy(101, 2, member=2).trades[0].maker.id == 1  # results of operations that trade are their own
    assert b.sell(102, 1).trades == []


def test_a_cancel_unlinks_from_the_head_the_middle_and_the_tail_of_a_level() -> None:
    b = Book()
    for _ in range(5):
        b.sell(100, 1)  # ids 1..5
    for oid in (1, 3, 5):
        b.e.cancel(oid)
        b.e.check_consistency()
    assert [o.id for o in b.e.orders(SELL)] == [2, 4] and b.e.level_volume(SELL, 100) == 2
    b.sell(100, 1)  # id 6: behind 4
    assert [o.id for o in b.e.orders(SELL)] == [2, 4, 6]
    for oid in (2, 4, 6):
        b.e.cancel(oid)
    assert b.e.best_ask() is None and b.e.depth(5) == ([], [])
    b.e.check_consistency()


# --------------------------------------------------------------------------- consistency


def test_check_consistency_passes_after_operations_and_catches_corruption() -> None:
    b = _busy_book()
    b.e.check_consistency()
    o = next(iter(b.e.orders(SELL)))
    o.remaining += 1  # the level total no longer matches
    with pytest.raises(AssertionError):
        b.e.check_consistency()
    o.remaining -= 1
    b.e.check_consistency()
    b.e._orders.pop(o.id)  # the id map lost an order
    with pytest.raises(AssertionError):
        b.e.check_consistency()


def test_same_calls_give_the_same_results() -> None:
    def run() -> tuple[str, list[tuple[int, int, int, int, int]], int]:
        b = _busy_book()
        res = b.market(SELL, 20, member=7)
        return (
            b.e.state_hash(),
            [(t.id, t.price, t.volume, t.maker.id, t.taker.id) for t in res.trades],
            b.e.next_seq,
        )

    assert run() == run()
