"""This node's account shards (node/actors/shards.py): which it runs, and where requests go.

Without a cluster the node runs every shard, unleased. In a cluster every shard is leased like a
market (`accounts/<shard>` in `market_leases`), and this object's own tick, beside the markets'
ownership tick, renews the leases it holds and adopts the shards it may run whose lease is free.
The primary of shard k is the k-th node of the configuration (modulo their number); every other
node stands by and waits half a lease longer, so a primary that restarts quickly gets its shards
back. A shard whose lease cannot be renewed for most of it, or whose actor was fenced, stops here.

An order submission goes to the local actor of the member's shard, or over the bus to the node that
runs it (`ask_shard`); settlements a local market wrote for other shards are told to their owners.
The tick also notes which node holds every other shard's lease (`owner_of`): signed API answers
name it (`X-Shard-Node`), so a client or a balancer can send the member's next requests there and
save the bus hop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from node.actors.account import AccountActor, MarketRef
from node.actors.lease import HANDED_OVER, LeaseHeld, Leases
from node.actors.messages import ApplySettlements, SubmitOrders
from node.actors.shards import ShardMap, lease_name, shard_of_lease
from node.clock import now_ms
from node.config import Config, NodeConf
from node.errors import Fenced, Unavailable
from node.events import EventBus
from node.store import Store
from node.tonces import TonceBook

if TYPE_CHECKING:
    from node.cluster.rabbit import RabbitLink

log = logging.getLogger(__name__)

SELF_FENCE = 0.6  # of the lease: unrenewed this long, a shard stops on its own (as a market does)


def primary_of(config: Config, shard: int) -> str:
    """The node that runs a shard when it can: the nodes of the configuration in turn."""
    names = list(config.nodes)
    return names[shard % len(names)]


class AccountShards:
    def __init__(self, config: Config, node: NodeConf, store: Store, leases: Leases,
                 markets: Mapping[str, MarketRef], tonces: TonceBook, link: RabbitLink | None,
                 watch: Callable[[AccountActor], None], bus: EventBus | None = None) -> None:
        self.config = config
        self.node = node
        self.store = store
        self.leases = leases
        self.markets = markets
        self.tonces = tonces
        self.link = link
        self.watch = watch
        self.bus = bus
        self.map = ShardMap(config.actors.shard_count(store.backend), leased=link is not None)
        self.actors: dict[int, AccountActor] = {}
        self.refusals: dict[int, str] = {}
        self.owners: dict[int, str] = {}  # shards run elsewhere: the node holding the lease at the last tick
        self.last_renewed: dict[int, float] = {}
        self.lease_s = config.actors.lease_ms / 1000
        self.tick_s = min(1.0, self.lease_s / 5)
        self.started_at = now_ms()
        self.lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.map.leased:
            for shard in range(self.map.count):
                await self._run(shard, None)
            return
        async with self.lock:
            await self.tick()
        self._task = asyncio.create_task(self._loop(), name="account-shards")

    async def stop(self) -> None:
        """Drain and stop the local actors, then give their leases up (the next owner need not wait)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for shard in list(self.actors):
            if self.link is not None:
                await self.link.stop_serving_shard(shard)
        for shard, actor in list(self.actors.items()):
            await actor.stop()
            self.map.epochs.pop(shard, None)
            if self.map.leased:
                try:
                    await self.leases.release(lease_name(shard))
                except Exception:
                    log.warning("could not release the lease of account shard %d; it will expire", shard)
        self.actors.clear()

    async def _run(self, shard: int, epoch: int | None) -> AccountActor:
        a = self.config.actors
        actor = AccountActor(self.store, self.markets, self.config.currencies, shard, self.tonces, epoch=epoch,
                             sweep_after_ms=a.sweep_after_ms, bus=self.bus, mailbox_size=a.mailbox_size, max_batch=a.max_batch,
                             ask_timeout=a.ask_timeout)
        self.map.epochs[shard] = epoch or 0
        self.watch(actor)
        try:
            await actor.start()
        except BaseException:
            self.map.epochs.pop(shard, None)
            raise
        self.actors[shard] = actor
        if self.link is not None:
            await self.link.serve_shard(shard, actor)
        return actor

    # -- where requests go --------------------------------------------------------------------------
    def owner_of(self, member_id: int) -> str | None:
        """The node that runs the member's shard, as far as this node knows (its last tick): a hint
        for routing, never a decision; None when no node holds the shard's lease."""
        shard = self.map.of(member_id)
        return self.node.name if shard in self.actors else self.owners.get(shard)

    def local(self, member_id: int) -> AccountActor | None:
        return self.actors.get(self.map.of(member_id))

    async def submit(self, member_id: int, msg: SubmitOrders) -> Any:
        """Lock funds and accept the orders where the member's shard runs: here, or on its owner."""
        shard = self.map.of(member_id)
        actor = self.actors.get(shard)
        if actor is not None:
            return await actor.ask(msg)
        if self.link is None:
            raise Unavailable(f"account shard {shard} is not running here")
        return await self.link.ask_shard(shard, msg)

    def settle_out(self, told: dict[int, list[int]]) -> None:
        """After a market's commit: tell each shard's owner which settlement rows to apply. Best
        effort: what is lost here, the owner's sweep finds."""
        for shard, ids in told.items():
            msg = ApplySettlements(shard, tuple(ids))
            actor = self.actors.get(shard)
            if actor is not None:
                if not actor.offer(msg):
                    asyncio.ensure_future(_quietly(actor.put(msg)))
            elif self.link is not None:
                asyncio.ensure_future(_quietly(self.link.tell_shard(shard, msg)))

    async def quiesce(self) -> None:
        for actor in list(self.actors.values()):
            await actor.drained()

    # -- leases (a cluster only) --------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                async with self.lock:
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("account shards tick failed; trying again")

    async def tick(self) -> None:
        await self._renew()
        await self._adopt_free()

    async def _renew(self) -> None:
        for shard, actor in list(self.actors.items()):
            if actor.fenced:
                await self._drop(shard, "fenced: another node holds a newer epoch")
                continue
            try:
                ok = await self.leases.renew(lease_name(shard))
            except Exception as e:
                silent = time.monotonic() - self.last_renewed.get(shard, 0.0)
                if silent > self.lease_s * SELF_FENCE:
                    await self._drop(shard, f"lease not renewed for {silent:.1f} s ({type(e).__name__})")
                continue
            if ok:
                self.last_renewed[shard] = time.monotonic()
            else:
                await self._drop(shard, "lease taken over by another node")

    async def _adopt_free(self) -> None:
        leases: dict[int, Mapping[str, Any]] = {}
        for r in await self.leases.all():
            shard = shard_of_lease(str(r["market"]))
            if shard is not None:
                leases[shard] = r
        now = now_ms()
        self.owners = {shard: str(r["node"]) for shard, r in leases.items()
                       if r["owner"] and r["owner"] != HANDED_OVER and int(r["expires_at"]) > now}
        lease_ms = self.config.actors.lease_ms
        for shard in range(self.map.count):
            if shard in self.actors:
                continue
            lease = leases.get(shard)
            primary = primary_of(self.config, shard) == self.node.name
            if lease is not None and lease["owner"] == HANDED_OVER and lease["node"] != self.node.name:
                continue
            if lease is not None and lease["owner"] and lease["owner"] != self.leases.owner:
                silent = now - int(lease["renewed_at"])
                if int(lease["expires_at"]) > now and silent < 2 * self.tick_s * 1000 + 500:
                    self.refusals[shard] = f"run by node {lease['node']!r}"
                    continue  # a living holder renews every tick: nothing to ask the store
                if not primary and silent < lease_ms // 2:
                    continue  # give a restarting primary its chance first
            if lease is None and not primary and now - self.started_at < lease_ms:
                continue  # never run yet: its primary may be starting too
            try:
                epoch = await self.leases.acquire(lease_name(shard))
            except (LeaseHeld, Fenced) as e:
                self.refusals[shard] = str(e)
                continue
            try:
                await self._run(shard, epoch)
            except BaseException:
                await self.leases.release(lease_name(shard))
                raise
            self.last_renewed[shard] = time.monotonic()
            self.refusals.pop(shard, None)
            log.warning("account shard %d adopted by node %s (epoch %d)", shard, self.node.name, epoch)

    async def _drop(self, shard: int, why: str) -> None:
        """Stop a shard at once: no drain, what is queued is not ours any more."""
        actor = self.actors.pop(shard, None)
        self.map.epochs.pop(shard, None)
        self.leases.forget(lease_name(shard))
        if actor is None:
            return
        log.error("account shard %d: %s; stopped here", shard, why)
        actor.fence(why)
        if self.link is not None:
            await self.link.stop_serving_shard(shard)

    def status(self) -> dict[str, Any]:
        return {"count": self.map.count, "leased": self.map.leased,
                "running": {str(s): {"epoch": a.epoch, "settled": a.settled} for s, a in sorted(self.actors.items())},
                "refusals": {str(s): why for s, why in sorted(self.refusals.items())}}


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except Exception as e:  # a stopping actor or a bus outage: the owner's sweep finds the rows
        log.debug("settlement notice not delivered (%r); the shard's sweep will apply it", e)


async def shard_view(store: Store, config: Config) -> dict[str, dict[str, Any]]:
    """Every account shard's owner, epoch and settlements not yet applied, from the store alone
    (for `status`)."""
    now = now_ms()
    out: dict[str, dict[str, Any]] = {}
    count = config.actors.shard_count(store.backend)
    rows = {shard_of_lease(str(r["market"])): r for r in await store.fetch(
        "SELECT * FROM market_leases WHERE market LIKE 'accounts/%'")}
    flight = {int(r["shard"]): int(r["n"]) for r in await store.fetch(
        "SELECT shard, COUNT(*) AS n FROM settlements WHERE applied_at IS NULL GROUP BY shard")}
    for shard in range(count):
        r = rows.get(shard)
        info: dict[str, Any] = {"primary": primary_of(config, shard), "owner": None, "epoch": None,
                                "expires_in_ms": None, "unapplied": flight.get(shard, 0)}
        if r is not None:
            info["epoch"] = int(r["epoch"])
            if r["owner"] and r["owner"] != HANDED_OVER and int(r["expires_at"]) > now:
                info.update(owner=r["node"], expires_in_ms=int(r["expires_at"]) - now)
        out[str(shard)] = info
    return out
