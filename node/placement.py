"""Cluster membership and the placement of markets and account shards, kept in the store and
changed by commands.

cluster.toml describes the nodes and, for each market, its node and standbys; that is only the seed.
At a node's first start (nodes: when the store has none; a market: when it has no placement yet)
it is written to `cluster_nodes` and `market_placement`, and from then on the store is the truth:
`cluster node add|remove`, `market place|move` and `shard place|move` change it (each with an audit
entry), and every running node reads it at each tick of its lease keepers (node/ownership.py,
node/account_shards.py), so nobody edits every machine's cluster.toml to add a node or move a market.

An account shard is placed like a market, in the same table under its lease's name (`accounts/<k>`).
In a cluster its placement is seeded from the rule shards followed before they had one (shard k's
primary is the k-th node of cluster.toml, modulo their number; every other member stands by), so a
cluster that existed before keeps its owners.

A placement's `version` grows with every `place` and `move`. A node running a market whose placement
was changed after it took the market hands it over (the ordinary `move`, so nothing is lost or
reordered); a node that took a market by failover keeps it until an operator places it again, so a
flapping primary does not drag its markets back and forth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from node.actors.lease import is_shard
from node.actors.shards import lease_name
from node.clock import now_ms
from node.config import Config, NodeConf
from node.errors import InvalidParameter, Unavailable
from node.security import audit
from node.store import Store, Tx

EVERY_OTHER = "*"  # standbys: every other member of the cluster

NODE_ADD = "cluster.node.add"
NODE_REMOVE = "cluster.node.remove"
SEED = "cluster.seed"
PLACE = "market.place"
MOVE = "market.move"
SHARD_PLACE = "shard.place"
SHARD_MOVE = "shard.move"


@dataclass(frozen=True)
class Placement:
    market: str
    primary: str
    standbys: tuple[str, ...] | None  # None: every other member
    version: int

    def spelled(self) -> str:
        return EVERY_OTHER if self.standbys is None else ",".join(self.standbys)


@dataclass(frozen=True)
class Cluster:
    """The store's membership and placement at one read."""

    nodes: dict[str, dict[str, Any]]  # every node ever added: address, added_at, removed_at
    placement: dict[str, Placement]

    @property
    def members(self) -> list[str]:
        return [n for n, row in self.nodes.items() if row["removed_at"] is None]

    def is_member(self, name: str) -> bool:
        row = self.nodes.get(name)
        return row is not None and row["removed_at"] is None

    def primary_of(self, market: str) -> str | None:
        p = self.placement.get(market)
        return p.primary if p is not None else None

    def standbys_of(self, market: str) -> tuple[str, ...]:
        """The member nodes that may adopt the market when its lease is free, in order."""
        p = self.placement.get(market)
        if p is None:
            return ()
        names = self.members if p.standbys is None else p.standbys
        return tuple(n for n in names if n != p.primary and self.is_member(n))

    def markets_of(self, node: str) -> list[str]:
        """The markets placed on `node` as their primary."""
        return [mid for mid, p in self.placement.items() if p.primary == node and not is_shard(mid)]


def node_conf(config: Config, name: str | None) -> NodeConf:
    """The node to run as: cluster.toml's, or one known only to the store (added by `cluster node
    add` after that file was copied to this machine), whose address the store gives at start."""
    if name is None or name in config.nodes:
        return config.node(name)
    return NodeConf(name=name, host="127.0.0.1", port=8080, markets=())


def with_address(node: NodeConf, cluster: Cluster) -> NodeConf:
    """A node not in cluster.toml serves at the address the store has for it (`--host`/`--port`
    still override)."""
    address = str(cluster.nodes.get(node.name, {}).get("address") or "")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return node
    return replace(node, host=host.strip("[]"), port=int(port))


def parse_standbys(text: str) -> tuple[str, ...] | None:
    text = text.strip()
    if text == EVERY_OTHER:
        return None
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _address(host: str, port: int) -> str:
    return f"{host}:{port}"


# Membership and placement in one statement: every node reads both at every tick of its lease keepers.
_READ = ("SELECT 'n' AS kind, name, address, added_at, removed_at, NULL AS primary_node, NULL AS standbys, "
         "NULL AS version FROM cluster_nodes UNION ALL "
         "SELECT 'p', market, NULL, NULL, NULL, primary_node, standbys, version FROM market_placement "
         "ORDER BY kind, added_at, name")


async def read(store: Store) -> Cluster:
    nodes: dict[str, dict[str, Any]] = {}
    placement: dict[str, Placement] = {}
    for r in await store.fetch(_READ):
        name = str(r["name"])
        if r["kind"] == "n":  # in the order they were added
            nodes[name] = {"address": r["address"], "added_at": r["added_at"], "removed_at": r["removed_at"]}
        else:
            placement[name] = Placement(name, str(r["primary_node"]), parse_standbys(r["standbys"]), int(r["version"]))
    return Cluster(nodes, placement)


