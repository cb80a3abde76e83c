"""Fault injection, Jepsen style: a bounded order load through several nodes while a nemesis breaks
things, then a checker that works from the store and from every acknowledged reply.

Three nodes (a: btcusd, b: ltcbtc, c: dogebtc) share one PostgreSQL and one RabbitMQ, each through
proxies of its own that the test controls; every node stands by for every market. Short leases keep
the suite quick. After each nemesis the faults are healed, the load stops, every accepted order
must reach its book, and the checker asks:

- every acknowledged order exists, and none is left `pending`;
- no order traded more than its volume, or other than its volume minus what remains, and no two
  trades join the same pair of orders (a pair matched twice);
- finished orders are not back in a book (each market's live book holds exactly the store's
  resting orders);
- locks equal what open orders need, every currency is conserved, and the books audit passes;
- one member's orders on one market reached the book in the order they were acknowledged;
- every settlement (a trade's or an unlock's balance change for a member whose account shard runs
  on another node) was applied, by its member's shard, and exactly once (the audit counts each
  trade's and order's ledger rows);
- each account shard's rows were written by one owner at a time: every ledger row of the order path
  carries the shard epoch it was written under, and no older epoch follows a newer one.

Each nemesis writes a line (rounds, orders, violations) to test-output/faults-report.txt.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.apikeys import ApiKeys
from node.audit import audit
from node.bootstrap import start_exchange
from node.config import load_config
from node.secrets_box import SecretBox, load_server_key
from node.store import open_store
from tests.apiclient import ApiClient, ApiError
from tests.faultproxy import FaultProxy
from tests.nodeproc import ROOT, NodeProcess, _env, free_ports

pytestmark = pytest.mark.slow

RABBITMQ = ("127.0.0.1", 5672)
POSTGRES = ("127.0.0.1", 5432)
LEASE_MS = 3_000
FAST = {"lease_ms": LEASE_MS, "store_timeout_ms": 1_200, "sweep_after_ms": 1_000}
PLACEMENT = {"a": ["btcusd"], "b": ["ltcbtc"], "c": ["dogebtc"]}
# market → (prices to pick from, volume): a few ticks around one price, so that orders cross often
ORDERS = {
    "btcusd": (["99", "99.5", "100", "100.5", "101"], "0.01"),
    "ltcbtc": (["0.0099", "0.01", "0.0101"], "1"),
    "dogebtc": (["0.00000099", "0.000001", "0.00000101"], "100"),
}
REPORT = ROOT / "test-output" / "faults-report.txt"


def config_text(database: str, rabbitmq: str | None, ports: dict[str, int], actors: dict[str, int],
                placement: dict[str, list[str]] = PLACEMENT) -> str:
    text = (ROOT / "cluster.toml").read_text()
    text = text.replace('database = "sqlite:///var/exchange.db"',
                        f'database = "{database}"' + (f'\nrabbitmq = "{rabbitmq}"' if rabbitmq else ""))
    head, _, _ = text.partition("[nodes.main]")
    _, _, tail = text.partition("[actors]")
    nodes = "".join(f'[nodes.{n}]\nhost = "127.0.0.1"\nport = {port}\nmarkets = [{", ".join(repr(m) for m in placement[n])}]\n\n'
                    .replace("'", '"') for n, port in ports.items())
    settings = "".join(f"{k} = {v}\n" for k, v in actors.items())
    return head + nodes + "[actors]\n" + settings + tail



@dataclass
class Ack:
    member: int
    market: str
    order_id: int
    n: int  # the member's acknowledgement counter: its orders were sent one after the other


@dataclass
class History:
    acks: list[Ack] = field(default_factory=list)
    refused: int = 0
    unknown: int = 0  # timeouts and cut connections: maybe accepted, never acknowledged
    counter: int = 0

    def ack(self, member: int, market: str, order_id: int) -> None:
        self.counter += 1
        self.acks.append(Ack(member, market, order_id, self.counter))


class Cluster:
    """Nodes as real processes, each reaching PostgreSQL and RabbitMQ through proxies of its own."""

    def __init__(self, tmp: Path, pg_url: str, actors: dict[str, int]) -> None:
        self.tmp = tmp
        self.pg_url = pg_url
        self.actors = actors
        self.nodes: dict[str, NodeProcess] = {}
        self.pg: dict[str, FaultProxy] = {}
        self.mq: dict[str, FaultProxy] = {}
        self.keys: list[tuple[str, str]] = []
        self.config = tmp / "cluster.toml"
        self.extra: list[NodeProcess] = []

    async def start(self, members: int) -> None:
        ports = dict(zip(PLACEMENT, free_ports(len(PLACEMENT)), strict=True))
        self.config.write_text(config_text(self.pg_url, f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/", ports,
                                           self.actors))
        self.keys = await make_members(self.config, self.tmp / "secret.key", members)
        db = self.pg_url.rsplit("/", 1)[1]
        for name, port in ports.items():
            self.pg[name] = await FaultProxy(*POSTGRES).start()
            self.mq[name] = await FaultProxy(*RABBITMQ).start()
            env = {"EXCHANGE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{self.pg[name].port}/{db}",
                   "EXCHANGE_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{self.mq[name].port}/"}
            self.nodes[name] = NodeProcess(self.config, port, self.tmp / "secret.key", self.tmp / f"{name}.log",
                                           node=name, env=env)
        # together: a node that came up a lease before the others would adopt their markets and
        # shards too (they are free and never run), and the load would then never cross nodes
        await asyncio.gather(*(node.start() for node in self.nodes.values()))
        await self.wait_owned()

    async def stop(self) -> None:
        for node in [*self.nodes.values(), *self.extra]:
            node.resume()
            node.kill()
        for proxy in [*self.pg.values(), *self.mq.values()]:
            await proxy.close()

    def alive(self) -> list[NodeProcess]:
        return [n for n in self.nodes.values() if n.alive]

    async def view(self) -> dict[str, Any]:
        """The cluster as `status` shows it (a killed process counts as down at once)."""
        from node.account_shards import shard_view
        from node.actors.lease import Liveness
        from node.ownership import cluster_view

        cfg = load_config(self.config)
        store = await open_store(self.pg_url, migrate=False)
        probe = Liveness(self.pg_url, f"test:{id(self)}", 5.0)
        try:
            view = await cluster_view(store, cfg, probe.gone)
            view["account_shards"] = await shard_view(store, cfg)
            return view
        finally:
            await probe.close()
            await store.close()

    async def wait_owner(self, market: str, among: tuple[str, ...], timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owner = await self.owner(market)
            if owner in among:
                return owner
            await asyncio.sleep(0.2)
        raise AssertionError(f"market {market} did not pass to any of {among} within {timeout} s")

    async def owner(self, market: str) -> str | None:
        owner: str | None = (await self.view())["markets"][market]["owner"]
        return owner

    async def wait_owned(self, timeout: float = 30) -> dict[str, Any]:
        """Until every market and every account shard has a live owner."""
        deadline = time.monotonic() + timeout
        while True:
            view = await self.view()
            alive = {name for name, n in view["nodes"].items() if n["alive"]}
            orphans = [k for k, sh in view["account_shards"].items() if sh["owner"] not in alive]
            if not [p for p in view["problems"] if "has no running owner" in p] and not orphans:
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"markets or account shards {orphans} without an owner: {view['problems']}")
            await asyncio.sleep(0.2)

    async def shard_owner(self, shard: int) -> str | None:
        owner: str | None = (await self.view())["account_shards"][str(shard)]["owner"]
        return owner

    async def wait_shard_moved(self, shard: int, away_from: str, timeout: float = 20) -> str:
        for _ in range(int(timeout / 0.2)):
            owner = await self.shard_owner(shard)
            if owner not in (None, away_from):
                return owner
            await asyncio.sleep(0.2)
        raise AssertionError(f"account shard {shard} did not pass from {away_from} to another node in {timeout} s")

    async def cli(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        """Run a command line (without blocking this loop, which runs the proxies): code, out, err."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node", "--config", str(self.config), *args, cwd=ROOT, env=_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return int(proc.returncode or 0), out.decode(), err.decode()


