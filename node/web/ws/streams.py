"""Events to frames: each drain of the market data service becomes, per client, one write."""

from __future__ import annotations

import time
from typing import Any

from node.config import Market
from node.events import Event
from node.marketdata import PERIODS, Item
from node.web.format import funds_str, iso, order_json, price_str, volume_str
from node.web.ws.books import Books
from node.web.ws.client import Client, Entries
from node.web.ws.frames import frame, kline_row, legacy_order, public_trade, ticker_body


class Streams(Books):
    def on_events(self, items: list[Item]) -> None:
        """Called by the market data service after each drain (synchronously: nothing here awaits).
        Each item is a batch's envelope: a market's (trades, book diff, orders) or a member's (its
        orders, trades and balance deltas); see node/events.py."""
        self.stats["drains"] += 1
        subs = self.subs
        markets = self.ex.config.markets
        entries: Entries = []
        touched: set[str] = set()
        traded: set[str] = set()
        legacy = subs.get(("orderbook",))
        for kind, env in items:
            if kind == "market":
                mid = env["market"]
                m = markets.get(mid)
                if m is None:
                    continue
                if env["trades"]:
                    traded.add(mid)
                    touched.add(mid)
                    self._trades(env["trades"], entries)
                if env["book"] is not None:
                    touched.add(mid)
                    self._book(mid, env["book"], env["at"], entries)
                if mid in self.resting:
                    resting = set(env["resting"])
                    for o in env["orders"]:
                        action = self._resting(mid, o, o["id"] in resting)
                        if action is not None and legacy:
                            entries.append((frame({"orderbook": {"action": action, "order": legacy_order(m, o)}}),
                                            legacy, None, 0))
            elif kind == "member":
                self._member(env, entries)
        for mid in touched:
            self._ticker(mid, entries)
            if mid in traded:
                for p in PERIODS:
                    if ("kline", mid, p) in subs:
                        self._kline(mid, p, entries)
        if entries:
            t0 = time.perf_counter_ns()
            self._fanout(entries)
            self.stats["fanout_ns"] += time.perf_counter_ns() - t0
        self._schedule_accounts()

    def _member(self, env: Event, entries: Entries) -> None:
        """A member's part of a batch: `order` frames, Peatio's `trade` frames, balances to send."""
        member = env["member_id"]
        subs = self.subs
        markets = self.ex.config.markets
        s = subs.get(("order", member))
        if s:
            for o in env["orders"]:
                m = markets.get(o["market"])
                if m is not None:
                    entries.append((frame({"order": order_json(m, o)}), s, None, 0))
        s = subs.get(("trade", member))
        if s and env["trades"]:
            orders = {o["id"]: o for o in env["orders"]}
            for t in env["trades"]:
                m = markets.get(t["market"])
                if m is not None:
                    entries.append((frame({"trade": self._legacy_trade(m, t, member, orders)}), s, None, 0))
        if ("account", member) in subs:
            dirty = self._accounts_dirty
            for a in env["accounts"]:
                dirty.add((member, a["currency"]))
            for o in env["orders"]:  # its lock was taken where the order was accepted
                m = markets.get(o["market"])
                if m is not None:
                    dirty.add((member, m.quote.code if o["side"] == "buy" else m.base.code))

    def _trades(self, run: list[Event], entries: Entries) -> None:
        mid = run[0]["market"]
        s = self.subs.get(("trades", mid))
        if s:
            m = self.ex.config.markets[mid]
            entries.append((frame({"trades": {"market": mid, "trades": [public_trade(m, e) for e in run]}}), s, None, 0))

    def _legacy_trade(self, m: Market, ev: Event, member: int, orders: dict[int, Event]) -> dict[str, Any]:
        """Peatio's `trade` frame: side ask/bid/both, and only the member's own order(s) attached."""
        ask_mine = ev["ask_member_id"] == member
        bid_mine = ev["bid_member_id"] == member
        out: dict[str, Any] = {
            "id": ev["id"], "price": price_str(m, ev["price"]), "volume": volume_str(m, ev["volume"]),
            "funds": funds_str(m, ev["funds"]), "market": m.id, "created_at": iso(ev["created_at"]),
            "side": "both" if ask_mine and bid_mine else ("ask" if ask_mine else "bid"),
        }
        for mine, key in ((ask_mine, "ask"), (bid_mine, "bid")):
            o = orders.get(ev[f"{key}_id"]) if mine else None
            if o is not None:
                out[key] = order_json(m, o)
        return out

    def _ticker(self, mid: str, entries: Entries) -> None:
        s = self.subs.get(("ticker", mid))
        if not s:
            return
        t = self.md.ticker_now(mid)
        if t is None:
            return
        sig = (t.buy, t.sell, t.low, t.high, t.last, t.open, t.vol)
        if self.last_ticker.get(mid) == sig:
            return
        self.last_ticker[mid] = sig
        entries.append((frame({"ticker": ticker_body(self.ex.config.markets[mid], t)}), s, None, 0))

    def _kline(self, mid: str, period: int, entries: Entries) -> None:
        s = self.subs.get(("kline", mid, period))
        row = self.md.current_candle(mid, period)
        if not s or row is None or self.last_kline.get((mid, period)) == row:
            return
        self.last_kline[(mid, period)] = row
        m = self.ex.config.markets[mid]
        entries.append((frame({"kline": {"market": mid, "period": period, "k": kline_row(m, row)}}), s, None, 0))

    def _fanout(self, entries: Entries) -> None:
        """Each client gets its frames of this drain in one write; clients with the same frames share
        the joined bytes (with one subscription set, that is one join for everyone)."""
        if len(entries) == 1 and entries[0][2] is None:  # the common case at low rates: one frame for all
            data, subs = entries[0][0], entries[0][1]
            clients = list(subs)  # a send may drop a client, which edits `subs`
            for c in clients:
                c.frames += 1
                c.send(data)
            self.stats["frames"] += len(clients)
            self.stats["writes"] += len(clients)
            return
        touched: list[Client] = []
        for data, subs, market, seq in entries:
            if market is None:
                for c in subs:
                    if not c.out:
                        touched.append(c)
                    c.out.append(data)
            else:
                for c in subs:
                    if c.depth_seq.get(market, 0) >= seq:
                        continue  # its snapshot already has this diff
                    if not c.out:
                        touched.append(c)
                    c.out.append(data)
        joined: dict[tuple[int, ...], bytes] = {}
        frames = 0
        for c in touched:
            out = c.out
            c.out = []
            if len(out) == 1:
                data = out[0]
            else:
                key = tuple(map(id, out))
                got = joined.get(key)
                if got is None:
                    got = joined[key] = b"".join(out)
                data = got
            frames += len(out)
            c.frames += len(out)
            c.send(data)
        self.stats["frames"] += frames
        self.stats["writes"] += len(touched)