async def load(store: Store, config: Config) -> Cluster:
    """The store's membership and placement, seeded from cluster.toml where the store has none."""
    cluster = await read(store)
    if (not cluster.nodes or any(mid not in cluster.placement for mid in config.markets)
            or any(lease_name(k) not in cluster.placement for k in shards_placed(store, config))):
        await seed(store, config)
        cluster = await read(store)
    return cluster


def shards_placed(store: Store, config: Config) -> range:
    """The account shards that have a placement: in a cluster every one (without a cluster a node
    runs them all, unleased)."""
    return range(config.actors.shard_count(store.backend) if config.rabbitmq else 0)


def seed_shard_primary(config: Config, shard: int) -> str:
    """The rule shards followed before they were placed: the nodes of cluster.toml in turn."""
    names = list(config.nodes)
    return names[shard % len(names)]


def _seed_standbys(config: Config, mid: str, primary: str) -> str:
    """`*` when cluster.toml names no standbys of its own (every other node stands by)."""
    named = config.markets[mid].standbys
    others = tuple(n for n in config.nodes if n != primary)
    if set(named) == set(others):
        return EVERY_OTHER
    return ",".join(named)


async def seed(store: Store, config: Config) -> None:
    """Write cluster.toml's nodes if the store has none, and the placement of every market that has
    none. Nodes starting together write the same rows: the first wins, the others change nothing."""
    now = now_ms()
    async with store.transaction() as tx:
        added: list[str] = []
        if not await tx.fetchval("SELECT COUNT(*) FROM cluster_nodes"):
            for n in config.nodes.values():
                if await tx.execute("INSERT INTO cluster_nodes (name, address, added_at) VALUES (?, ?, ?) "
                                    "ON CONFLICT (name) DO NOTHING", n.name, _address(n.host, n.port), now):
                    added.append(n.name)
        placed: dict[str, str] = {}
        for mid in config.markets:
            owner = config.owner_of(mid)
            if owner is None:
                continue
            if await tx.execute("INSERT INTO market_placement (market, primary_node, standbys, version, placed_at) "
                                "VALUES (?, ?, ?, 1, ?) ON CONFLICT (market) DO NOTHING",
                                mid, owner.name, _seed_standbys(config, mid, owner.name), now):
                placed[mid] = owner.name
        shards: dict[str, str] = {}
        for k in shards_placed(store, config):
            primary = seed_shard_primary(config, k)
            if await tx.execute("INSERT INTO market_placement (market, primary_node, standbys, version, placed_at) "
                                "VALUES (?, ?, ?, 1, ?) ON CONFLICT (market) DO NOTHING",
                                lease_name(k), primary, EVERY_OTHER, now):
                shards[str(k)] = primary
        if added or placed or shards:
            await audit.record_in(tx, SEED, None, {"nodes": added, "markets": placed, "shards": shards,
                                                   "source": config.source}, target="cluster")


async def add_node(store: Store, name: str, address: str = "") -> str:
    """Make `name` a member (again, if it was removed); its markets come from `market place`."""
    if not name or not name.replace("-", "_").isidentifier():
        raise InvalidParameter(f"bad node name {name!r} (letters, digits, _ and -)", "name")
    now = now_ms()
    async with store.transaction() as tx:
        row = await tx.fetchrow("SELECT * FROM cluster_nodes WHERE name = ?" + store.for_update, name)
        if row is not None and row["removed_at"] is None:
            if address and address != row["address"]:
                await tx.execute("UPDATE cluster_nodes SET address = ? WHERE name = ?", address, name)
                await audit.record_in(tx, NODE_ADD, None, {"address": address, "was": row["address"]}, target=name)
                return f"node {name} is a member already; its address is now {address}"
            return f"node {name} is a member already"
        if row is None:
            await tx.execute("INSERT INTO cluster_nodes (name, address, added_at) VALUES (?, ?, ?)", name, address, now)
        else:
            await tx.execute("UPDATE cluster_nodes SET removed_at = NULL, added_at = ?, address = ? WHERE name = ?",
                             now, address or row["address"], name)
        await audit.record_in(tx, NODE_ADD, None, {"address": address}, target=name)
    return f"node {name} added to the cluster" + (f" at {address}" if address else "")