async def make_members(config: Path, key_file: Path, n: int) -> list[tuple[str, str]]:
    """Funded members with API keys, made in one process (the CLI would start one per call)."""
    ex = await start_exchange(load_config(config), actors=False)
    try:
        keys = ApiKeys(ex.store, SecretBox(load_server_key(str(key_file)), "api-secret"))
        out = []
        for i in range(n):
            member = await ex.create_member(f"t{i}@example.com")
            for cur, amount in (("btc", "1000"), ("usd", "10000000"), ("ltc", "100000"), ("doge", "1000000000")):
                await ex.deposit(member, cur, amount, txid=f"fund-{i}-{cur}")
            out.append(await keys.create(member, "faults", "all", "", None, now=int(time.time() * 1000)))
        return out
    finally:
        await ex.stop()


async def trade(cluster: Cluster, history: History, until: Callable[[], bool], markets: list[str]) -> None:
    """Each member sends orders one after the other (and now and then cancels one), to its own
    node first and to another when that one does not answer."""

    async def member(i: int, access: str, secret: str) -> None:
        rnd = random.Random(i)
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            client = ApiClient("", access, secret, session=session)
            mine: list[int] = []
            names = list(cluster.nodes)
            prefer = names[i % len(names)]
            while not until():
                nodes = [cluster.nodes[prefer]] + [n for k, n in cluster.nodes.items() if k != prefer]
                node = next((n for n in nodes if n.alive), None)
                if node is None:
                    await asyncio.sleep(0.1)
                    continue
                client.base = node.base
                try:
                    if mine and rnd.random() < 0.15:
                        await client.post("/order/delete", id=str(mine.pop(rnd.randrange(len(mine)))))
                        continue
                    market = rnd.choice(markets)
                    prices, volume = ORDERS[market]
                    view = await client.post("/orders", market=market, side=rnd.choice(["buy", "sell"]),
                                             volume=volume, price=rnd.choice(prices))
                    history.ack(i, market, int(view["id"]))
                    mine.append(int(view["id"]))
                except ApiError as e:
                    if e.status >= 500:
                        history.unknown += 1
                        prefer = rnd.choice(names)
                        await asyncio.sleep(0.05)
                    else:
                        history.refused += 1
                except (aiohttp.ClientError, TimeoutError, OSError):
                    history.unknown += 1
                    prefer = rnd.choice(names)
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(member(i, a, s) for i, (a, s) in enumerate(cluster.keys)))


