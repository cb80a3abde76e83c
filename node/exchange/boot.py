"""Starting and stopping one node, and handing markets between nodes.

`boot` (called by the composition root, node/bootstrap.py, once the store is open) makes the house
accounts, and starts the account shards it runs (node/account_shards.py: all of them, or in a
cluster those its leases give it), the markets this node's leases give it (`_adopt`; `_drop` when a
lease is lost), its wallets and, in a cluster, the RabbitMQ link. `release_market` / `adopt_market`
move a market without losing or reordering an order (an operator's command arrives through
`_on_control`, as does `shard move`'s, node/account_shards.py); `stop` drains in order.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from node.account_shards import AccountShards
from node.actors.lease import LeaseHeld, Liveness, ProcessLock
from node.actors.market import MarketActor
from node.cluster.rabbit import RabbitLink, RemoteMarket
from node.errors import ExchangeError, InvalidParameter, Unavailable
from node.exchange.queries import Queries
from node.ownership import Ownership, cluster_view
from node.store import ledger, sqlite_path

log = logging.getLogger(__name__)


class Boot(Queries):
    async def boot(self, actors: bool = True) -> None:
        """Make the house accounts and, unless `actors=False` (admin commands beside a running node),
        start this node's account actors, the markets its leases give it, its wallets and, in a
        cluster, the link to the other nodes. On failure the caller stops the exchange."""
        await self.house.ensure(self.store, self.config.currencies, self.config.markets)
        await self._ensure_accounts()
        await self.auth_changes.start()
        if not actors:
            return
        if self.store.backend == "sqlite":
            self._process_lock = ProcessLock(sqlite_path(self.config.database))
            self._process_lock.acquire()
            self.leases.sole_process = True
        else:
            self.leases.liveness = Liveness(self.config.direct_database, self.leases.owner,
                                            self.config.actors.store_timeout_ms / 1000)
            await self.leases.liveness.hold()
        a = self.config.actors
        if self.config.rabbitmq:
            self.link = RabbitLink(self.config.rabbitmq, self.node.name, self.bus, a.ask_timeout,
                                   namespace=await self._cluster_id(), boot=self.leases.boot)
            await self.link.start()
            for mid in self.config.markets:
                self.refs[mid] = RemoteMarket(mid, self.link)
            self.bus.subscribe(self._on_status)
            self.link.on_control = self._on_control
        self.ownership = ownership = Ownership(self.config, self.node, self.store, self.leases, self.markets,
                                               adopt=self._adopt, drop=self._drop,
                                               status=lambda: self.status(hashes=False),
                                               address=f"{self.node.host}:{self.node.port}",
                                               cluster=self.link is not None, handover=self.release_market,
                                               alive=self.alive_nodes)
        placed = await ownership.join()  # the markets placed here (node/placement.py)
        self.node = self.ownership.node  # a node outside cluster.toml: with the store's address
        self.shards = AccountShards(self.config, self.node, self.store, self.leases, self.refs, self.tonces, self.link,
                                    self.metrics.watch, self.bus, alive=self.alive_nodes,
                                    cluster=lambda: ownership.placement)
        for mid in placed:
            try:
                await self.ownership.claim(mid)
            except LeaseHeld as e:
                if self.link is None:
                    raise
                self.ownership.refusals[mid] = e.message
                log.error("%s; this node stands by for it", e.message)
        await self.shards.start()
        await self.ownership.tick()  # the heartbeat at once (and any market free for a standby)
        self.ownership.start()
        await self.funds.start()  # wallet actors of this node's currencies, if any have wallet settings
        log.info("node %s up (boot %s): markets %s on %s", self.node.name, self.leases.boot,
                 ", ".join(self.markets) or "none", self.store.backend)

    async def _adopt(self, mid: str, epoch: int) -> MarketActor:
        """Start a market whose lease this node just took. New orders accepted here go to its
        mailbox from now on, before recovery reads the store: recovery takes every order accepted
        before it (oldest first), and the mailbox's copies of those are dropped as taken."""
        actor = self._new_market_actor(mid, epoch)
        previous = self.refs.get(mid)
        self.refs[mid] = actor
        try:
            await actor.start()
        except BaseException:
            if previous is not None:
                self.refs[mid] = previous
            else:
                self.refs.pop(mid, None)
            raise
        self.markets[mid] = actor
        if self.link is not None:
            await self.link.serve_market(actor)
        return actor

    async def _drop(self, mid: str, why: str) -> None:
        """Stop a market at once (fenced, or the lease is lost): no drain, what is queued is not ours."""
        actor = self.markets.pop(mid, None)
        self.leases.forget(mid)
        if actor is None:
            return
        log.error("market %s: %s; stopped matching it here", mid, why)
        actor.fence(why)
        if self.link is not None:
            self.refs[mid] = RemoteMarket(mid, self.link)
            await self.link.stop_serving(mid)

    def _new_market_actor(self, mid: str, epoch: int) -> MarketActor:
        a = self.config.actors
        assert self.shards is not None
        actor = MarketActor(self.config.markets[mid], self.store, self.bus, self.market_fee_members[mid],
                            epoch=epoch, verify_intake=self.link is not None, sweep_after_ms=a.sweep_after_ms,
                            shard_map=self.shards.map, settle_out=self.shards.settle_out,
                            mailbox_size=a.mailbox_size, max_batch=a.max_batch, ask_timeout=a.ask_timeout)
        self.metrics.watch(actor)
        return actor

    async def _on_control(self, command: dict[str, Any]) -> dict[str, Any]:
        """An operator's command, done now or refused now (never kept for later): the answer goes
        back to the command line that sent it."""
        try:
            cmd = str(command.get("cmd"))
            if cmd == "release_shard":
                shard, to = int(command.get("shard", -1)), command.get("to")
                if self.shards is None:
                    raise Unavailable(f"account shard {shard} is not run by node {self.node.name}")
                return {"ok": True, "message": await self.shards.release(shard, None if to is None else str(to))}
            mid = str(command.get("market"))
            self.market(mid)
            if cmd == "release":
                to = command.get("to")
                return {"ok": True, "message": await self.release_market(mid, None if to is None else str(to))}
            if cmd == "adopt":
                return {"ok": True, "message": await self.adopt_market(mid)}
            return {"ok": False, "message": f"unknown command {cmd!r}"}
        except ExchangeError as e:
            return {"ok": False, "message": e.message}

    async def alive_nodes(self) -> dict[str, dict[str, Any]]:
        """Nodes whose process wrote its heartbeat within two leases, has not stopped, and (on
        PostgreSQL) still holds its liveness lock."""
        view = await cluster_view(self.store, self.config, self.leases.liveness.gone if self.leases.liveness else None)
        return {name: n for name, n in view["nodes"].items() if n["alive"]}

    async def release_market(self, mid: str, to_node: str | None) -> str:
        """Give a market up without losing or reordering an order: new orders go to its queue,
        the consumer stops, the mailbox drains (every taken order is matched and committed), and the
        lease is released, to `to_node` alone if given (which adopts it at its next tick; if it does
        not, the market falls to its standbys as after a crash)."""
        actor = self.markets.get(mid)
        if actor is None or self.link is None or self.ownership is None:
            raise Unavailable(f"market {mid} is not run by node {self.node.name}")
        if to_node is not None:
            if not self.ownership.placement.is_member(to_node):
                raise InvalidParameter(f"node {to_node!r} is not a member of the cluster", "to")
            if to_node == self.node.name:
                return f"market {mid} already runs on {to_node}"
            if to_node not in await self.alive_nodes():
                raise Unavailable(f"node {to_node} is not running: market {mid} stays on {self.node.name}")
        async with self.ownership.lock:
            self.refs[mid] = RemoteMarket(mid, self.link)
            await self.link.stop_serving(mid)
            for acc in self.accounts:  # orders already accepted here reach the old actor first
                await acc.mailbox.join()
            await actor.stop()
            self.markets.pop(mid, None)
            self.ownership.hold_off(mid)
            await self.leases.release(mid, handed_to=to_node)
        log.warning("market %s released by node %s%s", mid, self.node.name, f" to node {to_node}" if to_node else "")
        return f"market {mid} released by {self.node.name}" + (f", handed to {to_node}" if to_node else "")

    async def adopt_market(self, mid: str) -> str:
        """Take a market now if its lease is free (released, expired, handed here, or its holder
        is gone); refuse with the reason otherwise."""
        if self.ownership is None or self.link is None:
            raise Unavailable("adopting a market needs a cluster (exchange.rabbitmq)")
        if mid in self.markets:
            return f"market {mid} already runs on {self.node.name}"
        async with self.ownership.lock:
            await self.ownership.claim(mid)
        return f"market {mid} adopted by {self.node.name}"

    async def stop(self) -> None:
        """Drain the account actors first (they feed the markets), then the markets, then the store;
        leases are released, so the next owner need not wait for them to expire."""
        if self.ownership is not None:
            await self.ownership.stop()
        if self.link is not None:
            for mid in self.markets:
                await self.link.stop_serving(mid)
        if self.shards is not None:
            await self.shards.stop()
        for mid, m in list(self.markets.items()):
            await m.stop()
            try:
                await self.leases.release(mid)
            except Exception:
                log.warning("could not release the lease of %s; it will expire", mid)
        if self.link is not None:
            await self.link.close()
        await self.funds.stop()
        await self.auth_changes.stop()
        if self.leases.liveness is not None:
            await self.leases.liveness.close()
        await self.store.close()
        if self._process_lock is not None:
            self._process_lock.release()

    async def quiesce(self) -> None:
        """Wait until every message sent so far is fully processed (tests, graceful hand-over)."""
        for actor in self.accounts:
            await actor.drained()
        for m in self.markets.values():
            await m.mailbox.join()

    async def cluster_id(self) -> str:
        return await self._cluster_id()

    async def _cluster_id(self) -> str:
        """This exchange's identity, made at first start: it names its queues on a shared broker, so
        two exchanges (or a test and a leftover) can never consume each other's messages."""
        async with self.store.transaction() as tx:
            await tx.execute("INSERT INTO cluster_info (name, value) VALUES ('cluster_id', ?) ON CONFLICT (name) DO NOTHING",
                             secrets.token_hex(6))
            value: str = await tx.fetchval("SELECT value FROM cluster_info WHERE name = 'cluster_id'")
        return value

    async def _ensure_accounts(self) -> None:
        """Every member has an account row per configured currency (a new currency gets rows at start)."""
        async with self.store.transaction() as tx:
            for code in self.config.currencies:
                await ledger.open_missing_accounts(tx, code)
