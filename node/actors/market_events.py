"""A market batch's events, as envelopes (docs/architecture.md, events): one for the market
(`market.<id>`: its trades, book diff and order changes), one per member it touched (`member.<id>`:
that member's orders, trades and balance deltas), and a rare `market.<id>.status` when the halt flag
moved. One message per batch and per member, however many events the batch made."""

from __future__ import annotations

from typing import Any

from node.market import Trade
from node.market.settlement import Effects

Envelope = tuple[str, dict[str, Any]]


def batch_events(mid: str, ts: int, trades: list[Trade], trade_rows: list[tuple[Any, ...]],
                 orders: list[tuple[int, dict[str, Any], bool]], book: dict[str, Any] | None,
                 halted: bool | None, eff: Effects) -> list[Envelope]:
    """`orders` are the batch's touched orders as (member, view, rests in the book now); `book` the
    diff (None when no level moved); `halted` the new halt flag when it changed, else None."""
    out: list[Envelope] = []
    members: dict[int, dict[str, Any]] = {}

    def member(mem: int) -> dict[str, Any]:
        env = members.get(mem)
        if env is None:
            env = members[mem] = {"member_id": mem, "at": ts, "orders": [], "trades": [], "accounts": []}
        return env

    trade_events: list[dict[str, Any]] = []
    for t, row in zip(trades, trade_rows, strict=True):
        ev = {"id": t.id, "market": mid, "price": t.price, "volume": t.volume, "funds": row[4],
              "ask_id": row[5], "bid_id": row[6], "ask_member_id": row[7], "bid_member_id": row[8],
              "taker_side": row[9], "created_at": ts}
        trade_events.append(ev)
        member(row[7])["trades"].append(ev)
        if row[8] != row[7]:
            member(row[8])["trades"].append(ev)
    views: list[dict[str, Any]] = []
    resting: list[int] = []
    for mem, view, rests in orders:
        views.append(view)
        member(mem)["orders"].append(view)
        if rests:
            resting.append(view["id"])
    if trade_events or book is not None or views:
        out.append((f"market.{mid}", {"market": mid, "at": ts, "trades": trade_events, "book": book,
                                      "orders": views, "resting": resting}))
    if halted is not None:
        out.append((f"market.{mid}.status", {"market": mid, "halted": halted, "at": ts}))
    for (mem, currency), d in eff.deltas.items():
        member(mem)["accounts"].append({"currency": currency, "d_balance": d[0], "d_locked": d[1]})
    out.extend((f"member.{mem}", env) for mem, env in members.items())
    return out