async def run_with_nemesis(cluster: Cluster, nemesis: Callable[[], Awaitable[None]], *, before: float = 2.0,
                           after: float = 3.0, markets: list[str] | None = None) -> History:
    history = History()
    done = False
    load = asyncio.create_task(trade(cluster, history, lambda: done, markets or list(ORDERS)))
    await asyncio.sleep(before)
    try:
        await nemesis()
        await asyncio.sleep(after)
    finally:
        done = True
        await load
    return history


async def check(store_url: str, config: Path, history: History,
                books: Callable[[], Awaitable[dict[str, int]]] | None, wait_s: float = 40.0) -> list[str]:
    """Every violation found, as a sentence naming the rows (empty: the run was correct). `books`
    reads the live books; it is called once every accepted order has been taken in and the last
    batch had time to commit (a book read earlier can be a batch ahead of the store)."""
    cfg = load_config(config)
    store = await open_store(store_url, migrate=False)
    bad: list[str] = []
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not int(await store.fetchval("SELECT COUNT(*) FROM orders WHERE state = 'pending'")) and not int(
                    await store.fetchval("SELECT COUNT(*) FROM settlements WHERE applied_at IS NULL")):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        live = await books() if books is not None else None
        async with store.snapshot() as tx:
            orders = {int(r["id"]): dict(r) for r in await tx.fetch("SELECT * FROM orders")}
            trades = [dict(r) for r in await tx.fetch("SELECT * FROM trades")]
        for a in history.acks:
            if a.order_id not in orders:
                bad.append(f"acknowledged order {a.order_id} is not in the store")
        executed: dict[int, int] = {}
        pairs: dict[tuple[int, int], int] = {}
        for t in trades:
            pairs[(int(t["ask_id"]), int(t["bid_id"]))] = pairs.get((int(t["ask_id"]), int(t["bid_id"])), 0) + 1
            for oid in (int(t["ask_id"]), int(t["bid_id"])):
                executed[oid] = executed.get(oid, 0) + int(t["volume"])
        bad += [f"orders {k} were matched together {n} times" for k, n in pairs.items() if n > 1]
        for oid, o in orders.items():
            done = executed.get(oid, 0)
            if done > int(o["volume"]):
                bad.append(f"order {oid} traded {done}, more than its volume {o['volume']}")
            if done != int(o["volume"]) - int(o["remaining"]):
                bad.append(f"order {oid}: trades say {done} executed, the order says {int(o['volume']) - int(o['remaining'])}")
            if o["state"] == "pending":
                bad.append(f"order {oid} was accepted but never reached its market")
            if o["state"] == "done" and int(o["remaining"]) != 0 and o["ord_type"] == "limit" and o["tif"] == "gtc":
                bad.append(f"order {oid} is done with {o['remaining']} remaining")
        if live is not None:
            for market, resting in live.items():
                stored = sum(1 for o in orders.values() if o["market"] == market and o["state"] == "wait")
                if resting != stored:
                    bad.append(f"market {market}: the live book holds {resting} orders, the store {stored}")
        # Settlements: all applied once quiet (a double application shows in the audit's trade and
        # release checks, which count ledger rows), each by the shard its member belongs to.
        shards = cfg.actors.shard_count(store.backend)
        for r in await store.fetch("SELECT id, shard, member_id, applied_at FROM settlements "
                                   "WHERE applied_at IS NULL OR shard <> member_id % ?", shards):
            bad.append(f"settlement {r['id']} (shard {r['shard']}, member {r['member_id']}) "
                       + ("was never applied" if r["applied_at"] is None else "is in another member's shard"))
        if cfg.rabbitmq:  # leased shards: each ledger row of the order path carries its writer's epoch
            bad += await one_writer_per_shard(store, shards)
        report = await audit(store, cfg.markets)
        bad += [f"audit: {p}" for p in report.problems]
        bad += [f"audit: {line}" for line in report.lines() if "MISMATCH" in line]
        last: dict[tuple[int, str], tuple[int, int]] = {}
        for a in sorted(history.acks, key=lambda a: a.n):
            o = orders.get(a.order_id)
            if o is None:
                continue
            intake = int(o["intake"])
            if intake == 0:  # cancelled while still pending: it never reached the book
                continue
            prev = last.get((a.member, a.market))
            if prev is not None and intake <= prev[1]:
                bad.append(f"member {a.member}: order {a.order_id} reached {a.market}'s book (intake {intake}) before "
                           f"order {prev[0]} acknowledged earlier (intake {prev[1]})")
            last[(a.member, a.market)] = (a.order_id, intake)
    finally:
        await store.close()
    return bad


