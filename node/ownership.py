"""Which markets this node runs, decided again every tick from the store.

Each tick the node
- renews the leases of the markets it runs; one it can no longer renew is dropped at once if the
  lease was taken, and on its own if the store has been unreachable for most of the lease (it
  stops matching before anyone else may start);
- reads the cluster's membership and placement (node/placement.py): who is a member, each market's
  primary and standbys;
- adopts the markets it may run (it is their primary, a standby, or one was handed to it) whose
  lease is free: released, expired, or held by a process that is gone. A standby waits half a
  lease longer than the primary, so a primary that restarts quickly finds its markets;
- writes its heartbeat (`nodes_seen`), which `status` reads for every node of the cluster;
- after the tick, hands over (the ordinary `move`) each market it runs whose placement was changed
  since it took it and names another node as primary: to the primary if it runs, else to the
  first running standby.

Nothing here is remembered for later: a command that cannot act now is refused by whoever got it,
and a node that comes up simply looks at the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import orjson

from node import placement
from node.actors.lease import HANDED_OVER, LeaseHeld, Leases
from node.actors.market import MarketActor
from node.clock import now_ms
from node.config import Config, ConfigError, NodeConf
from node.errors import ExchangeError, Fenced
from node.store import Store

log = logging.getLogger(__name__)

SELF_FENCE = 0.6  # of the lease: unrenewed this long, a market stops matching on its own


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
        self._adopt = adopt
        self._drop = drop
        self._status = status
        self.address = address
        self.cluster = cluster
        self.lease_s = config.actors.lease_ms / 1000
        self.tick_s = min(1.0, self.lease_s / 5)
        self.last_renewed: dict[str, float] = {}
        self.refusals: dict[str, str] = {}  # market → why this node does not run it now
        self.started_at = now_ms()
        self._task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()  # one tick or operator command at a time
        self._hold_off: dict[str, float] = {}  # released here on purpose: not adopted again soon
        self._handover = handover  # release a market to a node (Exchange.release_market)
        self._alive = alive  # the nodes running now
        self.placement = placement.Cluster({}, {})  # the store's, as of the last tick
        self.claimed_version: dict[str, int] = {}  # market → its placement's version when this node took it
        self._placement_note: dict[str, str] = {}  # market → why a placement change is not applied (logged once)

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
    def eligible(self, mid: str, lease: Mapping[str, Any] | None) -> str | None:
        """'primary', 'standby' or 'handed' if this node may run the market, else None."""
        if mid not in self.config.markets or not self.placement.is_member(self.node.name):
            return None
        if lease is not None and lease["owner"] == HANDED_OVER:
            return "handed" if lease["node"] == self.node.name else None
        if self.placement.primary_of(mid) == self.node.name:
            return "primary"
        if self.cluster and self.node.name in self.placement.standbys_of(mid):
            return "standby"
        return None

    async def claim(self, mid: str) -> MarketActor:
        """Take the lease (LeaseHeld if a living holder has it) and start the market here."""
        epoch = await self.leases.acquire(mid)
        try:
            actor = await self._adopt(mid, epoch)
        except BaseException:
            await self.leases.release(mid)
            raise
        self.last_renewed[mid] = time.monotonic()
        self.refusals.pop(mid, None)
        p = self.placement.placement.get(mid)
        self.claimed_version[mid] = p.version if p is not None else 0
        self._placement_note.pop(mid, None)
        return actor

    def hold_off(self, mid: str) -> None:
        """This node gave the market up on purpose: it does not adopt it again for two leases."""
        self._hold_off[mid] = time.monotonic() + 2 * self.lease_s
        self.last_renewed.pop(mid, None)

    # -- the loop -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ownership")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.store.execute("UPDATE nodes_seen SET stopped_at = ? WHERE node = ? AND boot = ?",
                                     now_ms(), self.node.name, self.leases.boot)
        except Exception:
            log.warning("could not record this node's stop in the store")

    async def _run(self) -> None:
        while True:
            try:
                async with self.lock:
                    await self.tick()
                await self.apply_placement()  # outside the lock: a hand-over takes it
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ownership tick failed; trying again")
            await asyncio.sleep(self.tick_s)

    async def tick(self) -> None:
        await self._renew()
        self.placement = await placement.load(self.store, self.config)
        await self._adopt_free()
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
        if not self.cluster or self._handover is None:
            return
        due = []
        for mid in list(self.markets):
            p = self.placement.placement.get(mid)
            if p is None or p.primary == self.node.name or p.version <= self.claimed_version.get(mid, p.version):
                continue
            due.append((mid, [p.primary, *self.placement.standbys_of(mid)]))
        if not due:
            return
        alive = set(await self._alive()) if self._alive is not None else set()
        for mid, targets in due:
            to = next((n for n in targets if n in alive and n != self.node.name), None)
            if to is None:
                note = f"placed on {targets[0]}, which is not running: it stays on {self.node.name} for now"
            else:
                try:
                    log.warning("market %s: %s", mid, await self._handover(mid, to))
                    self.claimed_version.pop(mid, None)
                    self._placement_note.pop(mid, None)
                    continue
                except ExchangeError as e:
                    note = f"could not hand it over to {to}: {e.message}"
            if self._placement_note.get(mid) != note:
                log.warning("market %s %s", mid, note)
                self._placement_note[mid] = note

    async def _renew(self) -> None:
        for mid in list(self.markets):
            actor = self.markets[mid]
            if actor.fenced:
                await self._drop(mid, "fenced: another node holds a newer epoch")
                continue
            try:
                ok = await self.leases.renew(mid)
            except Exception as e:
                silent = time.monotonic() - self.last_renewed.get(mid, 0.0)
                if silent > self.lease_s * SELF_FENCE:
                    await self._drop(mid, f"lease not renewed for {silent:.1f} s ({type(e).__name__}): stopping "
                                          "before it can pass to another node")
                continue
            if ok:
                self.last_renewed[mid] = time.monotonic()
            else:
                await self._drop(mid, "lease taken over by another node")

    async def _adopt_free(self) -> None:
        leases = {str(r["market"]): r for r in await self.leases.all()}
        now = now_ms()
        for mid in self.config.markets:
            if mid in self.markets or self._hold_off.get(mid, 0.0) > time.monotonic():
                continue
            lease = leases.get(mid)
            role = self.eligible(mid, lease)
            if role is None:
                continue
            if lease is not None and lease["owner"] != HANDED_OVER:
                silent = now - int(lease["renewed_at"])
                if role == "standby" and silent < self.config.actors.lease_ms // 2:
                    continue  # give a restarting primary its chance first
            if lease is None and role == "standby" and now - self.started_at < self.config.actors.lease_ms:
                continue  # never run yet: its primary may be starting too
                held = lease["owner"] and lease["owner"] != self.leases.owner and int(lease["expires_at"]) > now
                if held and silent < 2 * self.tick_s * 1000:
                    self.refusals[mid] = f"run by node {lease['node']!r}"
                    continue  # a living holder renews every tick: nothing to ask the store
            try:
                await self.claim(mid)
                log.warning("market %s adopted by node %s as %s", mid, self.node.name, role)
            except LeaseHeld as e:
                self.refusals[mid] = e.message
            except Fenced as e:
                self.refusals[mid] = str(e)

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
