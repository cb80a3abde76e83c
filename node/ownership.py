"""Which markets this node runs, decided again every tick from the store.

The markets' lease keeper (node/actors/lease_keeper.py, the same rules as the account shards')
renews the leases of the markets this node runs, adopts those it may run whose lease is free (it is
their primary, a standby, or one was handed to it) and, after the tick, hands over each market whose
placement was changed since this node took it and names another primary. Around it each tick
- reads the cluster's membership and placement (node/placement.py): who is a member, each market's
  primary and standbys;
- writes this node's heartbeat (`nodes_seen`), which `status` reads for every node of the cluster.

Nothing here is remembered for later: a command that cannot act now is refused by whoever got it,
and a node that comes up simply looks at the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import orjson

from node import placement
from node.actors.lease import HANDED_OVER, Leases, is_market
from node.actors.lease_keeper import SELF_FENCE, LeaseKeeper, Seat
from node.actors.market import MarketActor
from node.clock import now_ms
from node.config import Config, ConfigError, NodeConf
from node.store import Store

log = logging.getLogger(__name__)

__all__ = ["SELF_FENCE", "Ownership", "cluster_view"]


class Ownership:
    def __init__(self, config: Config, node: NodeConf, store: Store, leases: Leases, markets: dict[str, MarketActor],
                 *, adopt: Callable[[str, int], Awaitable[MarketActor]], drop: Callable[[str, str], Awaitable[None]],
                 status: Callable[[], Mapping[str, Any]], address: str, cluster: bool,
                 handover: Callable[[str, str], Awaitable[str]] | None = None,
                 alive: Callable[[], Awaitable[Collection[str]]] | None = None) -> None:
        self.config = config
        self.node = node
        self.store = store
        self.leases = leases
        self.markets = markets
        self._status = status
        self.address = address
        self.cluster = cluster
        self.placement = placement.Cluster({}, {})  # the store's, as of the last tick
        self.keeper: LeaseKeeper[str] = LeaseKeeper(
            "market", node.name, leases, config.actors.lease_ms, markets, name=lambda mid: mid,
            key=lambda name: name if is_market(name) else None, keys=lambda: config.markets, seat=self._seat,
            member=lambda: self.placement.is_member(self.node.name), start=adopt, drop=drop,
            handover=handover if cluster else None, alive=alive)
        self.lease_s = self.keeper.lease_s
        self.tick_s = self.keeper.tick_s
        self.last_renewed = self.keeper.last_renewed
        self.refusals = self.keeper.refusals  # market → why this node does not run it now
        self.claimed_version = self.keeper.claimed_version
        self.started_at = self.keeper.started_at
        self.lock = self.keeper.lock  # one tick or operator command at a time
        self._task: asyncio.Task[None] | None = None

    async def join(self) -> list[str]:
        """Read membership and placement (seeded from cluster.toml on a first start); the markets
        placed on this node. A node the cluster does not count as a member does not start."""
        self.placement = await placement.load(self.store, self.config)
        if not self.placement.is_member(self.node.name):
            removed = self.node.name in self.placement.nodes
            raise ConfigError(f"node {self.node.name} {'was removed from' if removed else 'is not a member of'} the "
                              f"cluster (members: {', '.join(self.placement.members)}); `python -m node cluster node "
                              f"add {self.node.name}` makes it one")
        if self.node.name not in self.config.nodes:
            self.node = placement.with_address(self.node, self.placement)
            self.address = f"{self.node.host}:{self.node.port}"
        return self.placement.markets_of(self.node.name)

    # -- who may run what ---------------------------------------------------------------------------
    def _seat(self, mid: str) -> Seat | None:
        p = self.placement.placement.get(mid)
        if mid not in self.config.markets or p is None:
            return None
        return Seat(p.primary, self.placement.standbys_of(mid) if self.cluster else (), p.version)

    def eligible(self, mid: str, lease: Mapping[str, Any] | None) -> str | None:
        """'primary', 'standby' or 'handed' if this node may run the market, else None."""
        if mid not in self.config.markets:
            return None
        return self.keeper.eligible(mid, lease)

    async def claim(self, mid: str) -> MarketActor:
        """Take the lease (LeaseHeld if a living holder has it) and start the market here."""
        actor: MarketActor = await self.keeper.claim(mid)
        return actor

    def hold_off(self, mid: str) -> None:
        """This node gave the market up on purpose: it does not adopt it again for two leases."""
        self.keeper.hold_off(mid)

    # -- the loop -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = self.keeper.start(self.tick)

    async def stop(self) -> None:
        await self.keeper.stop()
        try:
            await self.store.execute("UPDATE nodes_seen SET stopped_at = ? WHERE node = ? AND boot = ?",
                                     now_ms(), self.node.name, self.leases.boot)
        except Exception:
            log.warning("could not record this node's stop in the store")

    async def tick(self) -> None:
        await self.keeper.renew()
        self.placement = await placement.load(self.store, self.config)
        await self.keeper.adopt_free(await self.keeper.read_leases())
        await self._heartbeat()
        if self.leases.liveness is not None:
            # A market's new owner ends every session of the process it took the market from, the
            # liveness lock's too, when that process was only paused or cut off: take the lock
            # again, or the others would read this living node as dead (status: DOWN) and take
            # any market it runs at once.
            await self.leases.liveness.hold()

    async def apply_placement(self) -> None:
        """Hand over each market run here whose placement changed since this node took it and names
        another primary. A market this node took by failover stays: only a new placement moves it."""
        await self.keeper.apply_placement()

    async def _heartbeat(self) -> None:
        now = now_ms()
        status = orjson.dumps(dict(self._status(), refusals=self.refusals), default=str).decode()
        n = await self.store.execute(
            "UPDATE nodes_seen SET seen_at = ?, status = ?, address = ? WHERE node = ? AND boot = ?",
            now, status, self.address, self.node.name, self.leases.boot)
        if n == 0:
            await self.store.execute(
                "INSERT INTO nodes_seen (node, boot, address, pid, started_at, seen_at, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
                self.node.name, self.leases.boot, self.address, os.getpid(), self.started_at, now, status)


CRASH_LOOP = 3  # restarts of one actor within ten minutes


async def cluster_view(store: Store, config: Config, gone: Callable[[str], Awaitable[bool]] | None = None) -> dict[str, Any]:
    """Who runs what, from the store alone, so any node (or the command line) tells the same truth
    about every node: the members, each market's placement (primary, standbys), owner, epoch and
    lease age, and what is wrong.
    `gone(owner)` (PostgreSQL's liveness locks) tells at once that a process with a recent
    heartbeat has died."""
    cluster = await placement.load(store, config)
    now = now_ms()
    lease_ms = config.actors.lease_ms
    leases = {str(r["market"]): dict(r) for r in await store.fetch("SELECT * FROM market_leases")}
    seen = await store.fetch("SELECT * FROM nodes_seen WHERE seen_at > ? ORDER BY node, seen_at",
                             now - 24 * 3600 * 1000)
    nodes: dict[str, dict[str, Any]] = {}
    boots: dict[str, list[str]] = {}
    for r in seen:  # the latest boot of each node wins
        status = orjson.loads(r["status"] or "{}")
        alive = r["stopped_at"] is None and now - int(r["seen_at"]) < 2 * lease_ms
        if alive and gone is not None and await gone(f"{r['node']}:{r['boot']}"):
            alive = False
        if alive:
            boots.setdefault(str(r["node"]), []).append(str(r["boot"]))
        nodes[str(r["node"])] = {"node": r["node"], "boot": r["boot"], "address": r["address"], "pid": r["pid"],
                                 "alive": alive, "seen_ago_ms": now - int(r["seen_at"]),
                                 "started_at": r["started_at"], "markets": sorted(status.get("markets", {})),
                                 "status": status}
    problems: list[str] = [f"two processes run as node {name} (boots {', '.join(b)})"
                           for name, b in boots.items() if len(b) > 1]
    markets: dict[str, dict[str, Any]] = {}
    for mid in config.markets:
        lease = leases.get(mid)
        p = cluster.placement.get(mid)
        info: dict[str, Any] = {"primary": cluster.primary_of(mid), "standbys": list(cluster.standbys_of(mid)),
                                "placed_standbys": p.spelled() if p is not None else None,
                                "placement_version": p.version if p is not None else None,
                                "owner": None, "boot": None, "epoch": None, "lease_age_ms": None,
                                "renewed_ago_ms": None, "expires_in_ms": None}
        owner_ok = False
        if lease is not None:
            info["epoch"] = int(lease["epoch"])
            if lease["owner"] and int(lease["expires_at"]) > now:
                boot = str(lease["owner"]).rsplit(":", 1)[-1]
                info.update(owner=lease["node"], boot=boot, lease_age_ms=now - int(lease["acquired_at"]),
                            renewed_ago_ms=now - int(lease["renewed_at"]), expires_in_ms=int(lease["expires_at"]) - now)
                node = nodes.get(str(lease["node"]))
                owner_ok = node is not None and node["alive"] and node["boot"] == boot
                if lease["owner"] == HANDED_OVER:
                    info["owner"] = None
                    info["handed_to"] = lease["node"]
                    owner_ok = False
        if not owner_ok:
            problems.append(f"market {mid} has no running owner" + (
                f" (handed to node {info['handed_to']})" if info.get("handed_to") else ""))
        # A standby that took a market by failover keeps it until it is placed again: say so, or the
        # cluster quietly runs unlike its placement (two busy markets on one node, a standby's room used up).
        info["off_primary"] = owner_ok and info["primary"] is not None and info["owner"] != info["primary"]
        if info["off_primary"]:
            problems.append(f"market {mid} runs on node {info['owner']}, off its primary {info['primary']} "
                            f"(`market place {mid} --primary {info['primary']}` sends it back, "
                            f"`--primary {info['owner']}` keeps it there)")
        for name, node in nodes.items():
            if node["alive"] and mid in node["markets"] and name != info["owner"]:
                problems.append(f"node {name} still runs market {mid}, whose lease node {info['owner']} holds")
        markets[mid] = info
    for name, node in nodes.items():
        if not node["alive"]:
            continue
        for a in node["status"].get("actors", []):
            if int(a.get("recent_crashes", 0)) >= CRASH_LOOP:
                problems.append(f"node {name}: {a['name']} restarted {a['recent_crashes']} times in ten minutes "
                                f"(last error: {a.get('last_error')})")
            if a.get("fenced"):
                problems.append(f"node {name}: {a['name']} is fenced")
    for name in cluster.members:
        if name not in nodes or not nodes[name]["alive"]:
            problems.append(f"node {name} is not running")
    for name, node in nodes.items():
        if node["alive"] and not cluster.is_member(name):
            problems.append(f"node {name} runs but is not a member of the cluster")
    members = {name: {**row, "member": row["removed_at"] is None} for name, row in cluster.nodes.items()}
    return {"markets": markets, "nodes": nodes, "members": members, "problems": problems}