async def one_writer_per_shard(store: Any, shards: int) -> list[str]:
    """Each account shard's rows were written by one owner at a time: every ledger row of the order
    path (locks, trades, unlocks) was written under the shard's epoch, and never under an older
    epoch after a newer one (a deposed owner's late write would show as exactly that). A market's
    own fee account belongs to the market, not to a shard: its rows carry the market's epochs, under
    the same rule (keyed by the account, negative)."""
    bad: list[str] = []
    last: dict[int, tuple[int, int]] = {}
    houses = {int(r["id"]) for r in await store.fetch("SELECT id FROM members WHERE email LIKE 'house+%'")}
    for r in await store.fetch("SELECT id, member_id, epoch FROM ledger WHERE ref_type IN ('order', 'trade') ORDER BY id"):
        member = int(r["member_id"])
        lid, shard, epoch = int(r["id"]), -member if member in houses else member % shards, int(r["epoch"])
        if epoch == 0:
            bad.append(f"ledger row {lid} (account shard {shard}) was written outside the shard's lease")
        prev = last.get(shard)
        if prev is not None and epoch < prev[1]:
            bad.append(f"ledger row {lid}: account shard {shard} written under epoch {epoch} after row {prev[0]} "
                       f"under epoch {prev[1]}")
        if prev is None or epoch >= prev[1]:
            last[shard] = (lid, epoch)
    return bad


