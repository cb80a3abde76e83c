"""Trading on one node: orders are checked completely at the core boundary (market, member, side,
type, precision, limits) and turned into integers, so nothing invalid reaches an actor; then the
member's account actor locks the funds and accepts them. Cancels, halts and fee changes go to the
market's actor (here or on its node); an admin deposit is one store transaction."""

from __future__ import annotations

import secrets
import time
from typing import Any

from node.actors.messages import (
    CancelAll,
    CancelOrder,
    OrderRequest,
    QueryBook,
    SetFees,
    SetHalted,
    SubmitOrders,
)
from node.clock import now_ms
from node.config import FEE_DECIMALS, Market
from node.errors import (
    CreateOrderFailed,
    InvalidParameter,
    MarketHalted,
    MemberNotFound,
    OrderNotFound,
    Unavailable,
)
from node.exchange.core import ExchangeCore, OrderInput
from node.market import FOK, GTC, IOC, LIMIT, MARKET, POST_ONLY, STOP_LIMIT
from node.market.settlement import DEPOSIT, order_lock
from node.money import parse_units
from node.store import ledger

SIDES = ("buy", "sell")
ORD_TYPES = (LIMIT, MARKET, STOP_LIMIT)
TIFS = (GTC, IOC, FOK, POST_ONLY)
MARKET_BUY_MARGIN = 10  # percent over the book estimate locked for a market buy (Peatio's +10%)
MAX_CLIENT_ID = 64
MEMBER_CACHE_S = 60.0  # a member's "may trade" is read again after this, or at once when it changes


