"""This node's account shards (node/actors/shards.py): which it runs, and where requests go.

One account actor writes every shard the node runs, so that a batch of orders is one transaction
whatever shards its members are in (an actor per shard made one per shard). Without a cluster that
is every shard, unleased, for good. In a cluster every shard is leased like a
market (`accounts/<shard>` in `market_leases`) and placed like one (node/placement.py: a primary and
standbys in the store, changed by `shard place|move`), and the shards' lease keeper
(node/actors/lease_keeper.py, the markets' rules) renews the leases held here, adopts the shards this
node may run whose lease is free, and hands over a shard whose placement names another primary.
One difference: what a stopping node released passes to a standby at once, without the half lease a
market waits for its restarting primary, since every order of the shard's members waits for it.

A hand-over (`release`) loses nothing accepted: the shard's actor refuses new requests (503, the
client retries) and commits what it took, and only then is the lease handed to the target, which
takes it with a new epoch; settlements the outbox holds for the shard are applied once by whoever
owns it (their claim), starting with the new owner's first sweep.

An order submission goes to the local actor of the member's shard, or over the bus to the node that
runs it (`ask_shard`); settlements a local market wrote for other shards are told to their owners.
The tick also notes which node holds every other shard's lease (`owner_of`): signed API answers
name it (`X-Shard-Node`), so a client or a balancer can send the member's next requests there and
save the bus hop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from node import placement
from node.actors.account import AccountActor, MarketRef
from node.actors.lease import HANDED_OVER, Leases
from node.actors.lease_keeper import LeaseKeeper, Seat
from node.actors.messages import ApplySettlements, SubmitOrders
from node.actors.shards import ShardMap, lease_name, shard_of_lease
from node.clock import now_ms
from node.config import Config, NodeConf
from node.errors import InvalidParameter, Unavailable
from node.events import EventBus
from node.store import Store
from node.tonces import TonceBook

if TYPE_CHECKING:
    from node.cluster.rabbit import RabbitLink

log = logging.getLogger(__name__)

class AccountShards:
    def __init__(self, config: Config, node: NodeConf, store: Store, leases: Leases,
                 markets: Mapping[str, MarketRef], tonces: TonceBook, link: RabbitLink | None,
                 watch: Callable[[AccountActor], None], bus: EventBus | None = None,
                 alive: Callable[[], Awaitable[Collection[str]]] | None = None,
                 cluster: Callable[[], placement.Cluster] | None = None) -> None:
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
        self.actors: dict[int, AccountActor] = {}  # shard -> the actor writing it here (one for all)
        self.actor: AccountActor | None = None  # in a cluster: the actor of the shards leased here
        self.owners: dict[int, str] = {}  # shards run elsewhere: the node holding the lease at the last tick
        self.alive = alive  # the nodes running now
        self._cluster = cluster  # membership and placement as the markets' tick last read them
        self.placement = placement.Cluster({}, {})  # the store's, as of the last tick
        self.keeper: LeaseKeeper[int] = LeaseKeeper(
            "account shard", node.name, leases, config.actors.lease_ms, _Held(self.actors), name=lease_name,
            key=shard_of_lease, keys=lambda: range(self.map.count), seat=self._seat,
            member=lambda: self.placement.is_member(self.node.name), start=self._run, drop=self._drop,
            handover=self.release if link is not None else None, alive=alive, release_waits=False)
        self.refusals = self.keeper.refusals
        self.lock = self.keeper.lock

    # -- life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.map.leased:
            actor = await self._run(tuple(range(self.map.count)), None)
            self.actors.update(dict.fromkeys(range(self.map.count), actor))
            return
        async with self.lock:
            await self.tick()
        self.keeper.start(self.tick)

    async def stop(self) -> None:
        """Drain and stop the local actors, then give their leases up (the next owner need not wait)."""
        await self.keeper.stop()
        for shard in list(self.actors):
            if self.link is not None:
                await self.link.stop_serving_shard(shard)
        for actor in self.running():
            await actor.stop()
        self.actor = None
        for shard in list(self.actors):
            self.map.epochs.pop(shard, None)
            if self.map.leased:
                try:
                    await self.leases.release(lease_name(shard))
                except Exception:
                    log.warning("could not release the lease of account shard %d; it will expire", shard)
        self.actors.clear()

    async def _run(self, shard: int | tuple[int, ...], epoch: int | None) -> AccountActor:
        """Write a shard whose lease was just taken (the lease keeper's `start`): the running actor
        of the leased shards adopts it, or one is started for it. Or start the actor of every shard
        of a node without a cluster (a tuple: `start` maps each of them to it)."""
        actor = self.actor
        if isinstance(shard, int) and epoch is not None and actor is not None and actor.epochs and not actor.fenced:
            await actor.adopt(shard, epoch)
            self.map.epochs[shard] = epoch
            self.actors[shard] = actor
            if self.link is not None:
                await self.link.serve_shard(shard, actor)
            return actor
        a = self.config.actors
        actor = AccountActor(self.store, self.markets, self.config.currencies, shard, self.tonces, epoch=epoch,
                             shard_count=self.map.count,
                             sweep_after_ms=a.sweep_after_ms, bus=self.bus, mailbox_size=a.mailbox_size, max_batch=a.max_batch,
                             ask_timeout=a.ask_timeout, linger_ms=a.linger_ms)
        for s in actor.shards:
            self.map.epochs[s] = epoch or 0
        self.watch(actor)
        try:
            await actor.start()
        except BaseException:
            for s in actor.shards:
                self.map.epochs.pop(s, None)
            raise
        if isinstance(shard, int):
            if epoch is not None:
                self.actor = actor
            self.actors[shard] = actor
            if self.link is not None:
                await self.link.serve_shard(shard, actor)
        return actor

    def running(self) -> list[AccountActor]:
        """The account actors running here, each once (without a cluster one actor runs every shard)."""
        return list({id(a): a for a in self.actors.values()}.values())

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
        for actor in self.running():
            await actor.drained()

    # -- leases and placement (a cluster only) ------------------------------------------------------
    def _seat(self, shard: int) -> Seat | None:
        p = self.placement.placement.get(lease_name(shard))
        if p is None:
            return None
        return Seat(p.primary, self.placement.standbys_of(lease_name(shard)), p.version)

    async def tick(self) -> None:
        await self.keeper.renew()
        self.placement = self._cluster() if self._cluster is not None else await placement.load(self.store, self.config)
        leases = await self.keeper.read_leases()
        now = now_ms()
        self.owners = {shard: str(r["node"]) for shard, r in leases.items()
                       if r["owner"] and r["owner"] != HANDED_OVER and int(r["expires_at"]) > now}
        await self.keeper.adopt_free(leases)

    async def _drop(self, shard: int, why: str) -> None:
        """Stop a shard at once: no drain, what is queued is not ours any more."""
        actor = self.actors.pop(shard, None)
        self.map.epochs.pop(shard, None)
        if actor is None:
            return
        log.error("account shard %d: %s; stopped here", shard, why)
        actor.lose(shard, why)
        if self.link is not None:
            await self.link.stop_serving_shard(shard)

    async def release(self, shard: int, to_node: str | None) -> str:
        """Give a shard up without losing anything accepted: from now on the markets here settle its
        members through the outbox, its actor refuses new requests (503: retry) and commits every
        one it took, the bus queue is left to the next owner, and only then is the lease released,
        to `to_node` alone if given (which adopts it at its next tick with a new epoch; if it does
        not, the shard falls to its standbys as after a crash)."""
        actor = self.actors.get(shard)
        if actor is None or not self.map.leased:
            raise Unavailable(f"account shard {shard} is not run by node {self.node.name}")
        if to_node is not None:
            if not self.placement.is_member(to_node):
                raise InvalidParameter(f"node {to_node!r} is not a member of the cluster", "to")
            if to_node == self.node.name:
                return f"account shard {shard} already runs on {to_node}"
            if self.alive is not None and to_node not in await self.alive():
                raise Unavailable(f"node {to_node} is not running: account shard {shard} stays on {self.node.name}")
        async with self.lock:
            if self.actors.get(shard) is not actor:
                raise Unavailable(f"account shard {shard} stopped here meanwhile")
            del self.actors[shard]
            self.map.epochs.pop(shard, None)
            await actor.release(shard)  # what it took of the shard is committed first
            if self.link is not None:
                await self.link.stop_serving_shard(shard)
            self.keeper.hold_off(shard)
            await self.leases.release(lease_name(shard), handed_to=to_node)
        log.warning("account shard %d released by node %s%s", shard, self.node.name,
                    f" to node {to_node}" if to_node else "")
        return f"account shard {shard} released by {self.node.name}" + (f", handed to {to_node}" if to_node else "")

    def status(self) -> dict[str, Any]:
        return {"count": self.map.count, "leased": self.map.leased,
                "running": {str(s): {"epoch": a.epochs.get(s), "settled": a.settled} for s, a in sorted(self.actors.items())},
                "refusals": self.keeper.status()["refusals"]}


class _Seat:
    """What the lease keeper reads of a shard run here: fenced once a batch found it taken over."""

    __slots__ = ("fenced",)

    def __init__(self, fenced: bool) -> None:
        self.fenced = fenced


class _Held(Mapping[int, _Seat]):
    """The shards run here, as the lease keeper sees them: one actor writes them all, but each is
    leased, renewed and dropped on its own."""

    def __init__(self, actors: dict[int, AccountActor]) -> None:
        self.actors = actors

    def __getitem__(self, shard: int) -> _Seat:
        actor = self.actors[shard]
        return _Seat(actor.fenced or shard in actor.lost)

    def __iter__(self) -> Iterator[int]:
        return iter(self.actors)

    def __len__(self) -> int:
        return len(self.actors)


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except Exception as e:  # a stopping actor or a bus outage: the owner's sweep finds the rows
        log.debug("settlement notice not delivered (%r); the shard's sweep will apply it", e)


async def shard_view(store: Store, config: Config) -> dict[str, dict[str, Any]]:
    """Every account shard's placement, owner, epoch and settlements not yet applied, from the store
    alone (for `status`)."""
    cluster = await placement.load(store, config)
    now = now_ms()
    out: dict[str, dict[str, Any]] = {}
    count = config.actors.shard_count(store.backend)
    rows = {shard_of_lease(str(r["market"])): r for r in await store.fetch(
        "SELECT * FROM market_leases WHERE market LIKE 'accounts/%'")}
    flight = {int(r["shard"]): int(r["n"]) for r in await store.fetch(
        "SELECT shard, COUNT(*) AS n FROM settlements WHERE applied_at IS NULL GROUP BY shard")}
    for shard in range(count):
        r = rows.get(shard)
        p = cluster.placement.get(lease_name(shard))
        info: dict[str, Any] = {"primary": p.primary if p is not None else None,
                                "standbys": list(cluster.standbys_of(lease_name(shard))),
                                "placed_standbys": p.spelled() if p is not None else None,
                                "placement_version": p.version if p is not None else None,
                                "owner": None, "epoch": None, "expires_in_ms": None,
                                "unapplied": flight.get(shard, 0)}
        if r is not None:
            info["epoch"] = int(r["epoch"])
            if r["owner"] and r["owner"] != HANDED_OVER and int(r["expires_at"]) > now:
                info.update(owner=r["node"], expires_in_ms=int(r["expires_at"]) - now)
        # As for markets: a standby that took the shard by failover keeps it until it is placed again.
        info["off_primary"] = info["owner"] is not None and info["primary"] not in (None, info["owner"])
        out[str(shard)] = info
    return out


def shard_problems(shards: dict[str, dict[str, Any]]) -> list[str]:
    """What `status` says is wrong with the account shards, worded as for markets."""
    out = []
    for k, sh in shards.items():
        if sh["owner"] is None:
            out.append(f"account shard {k} has no running owner")
        elif sh["off_primary"]:
            out.append(f"account shard {k} runs on node {sh['owner']}, off its primary {sh['primary']} "
                       f"(`shard place {k} --primary {sh['primary']}` sends it back, `--primary {sh['owner']}` "
                       "keeps it there)")
    return out