async def live_books(cluster: Cluster) -> dict[str, int]:
    """Each market's resting orders as its owner's memory holds them."""
    out: dict[str, int] = {}
    view = await cluster.view()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        for market, m in view["markets"].items():
            node = cluster.nodes.get(m["owner"] or "")
            assert node is not None, f"market {market} has no owner"
            async with s.get(node.base + "/ops/status") as r:
                st = await r.json()
            out[market] = int(st["markets"][market]["resting"])
    return out


def report(name: str, rounds: int, history: History, violations: list[str], extra: str = "") -> None:
    REPORT.parent.mkdir(exist_ok=True)
    line = (f"{name}: {rounds} round(s), {len(history.acks)} orders acknowledged, {history.unknown} unknown, "
            f"{history.refused} refused, {len(violations)} violations{extra}")
    with REPORT.open("a") as f:
        f.write(line + "\n")
        for v in violations[:20]:
            f.write(f"  {v}\n")
    print(line)


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, pg_url, FAST)
    try:
        await c.start(members=6)
        yield c
    finally:
        await c.stop()


async def finish(cluster: Cluster, name: str, rounds: int, history: History, extra: str = "") -> None:
    await cluster.wait_owned()
    violations = await check(cluster.pg_url, cluster.config, history, lambda: live_books(cluster))
    report(name, rounds, history, violations, extra)
    assert len(history.acks) > 20, "the load did not run"
    assert not violations, "\n".join(violations[:30])


# -- the nemeses ----------------------------------------------------------------------------------

async def test_an_owner_paused_past_its_lease_is_fenced(cluster: Cluster) -> None:
    """SIGSTOP the owner of btcusd for twice its lease: a standby takes over; when the old owner
    wakes, its writes are refused by the epoch and it stops matching on its own."""
    async def nemesis() -> None:
        a = cluster.nodes["a"]
        a.pause()
        await asyncio.sleep(2 * LEASE_MS / 1000)
        await cluster.wait_owner("btcusd", ("b", "c"))
        a.resume()

    history = await run_with_nemesis(cluster, nemesis)
    await finish(cluster, "pause the owner (SIGSTOP) past its lease", 1, history)
    assert "fenced" in (cluster.tmp / "a.log").read_text() or await cluster.owner("btcusd") != "a"


async def test_an_owner_cut_from_postgresql_cannot_commit_late(cluster: Cluster) -> None:
    """Black-hole the owner's PostgreSQL connections (they stay open; what they carry is delivered
    late) for twice the lease: its stuck batch must not commit after the new owner's."""
    async def nemesis() -> None:
        cluster.pg["a"].blackhole()
        await asyncio.sleep(2 * LEASE_MS / 1000)
        await cluster.wait_owner("btcusd", ("b", "c"))
        cluster.pg["a"].heal()

    history = await run_with_nemesis(cluster, nemesis)
    await finish(cluster, "cut the owner from PostgreSQL past its lease", 1, history)