class Trading(ExchangeCore):
    async def prepare(self, member_id: int, o: OrderInput) -> OrderRequest:
        """Check an order completely and turn it into integers; raises with the field named."""
        m = self.market(o.market)
        if o.side not in SIDES:
            raise InvalidParameter("side does not have a valid value", "side")
        if o.ord_type not in ORD_TYPES:
            raise InvalidParameter("ord_type does not have a valid value", "ord_type")
        if o.tif not in TIFS:
            raise InvalidParameter("time_in_force does not have a valid value", "time_in_force")
        volume = parse_units(o.volume, m.volume_precision, "volume")
        if volume < m.min_volume:
            raise InvalidParameter(f"volume is below the market minimum of {m.min_volume} lots", "volume")
        if m.max_volume and volume > m.max_volume:
            raise InvalidParameter("volume is above the market maximum", "volume")
        client_id = o.client_id or None
        if client_id is not None and (len(client_id) > MAX_CLIENT_ID or not client_id.isprintable()):
            raise InvalidParameter(f"client_id must be at most {MAX_CLIENT_ID} printable characters", "client_id")
        ref = self.refs.get(m.id)
        if ref is not None and ref.halted:
            raise MarketHalted(f"market {m.id} is halted, trading is paused")
        price = stop = funds = 0
        if o.ord_type == MARKET:
            if o.price not in (None, ""):
                raise InvalidParameter("price must be empty for a market order", "price")
            if o.tif in (POST_ONLY,):
                raise InvalidParameter("time_in_force post_only is not allowed for a market order", "time_in_force")
            if o.side == "buy":
                est = await self.query(m.id, QueryBook("estimate", volume=volume))
                if est is None:
                    raise CreateOrderFailed("market is not deep enough")
                funds = est + (est * MARKET_BUY_MARGIN + 99) // 100
                return self._request(member_id, m, o, 0, volume, 0, client_id, m.quote.code, m.quote_units(funds), funds)
            currency, lock = order_lock(m, o.side, 0, volume)
            return self._request(member_id, m, o, 0, volume, 0, client_id, currency, lock, 0)
        if o.price in (None, ""):
            raise InvalidParameter("price is missing", "price")
        price = parse_units(o.price, m.price_precision, "price")
        if o.ord_type == STOP_LIMIT:
            if o.stop_price in (None, ""):
                raise InvalidParameter("stop_price is missing", "stop_price")
            stop = parse_units(o.stop_price, m.price_precision, "stop_price")
        elif o.stop_price not in (None, ""):
            raise InvalidParameter("stop_price is only for stop_limit orders", "stop_price")
        if price * volume >= 2**62 // max(m.quote_factor, 1):
            raise InvalidParameter("price × volume is too large", "volume")
        currency, lock = order_lock(m, o.side, price, volume)
        return self._request(member_id, m, o, price, volume, stop, client_id, currency, lock, funds)

    @staticmethod
    def _request(member_id: int, m: Market, o: OrderInput, price: int, volume: int, stop: int, client_id: str | None,
                 currency: str, lock: int, funds: int) -> OrderRequest:
        return OrderRequest(member_id, m.id, o.side, o.ord_type, price, volume, o.tif, stop, client_id, currency, lock, funds)

    async def submit_order(self, member_id: int, o: OrderInput) -> dict[str, Any]:
        return (await self.submit_orders(member_id, [o]))[0]

    async def submit_orders(self, member_id: int, orders: list[OrderInput]) -> list[dict[str, Any]]:
        """All or nothing: either every order is accepted (funds locked) or none is."""
        return await self.place_orders(member_id, await self.prepare_orders(member_id, orders))

    async def prepare_orders(self, member_id: int, orders: list[OrderInput]) -> tuple[OrderRequest, ...]:
        """Every check that needs no balance: the member may trade and each order is well formed."""
        if not orders:
            raise InvalidParameter("orders is missing", "orders")
        await self._check_member(member_id)
        return tuple([await self.prepare(member_id, o) for o in orders])

    async def _check_member(self, member_id: int) -> None:
        """Members are checked on every order; the answer is cached for a minute, and dropped as soon
        as a change of the member's rights is announced (node/auth_changes.py)."""
        hit = self._members.get(member_id)
        now = time.monotonic()
        if hit is None or hit[0] < now:
            gen = self._rights_gen
            row = await self.store.fetchrow("SELECT disabled FROM members WHERE id = ?", member_id)
            # a change announced while reading may not be in what was read: keep it a second only
            ttl = MEMBER_CACHE_S if gen == self._rights_gen else 1.0
            hit = (now + ttl, row is not None and not row["disabled"])
            if row is None:
                raise MemberNotFound(f"member {member_id} does not exist")
            self._members[member_id] = hit
        if not hit[1] or member_id in self.house_members:
            raise CreateOrderFailed("member is not allowed to trade")

    async def place_orders(self, member_id: int, reqs: tuple[OrderRequest, ...],
                           tonce: tuple[str, int] | None = None) -> list[dict[str, Any]]:
        """Lock the funds and accept the orders (all or none), burning the signed request's tonce
        in the same transaction when one is given (TonceReused if it was used before)."""
        if self.shards is None:
            raise Unavailable("this node runs no account actors")
        result: list[dict[str, Any]] = await self.shards.submit(member_id, SubmitOrders(reqs, tonce))
        for r in reqs:
            self.accepted[r.market] = self.accepted.get(r.market, 0) + 1
        return result

    async def cancel_order(self, member_id: int | None, order_id: int) -> dict[str, Any]:
        """Only the market actor knows whether the order still rests: it decides and unlocks."""
        row = await self.store.fetchrow("SELECT market, member_id FROM orders WHERE id = ?", order_id)
        if row is None or (member_id is not None and int(row["member_id"]) != member_id):
            raise OrderNotFound(f"order {order_id} doesn't exist")
        result: dict[str, Any] = await self.ref(row["market"]).ask(CancelOrder(order_id, member_id))
        return result

    async def cancel_all(self, member_id: int | None, side: str | None = None, market: str | None = None) -> list[dict[str, Any]]:
        if side is not None and side not in SIDES:
            raise InvalidParameter("side does not have a valid value", "side")
        if market is not None:
            self.market(market)
        if member_id is None:
            markets = [market] if market else list(self.refs)
        else:
            rows = await self.store.fetch(
                "SELECT DISTINCT market FROM orders WHERE member_id = ? AND state IN ('wait', 'pending')", member_id
            )
            markets = sorted({r["market"] for r in rows if market is None or r["market"] == market})
        ids: list[int] = []
        for mid in markets:
            ids.extend(await self.ref(mid).ask(CancelAll(member_id, side)))
        out = []
        for oid in ids:
            row = await self.order_row(oid)
            if row is not None:
                out.append(row)
        return out

    async def set_halted(self, market: str, halted: bool) -> None:
        await self.ref(self.market(market).id).ask(SetHalted(halted))

    async def set_fees(self, market: str, maker: str, taker: str) -> dict[str, int]:
        """Change a market's maker/taker fee rates (decimal strings, e.g. "0.001") for new trades."""
        m = self.market(market)
        msg = SetFees(parse_units(maker, FEE_DECIMALS, "maker_fee", allow_zero=True),
                      parse_units(taker, FEE_DECIMALS, "taker_fee", allow_zero=True))
        result: dict[str, int] = await self.ref(m.id).ask(msg)
        return result

    async def deposit(self, member_id: int, currency: str, amount: str | int, txid: str | None = None,
                      channel: str = "admin") -> int:
        """Credit a member (an admin deposit, or a confirmed coin deposit): balance and ledger in one tx.

        `txid` makes it idempotent: the same (currency, txid) is credited once only.
        """
        cur = self.config.currencies.get(currency)
        if cur is None:
            raise InvalidParameter(f"currency {currency!r} does not exist", "currency")
        units = amount if isinstance(amount, int) and not isinstance(amount, bool) else parse_units(amount, cur.precision, "amount")
        if units <= 0:
            raise InvalidParameter("amount must be greater than zero", "amount")
        txid = txid or f"{channel}:{secrets.token_hex(12)}"
        ts = now_ms()
        async with self.store.transaction() as tx:
            if await tx.fetchval("SELECT id FROM members WHERE id = ?", member_id) is None:
                raise MemberNotFound(f"member {member_id} does not exist")
            dup = await tx.fetchval("SELECT id FROM deposits WHERE currency = ? AND txid = ?", currency, txid)
            if dup is not None:
                return int(dup)
            did = await tx.fetchval(
                "INSERT INTO deposits (member_id, currency, amount, fee, txid, channel, state, confirmations, created_at, done_at) "
                "VALUES (?, ?, ?, 0, ?, ?, 'accepted', 0, ?, ?) RETURNING id",
                member_id, currency, units, txid, channel, ts, ts,
            )
            await ledger.entry(tx, member_id, currency, units, 0, DEPOSIT, "deposit", int(did), ts,
                               MemberNotFound(f"member {member_id} has no {currency} account"))
        return int(did)
