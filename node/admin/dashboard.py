"""The numbers of the admin dashboard: money per currency, members, markets, nodes, and the series
behind its charts. Reads only; everything comes from the store, the in-memory books of this node,
and the status of the other nodes where they answer.

Totals are Σ over account rows (members and house accounts apart), so they always agree with what
`python -m node audit` checks; the hot wallet balance is the wallet actor's last reading.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

from node.account_shards import shard_problems, shard_view
from node.clock import now_ms
from node.fees import rates_from
from node.money import format_units
from node.ownership import cluster_view
from node.wallet.records import HOLDING

if TYPE_CHECKING:
    from node.exchange import Exchange

DAY_MS = 86_400_000
CHART_DAYS = 30
NODE_TIMEOUT = 1.5


async def currencies(ex: Exchange) -> list[dict[str, Any]]:
    house = sorted(ex.house_members)
    marks = ",".join("?" * len(house)) or "NULL"
    held = {r["currency"]: r for r in await ex.store.fetch(
        f"SELECT currency, COALESCE(SUM(balance), 0) AS balance, COALESCE(SUM(locked), 0) AS locked FROM accounts "
        f"WHERE member_id NOT IN ({marks}) GROUP BY currency", *house)}
    fees = {r["currency"]: int(r["s"]) for r in await ex.store.fetch(
        f"SELECT currency, COALESCE(SUM(balance + locked), 0) AS s FROM accounts WHERE member_id IN ({marks}) "
        "GROUP BY currency", *house)}
    deposits = {r["currency"]: r for r in await ex.store.fetch(
        "SELECT currency, COUNT(*) AS n, COALESCE(SUM(amount), 0) AS s FROM deposits WHERE state = 'submitted' "
        "GROUP BY currency")}
    hm = ",".join("?" * len(HOLDING))
    withdraws = {r["currency"]: r for r in await ex.store.fetch(
        f"SELECT currency, COUNT(*) AS n, COALESCE(SUM(amount), 0) AS s FROM withdraws WHERE state IN ({hm}) "
        "GROUP BY currency", *HOLDING)}
    hot = {w["currency"]: w for w in await ex.funds.hot_wallets()}
    out = []
    for code, cur in ex.config.currencies.items():
        h = held.get(code)
        d = deposits.get(code)
        w = withdraws.get(code)
        wallet = hot.get(code)
        out.append({
            "cur": cur, "balance": int(h["balance"]) if h else 0, "locked": int(h["locked"]) if h else 0,
            "fees": fees.get(code, 0),
            "hot": None if wallet is None or wallet["balance"] is None else int(wallet["balance"]),
            "wallet_status": None if wallet is None else wallet["status"],
            "pending_deposits": int(d["n"]) if d else 0, "pending_deposit_amount": int(d["s"]) if d else 0,
            "pending_withdraws": int(w["n"]) if w else 0, "pending_withdraw_amount": int(w["s"]) if w else 0,
        })
    return out


async def members(ex: Exchange) -> dict[str, int]:
    house = sorted(ex.house_members)
    marks = ",".join("?" * len(house)) or "NULL"
    now = now_ms()

    async def n(where: str, *args: Any) -> int:
        return int(await ex.store.fetchval(f"SELECT COUNT(*) FROM members WHERE id NOT IN ({marks}) {where}", *house, *args) or 0)

    return {"total": await n(""), "activated": await n("AND activated = 1"), "disabled": await n("AND disabled = 1"),
            "day": await n("AND created_at >= ?", now - DAY_MS), "week": await n("AND created_at >= ?", now - 7 * DAY_MS)}


async def markets(ex: Exchange) -> list[dict[str, Any]]:
    now = now_ms()
    out = []
    for mid, m in ex.config.markets.items():
        row = await ex.store.fetchrow(
            "SELECT COALESCE(SUM(volume), 0) AS vol, COALESCE(SUM(funds), 0) AS funds, COUNT(*) AS n FROM trades "
            "WHERE market = ? AND created_at >= ?", mid, now - DAY_MS)
        state = await ex.store.fetchrow("SELECT last_price, halted, maker_fee, taker_fee FROM markets_state WHERE market = ?", mid)
        maker, taker = rates_from(state, m)
        info: dict[str, Any] = {
            "market": m, "volume": int(row["vol"]) if row else 0, "funds": int(row["funds"]) if row else 0,
            "trades": int(row["n"]) if row else 0,
            "last_price": int(state["last_price"]) if state is not None and state["last_price"] is not None else None,
            "maker_fee": maker, "taker_fee": taker,
            "halted": bool(state["halted"]) if state is not None else False,
            "bid": None, "ask": None, "bid_volume": 0, "ask_volume": 0, "resting": None, "reachable": True,
        }
        ref = ex.refs.get(mid)
        if ref is not None:
            info["halted"] = bool(ref.halted)
        try:
            depth = await asyncio.wait_for(ex.depth(mid, 50), NODE_TIMEOUT)
            status = await asyncio.wait_for(ex.market_status(mid), NODE_TIMEOUT)
        except Exception:  # a market on a node that does not answer now: the stored numbers still show
            info["reachable"] = False
        else:
            info["bid"], info["ask"] = status.get("best_bid"), status.get("best_ask")
            info["resting"] = status.get("resting")
            info["bid_volume"] = sum(int(v) for _, v in depth["bids"])
            info["ask_volume"] = sum(int(v) for _, v in depth["asks"])
            info["bid_levels"], info["ask_levels"] = len(depth["bids"]), len(depth["asks"])
            info["halted"] = bool(status.get("halted", info["halted"]))
        out.append(info)
    return out


async def nodes(ex: Exchange) -> dict[str, Any]:
    """Every node and market as the store tells it (heartbeats and leases), so this page shows the
    same truth on any node: owners, epochs, lease ages, standbys and the problems `status` names."""
    view = await cluster_view(ex.store, ex.config, ex.leases.liveness.gone if ex.leases.liveness else None)
    here = ex.status()
    rows = []
    for name in [n for n, m in view["members"].items() if m["member"]]:  # the store's members
        n = view["nodes"].get(name)
        status = here if name == ex.node.name else (n or {}).get("status") if n and n["alive"] else None
        rows.append({"name": name, "here": name == ex.node.name, "alive": bool(n and n["alive"]) or name == ex.node.name,
                     "status": status, "boot": (n or {}).get("boot"), "seen_ago_ms": (n or {}).get("seen_ago_ms")})
    problems = view["problems"]
    if ex.config.rabbitmq:  # a cluster: account shards are leased and placed too
        problems = problems + shard_problems(await shard_view(ex.store, ex.config))
    return {"nodes": rows, "markets": view["markets"], "problems": problems}


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


async def series(ex: Exchange, days: int = CHART_DAYS) -> dict[str, Any]:
    """Daily trade volume per market (in the quote currency, so markets can share one chart per quote)
    and daily sign-ups, for the last `days` days (UTC), zeros included."""
    today = now_ms() // DAY_MS
    first = today - days + 1
    labels = [_day(d * DAY_MS) for d in range(first, today + 1)]
    volume: list[dict[str, Any]] = []
    for mid, m in ex.config.markets.items():
        rows = await ex.store.fetch(
            f"SELECT created_at / {DAY_MS} AS d, SUM(funds) AS s FROM trades WHERE market = ? AND created_at >= ? "
            f"GROUP BY created_at / {DAY_MS}", mid, first * DAY_MS)
        by_day = {int(r["d"]): int(r["s"] or 0) for r in rows}
        volume.append({"name": m.name, "unit": m.quote.symbol,  # decimal strings: the chart only draws them
                       "values": [format_units(by_day.get(d, 0), m.quote.precision) for d in range(first, today + 1)]})
    house = sorted(ex.house_members)
    marks = ",".join("?" * len(house)) or "NULL"
    rows = await ex.store.fetch(
        f"SELECT created_at / {DAY_MS} AS d, COUNT(*) AS n FROM members WHERE created_at >= ? AND id NOT IN ({marks}) "
        f"GROUP BY created_at / {DAY_MS}", first * DAY_MS, *house)
    by_day = {int(r["d"]): int(r["n"]) for r in rows}
    return {"labels": labels, "volume": volume,
            "signups": [{"name": "sign-ups", "unit": "", "values": [by_day.get(d, 0) for d in range(first, today + 1)]}]}