async def test_an_owner_cut_from_rabbitmq_loses_and_doubles_nothing(cluster: Cluster) -> None:
    """Black-hole the owner's broker connection past the lease, then reset it: orders sent to it
    meanwhile, and orders its own API accepted, are each matched once, in order."""
    async def nemesis() -> None:
        cluster.mq["a"].blackhole()
        await asyncio.sleep(2 * LEASE_MS / 1000 + 1)
        cluster.mq["a"].reset()
        await asyncio.sleep(0.5)
        cluster.mq["a"].heal()

    history = await run_with_nemesis(cluster, nemesis)
    await finish(cluster, "cut the owner from RabbitMQ past its lease", 1, history)


async def test_a_shard_owner_killed_or_paused_mid_load(cluster: Cluster) -> None:
    """kill -9 the owner of an account shard under load, then SIGSTOP another shard's owner past
    its lease: each shard passes to a standby (which applies what the outbox holds for it), the
    paused owner's late batches are refused by the shard's epoch, and no settlement is lost or
    applied twice."""
    async def nemesis() -> None:
        owner = await cluster.shard_owner(1)
        assert owner is not None
        node = cluster.nodes[owner]
        node.kill()
        await cluster.wait_shard_moved(1, owner)
        await node.start()
        await asyncio.sleep(1)
        owner = await cluster.shard_owner(2)
        assert owner is not None
        node = cluster.nodes[owner]
        node.pause()
        await asyncio.sleep(2 * LEASE_MS / 1000)
        try:
            await cluster.wait_shard_moved(2, owner)
        finally:
            node.resume()

    history = await run_with_nemesis(cluster, nemesis)
    await finish(cluster, "kill -9 a shard owner, SIGSTOP another past its lease", 2, history)