async def remove_node(store: Store, name: str) -> str:
    """Take `name` out of the cluster: refused while a market is placed on it or it runs one. It is
    taken off the standby lists that name it, in the same transaction. Account shards do not hold
    it back: those it runs pass to their standbys when it stops (`shard place` moves them first)."""
    now = now_ms()
    async with store.transaction() as tx:
        row = await tx.fetchrow("SELECT * FROM cluster_nodes WHERE name = ?" + store.for_update, name)
        if row is None or row["removed_at"] is not None:
            raise InvalidParameter(f"node {name} is not a member of the cluster", "name")
        placed = [str(r["market"]) for r in await tx.fetch(
            "SELECT market FROM market_placement WHERE primary_node = ? AND market NOT LIKE 'accounts/%' "
            "ORDER BY market", name)]
        if placed:
            raise Unavailable(f"node {name} is the primary of {', '.join(placed)}: place "
                              f"{'them' if len(placed) > 1 else 'it'} elsewhere first (market place MARKET --primary NODE)")
        running = [str(r["market"]) for r in await tx.fetch(
            "SELECT market FROM market_leases WHERE node = ? AND owner <> '' AND expires_at > ? "
            "AND market NOT LIKE 'accounts/%' ORDER BY market", name, now)]
        if running:
            raise Unavailable(f"node {name} still holds {', '.join(running)}: move "
                              f"{'them' if len(running) > 1 else 'it'} first (market move MARKET --to NODE)")
        if await tx.fetchval("SELECT COUNT(*) FROM cluster_nodes WHERE removed_at IS NULL") <= 1:
            raise Unavailable(f"node {name} is the cluster's last node")
        unlisted = []
        for r in await tx.fetch("SELECT market, standbys FROM market_placement"):
            names = parse_standbys(r["standbys"])
            if names is not None and name in names:
                await tx.execute("UPDATE market_placement SET standbys = ? WHERE market = ?",
                                 ",".join(n for n in names if n != name), r["market"])
                unlisted.append(str(r["market"]))
        await tx.execute("UPDATE cluster_nodes SET removed_at = ? WHERE name = ?", now, name)
        await audit.record_in(tx, NODE_REMOVE, None, {"standby_of": unlisted}, target=name)
    return f"node {name} removed from the cluster" + (
        f" (and from the standbys of {', '.join(unlisted)})" if unlisted else "")


async def place(store: Store, config: Config, market: str, primary: str,
                standbys: Iterable[str] | None, *, action: str = PLACE) -> Placement:
    """Place a market on `primary` (standbys None: every other member). Running nodes apply it at
    their next tick: the market's owner, if another node, hands it over to the primary."""
    if market not in config.markets:
        raise InvalidParameter(f"unknown market {market!r}", "market")
    await load(store, config)  # a store that was never started is seeded first
    names = None if standbys is None else tuple(dict.fromkeys(standbys))
    async with store.transaction() as tx:
        return await place_in(tx, store, market, primary, names, action=action)


async def place_in(tx: Tx, store: Store, market: str, primary: str, standbys: tuple[str, ...] | None, *,
                   action: str = PLACE, detail: Mapping[str, Any] | None = None) -> Placement:
    members = {str(r["name"]) for r in await tx.fetch("SELECT name FROM cluster_nodes WHERE removed_at IS NULL")}
    for n in (primary, *(standbys or ())):
        if n not in members:
            raise InvalidParameter(f"node {n!r} is not a member of the cluster (have: {', '.join(sorted(members))}; "
                                   f"cluster node add {n})", "node")
    if standbys is not None:
        standbys = tuple(n for n in standbys if n != primary)
    row = await tx.fetchrow("SELECT * FROM market_placement WHERE market = ?" + store.for_update, market)
    spelled = EVERY_OTHER if standbys is None else ",".join(standbys)
    if row is None:
        version = 1
        await tx.execute("INSERT INTO market_placement (market, primary_node, standbys, version, placed_at) "
                         "VALUES (?, ?, ?, 1, ?)", market, primary, spelled, now_ms())
        was: dict[str, Any] = {}
    else:
        version = int(row["version"]) + 1
        await tx.execute("UPDATE market_placement SET primary_node = ?, standbys = ?, version = ?, placed_at = ? "
                         "WHERE market = ?", primary, spelled, version, now_ms(), market)
        was = {"was_primary": row["primary_node"], "was_standbys": row["standbys"]}
    await audit.record_in(tx, action, None, {"primary": primary, "standbys": spelled, "version": version, **was,
                                             **(detail or {})}, target=market)
    return Placement(market, primary, standbys, version)


async def place_shard(store: Store, config: Config, shard: int, primary: str,
                      standbys: Iterable[str] | None) -> Placement:
    """Place an account shard on `primary` (standbys None: every other member). Its owner, if
    another node, hands it over to the primary at its next tick."""
    if shard not in shards_placed(store, config):
        count = len(shards_placed(store, config))
        raise InvalidParameter(f"unknown account shard {shard} (this cluster has shards 0 to {count - 1})"
                               if count else "account shards are placed only in a cluster", "shard")
    await load(store, config)
    names = None if standbys is None else tuple(dict.fromkeys(standbys))
    async with store.transaction() as tx:
        return await place_in(tx, store, lease_name(shard), primary, names, action=SHARD_PLACE)


async def record_move(store: Store, config: Config, market: str, to: str, *, action: str = MOVE) -> Placement:
    """`market move` (or `shard move`, `market` being the shard's lease name) made `to` the owner:
    it becomes the primary too (the old primary takes its place among the standbys), so a restart
    does not send it back."""
    cluster = await load(store, config)
    old = cluster.placement.get(market)
    standbys: tuple[str, ...] | None = None
    if old is not None and old.standbys is not None:
        standbys = tuple(old.primary if n == to else n for n in old.standbys)
        if old.primary != to and old.primary not in standbys and to not in old.standbys:
            standbys = (*standbys, old.primary)
    async with store.transaction() as tx:
        return await place_in(tx, store, market, to, standbys, action=action)
