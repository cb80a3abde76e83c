"""Reads of one node's exchange: books (from memory when the market runs here, else asked of its
node), a member's orders, trades and accounts, and the node's and the cluster's status. They
change nothing."""

from __future__ import annotations

import time
from typing import Any

from node.account_shards import shard_view
from node.actors.account import order_row_view
from node.actors.messages import QueryBook
from node.exchange.core import ExchangeCore
from node.ownership import cluster_view


class Queries(ExchangeCore):
    async def depth(self, market_id: str, limit: int) -> dict[str, Any]:
        """Aggregated levels (asks and bids best first) and the book's diff sequence number."""
        result: dict[str, Any] = await self.query(self.market(market_id).id, QueryBook("depth", limit=limit))
        return result

    def book_version(self, market_id: str) -> tuple[str, int] | None:
        """The (actor instance, diff sequence number) of a book kept on this node: it changes whenever
        the book does, also when a new actor (a restart, a move back) starts its sequence again. None
        for a market run elsewhere. A reader caching `depth` asks this before redoing it."""
        actor = self.markets.get(market_id)
        return None if actor is None else (actor.book_id, actor.book_seq)

    async def book_orders(self, market_id: str, side: str, limit: int) -> list[dict[str, Any]]:
        """Resting orders of one side in priority order."""
        result: list[dict[str, Any]] = await self.query(self.market(market_id).id, QueryBook("orders", limit=limit, side=side))
        return result

    async def market_status(self, market_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.query(self.market(market_id).id, QueryBook("status"))
        return result

    async def orders_of(self, member_id: int, market: str | None = None, states: tuple[str, ...] = ("wait", "pending"),
                        limit: int = 100, offset: int = 0, ascending: bool = True) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        args: list[Any] = [member_id, *states]
        sql = f"SELECT * FROM orders WHERE member_id = ? AND state IN ({marks})"
        if market is not None:
            sql += " AND market = ?"
            args.append(market)
        sql += f" ORDER BY id {'ASC' if ascending else 'DESC'} LIMIT ? OFFSET ?"
        rows = await self.store.fetch(sql, *args, limit, offset)
        return [order_row_view(r) for r in rows]

    async def count_orders_of(self, member_id: int, market: str | None, states: tuple[str, ...]) -> int:
        """How many orders `orders_of` would page through (for the X-Total header)."""
        marks = ",".join("?" * len(states))
        sql = f"SELECT COUNT(*) FROM orders WHERE member_id = ? AND state IN ({marks})"
        args: list[Any] = [member_id, *states]
        if market is not None:
            sql += " AND market = ?"
            args.append(market)
        return int(await self.store.fetchval(sql, *args) or 0)

    async def trades_of_order(self, order_id: int) -> list[dict[str, Any]]:
        rows = await self.store.fetch("SELECT * FROM trades WHERE ask_id = ? OR bid_id = ? ORDER BY id", order_id, order_id)
        return [dict(r) for r in rows]

    async def cluster_status(self) -> dict[str, Any]:
        """This node's status, the whole cluster as the store tells it (owners, epochs, leases,
        heartbeats, problems), and each of this node's markets' queue lag."""
        out = self.status()
        out["leases"] = await self.leases.all()
        out["cluster"] = await cluster_view(self.store, self.config)
        out["cluster"]["account_shards"] = await shard_view(self.store, self.config)
        if self.link is not None:
            out["bus"] = {"connected": self.link.connected, "published": self.link.published,
                          "consumed": self.link.consumed, "dropped_events": self.link.dropped_events}
            for mid in self.markets:
                out["markets"][mid]["queued"] = await self.link.queue_depth(mid)
        return out

    def status(self, hashes: bool = True) -> dict[str, Any]:
        """This node's actors and markets. `hashes=False` leaves out each book's state hash, a pass
        over every resting order (about a second per million): the heartbeat writes this status
        every tick, and must not stall the node in proportion to its books."""
        actors = [*self.markets.values(), *self.accounts]
        now = time.time()
        return {
            "node": self.node.name,
            "boot": self.leases.boot,
            "uptime": round(now - self.started_at, 1),
            "store": self.store.backend,
            "actors": [
                {"name": a.name, "running": a.running, "mailbox": a.depth, "processed": a.processed,
                 "batches": a.batches, "restarts": a.restarts, "last_error": a.last_error,
                 "recent_crashes": sum(1 for t in a.crashes if now - t < 600), "fenced": a.fenced}
                for a in actors
            ],
            "markets": {
                mid: {"halted": a.halted, "resting": len(a.engine),
                      **({"state_hash": a.engine.state_hash()} if hashes else {}), "book_seq": a.book_seq, "last_price": a.engine.last_price, "epoch": a.epoch,
                      "duplicates_dropped": a.duplicates_dropped, "claims_lost": a.claims_lost}
                for mid, a in self.markets.items()
            },
            "wallets": self.funds.status(),
            "account_shards": None if self.shards is None else self.shards.status(),
        }

    async def deposit_address(self, member_id: int, currency: str) -> str:
        """Where the member deposits `currency` (the wallet's address, or a bank reference code);
        a currency without a wallet has none, and the answer says so instead of inventing one."""
        address: str = (await self.funds.deposit_address(member_id, self.currency(currency)))["address"]
        return address

    async def accounts_of(self, member_id: int) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT currency, balance, locked FROM accounts WHERE member_id = ? ORDER BY currency", member_id
        )
        order = list(self.config.currencies)
        out = [dict(r) for r in rows if r["currency"] in self.config.currencies]
        out.sort(key=lambda r: order.index(r["currency"]))
        return out