async def test_duplicated_settlement_messages_apply_nothing_twice(cluster: Cluster) -> None:
    """Every settlement notice sent again, several times, to its shard's queue while trading goes
    on: each settlement row is applied once."""
    import aio_pika

    from node.actors.messages import ApplySettlements
    from node.cluster.codec import encode_message

    async def nemesis() -> None:
        store = await open_store(cluster.pg_url, migrate=False)
        broker = await aio_pika.connect(f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/")
        sent = 0
        try:
            ns = await store.fetchval("SELECT value FROM cluster_info WHERE name = 'cluster_id'")
            channel = await broker.channel()
            for _ in range(6):
                rows = await store.fetch("SELECT id, shard FROM settlements ORDER BY id DESC LIMIT 400")
                by_shard: dict[int, list[int]] = {}
                for r in rows:
                    by_shard.setdefault(int(r["shard"]), []).append(int(r["id"]))
                for shard, ids in by_shard.items():
                    for _copy in range(3):
                        await channel.default_exchange.publish(
                            aio_pika.Message(encode_message(ApplySettlements(shard, tuple(ids)))),
                            routing_key=f"exchange.{ns}.accounts.{shard}")
                        sent += 1
                await asyncio.sleep(0.5)
        finally:
            await broker.close()
            await store.close()
        assert sent > 0, "no settlement to send again: the load made no trade across nodes"

    history = await run_with_nemesis(cluster, nemesis)
    await finish(cluster, "duplicated settlement notices", 1, history)


async def test_moving_and_placing_an_account_shard_under_load(cluster: Cluster) -> None:
    """`shard move` under load: the owner drains the shard's actor and hands its lease over, the
    target takes it with a new epoch and becomes its primary; then `shard place` sends it on to the
    third node within a tick. Nothing acknowledged is lost, every settlement is applied once by one
    writer per epoch (the checks of `finish`), and each command left its audit entry."""
    moved: dict[str, Any] = {}

    async def nemesis() -> None:
        before = (await cluster.view())["account_shards"]["1"]
        owner = before["owner"]
        assert owner is not None
        to = next(n for n in cluster.nodes if n != owner)
        code, out, err = await cluster.cli("shard", "move", "1", "--to", to)
        assert code == 0, out + err
        assert f"account shard 1 now runs on node {to}" in out, out
        after = (await cluster.view())["account_shards"]["1"]
        assert (after["owner"], after["primary"]) == (to, to) and after["epoch"] > before["epoch"], after
        await asyncio.sleep(1)
        third = next(n for n in cluster.nodes if n not in (owner, to))
        code, out, err = await cluster.cli("shard", "place", "1", "--primary", third, "--standbys", owner)
        assert code == 0, out + err
        assert f"account shard 1 now runs on node {third}" in out, out
        moved.update(first=owner, then=to, last=third)

    history = await run_with_nemesis(cluster, nemesis)
    await finish(cluster, "shard move and shard place under load", 2, history)
    code, out, _ = await cluster.cli("status")
    assert (f"account shard 1: owner {moved['last']}" in out
            and f"placed: primary {moved['last']}, standbys {moved['first']}, version 3" in out), out
    store = await open_store(cluster.pg_url, migrate=False)
    try:
        rows = await store.fetch("SELECT action, target, detail FROM audit_log WHERE action LIKE 'shard.%' ORDER BY seq")
    finally:
        await store.close()
    assert [(r["action"], r["target"]) for r in rows] == [("shard.move", "accounts/1"), ("shard.place", "accounts/1")]
    assert f'"primary":"{moved["then"]}"' in rows[0]["detail"] and f'"was_primary":"{moved["then"]}"' in rows[1]["detail"]


@pytest.fixture
async def default_cluster(tmp_path: Path, pg_url: str) -> AsyncIterator[Cluster]:
    """The same cluster with the default lease and timeouts (what an operator gets)."""
    c = Cluster(tmp_path, pg_url, {})
    try:
        await c.start(members=6)
        yield c
    finally:
        await c.stop()


async def test_killing_owners_and_others_fails_over_quickly(default_cluster: Cluster) -> None:
    """kill -9 the owner of btcusd, with the default settings: a standby holds the market within
    15 s (measured and reported); then kill -9 a node that owns nothing; both come back as standbys."""
    cluster = default_cluster
    failover: list[float] = []

    async def nemesis() -> None:
        for _ in range(2):
            owner = await cluster.owner("btcusd")
            assert owner is not None
            node = cluster.nodes[owner]
            t0 = time.monotonic()
            node.kill()
            deadline = t0 + 20
            while time.monotonic() < deadline:
                now_owner = await cluster.owner("btcusd")
                if now_owner not in (None, owner):
                    break
                await asyncio.sleep(0.1)
            failover.append(time.monotonic() - t0)
            await node.start()
        owners = {m["owner"] for m in (await cluster.view())["markets"].values()}
        idle = next((n for name, n in cluster.nodes.items() if name not in owners), cluster.nodes["c"])
        idle.kill()
        await asyncio.sleep(1)
        await idle.start()

    history = await run_with_nemesis(cluster, nemesis)
    await finish(cluster, "kill -9 owners and a non-owner", 3, history,
                 extra=f"; failover took {', '.join(f'{s:.1f}' for s in failover)} s")
    assert max(failover) < 15


async def test_moving_markets_under_load_and_from_a_dead_owner(cluster: Cluster) -> None:
    """`market move` under load to a live node; then towards a dead node and away from a dead
    owner: both refused at once (never queued for a later boot), and the market fails over."""
    async def nemesis() -> None:
        code, _, err = await cluster.cli("market", "move", "btcusd", "--to", "b")
        assert code == 0, err
        assert await cluster.owner("btcusd") == "b"
        cluster.nodes["c"].kill()
        t0 = time.monotonic()
        code, _, err = await cluster.cli("market", "move", "ltcbtc", "--to", "c", timeout=30)
        assert code != 0 and "not running" in err, err
        cluster.nodes["b"].kill()
        code, out, err = await cluster.cli("market", "move", "btcusd", "--to", "a", timeout=30)
        # Refused (the owner is dead), or done by the standby that has taken it over meanwhile.
        assert (code != 0 and "no running owner" in err) or (code == 0 and await cluster.owner("btcusd") == "a"), err
        assert time.monotonic() - t0 < 20, "an answer must come at once"
        await cluster.wait_owned()  # everything falls to a
        owners = {m: v["owner"] for m, v in (await cluster.view())["markets"].items()}
        assert owners == {"btcusd": "a", "ltcbtc": "a", "dogebtc": "a"}, owners
        await cluster.nodes["b"].start()
        await cluster.nodes["c"].start()
        await asyncio.sleep(2)
        view = await cluster.view()  # the restarted nodes run nothing whose lease another holds
        assert not [p for p in view["problems"] if "still runs" in p or "no running owner" in p], view["problems"]

    history = await run_with_nemesis(cluster, nemesis)
    await finish(cluster, "market move under load, towards and away from dead nodes", 3, history)


async def test_a_restart_with_a_backlog_in_its_queue(cluster: Cluster) -> None:
    """Pause the owner of dogebtc while the other nodes queue orders for it, kill it while paused,
    and restart it: the backlog is matched once, in order."""
    async def nemesis() -> None:
        c = cluster.nodes["c"]
        c.pause()
        await asyncio.sleep(LEASE_MS / 2000)
        c.kill()
        await c.start()

    history = await run_with_nemesis(cluster, nemesis, markets=["dogebtc", "dogebtc", "btcusd"])
    await finish(cluster, "restart with a backlog in the queue", 1, history)


async def test_a_second_process_under_a_running_nodes_name_takes_nothing(cluster: Cluster) -> None:
    """Start another process as node a: it must not take a's leases, and status names both."""
    async def nemesis() -> None:
        before = (await cluster.view())["markets"]["btcusd"]
        a = cluster.nodes["a"]
        [port] = free_ports(1)
        twin = NodeProcess(cluster.config, port, a.key_file, cluster.tmp / "twin.log", node="a", env=a.env)
        cluster.extra.append(twin)
        await twin.start()
        await asyncio.sleep(2 * LEASE_MS / 1000)
        after = (await cluster.view())
        assert after["markets"]["btcusd"]["boot"] == before["boot"], "the twin took node a's lease"
        assert any("two processes" in p for p in after["problems"]), after["problems"]
        twin.kill()

    history = await run_with_nemesis(cluster, nemesis)
    await finish(cluster, "a second process under a running node's name", 1, history)


async def test_one_node_with_a_market_slower_than_the_sweep(tmp_path: Path) -> None:
    """One node on SQLite whose pending sweep runs every 20 ms: orders still in the market's mailbox
    are found by the sweep again and again; each is matched once."""
    [port] = free_ports(1)
    text = config_text(f"sqlite:///{tmp_path}/x.db", None, {"main": port}, {"sweep_after_ms": 20},
                       {"main": list(ORDERS)})
    config = tmp_path / "cluster.toml"
    config.write_text(text)
    c = Cluster(tmp_path, "", {})
    c.config = config
    c.keys = await make_members(config, tmp_path / "secret.key", 12)
    node = NodeProcess(config, port, tmp_path / "secret.key", tmp_path / "main.log")
    c.nodes = {"main": node}
    await node.start()
    try:
        history = await run_with_nemesis(c, lambda: asyncio.sleep(6), before=0.5, after=0.5)
        st: dict[str, Any] = {}

        async def books() -> dict[str, int]:
            async with aiohttp.ClientSession() as s, s.get(node.base + "/ops/status") as r:
                st.update(await r.json())
            return {m: int(v["resting"]) for m, v in st["markets"].items()}

        violations = await check(f"sqlite:///{tmp_path}/x.db", config, history, books)
        dropped = sum(int(v.get("duplicates_dropped", 0)) for v in st["markets"].values())
        report("one node, a market slower than the sweep", 1, history, violations,
               extra=f"; {dropped} swept copies dropped")
        assert not violations, "\n".join(violations[:30])
    finally:
        node.terminate()

