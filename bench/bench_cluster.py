"""Cluster benchmark: what an order costs on 1 node and on 3 nodes running the same markets.

Nodes are separate processes on PostgreSQL (+ RabbitMQ for 3 nodes); load generators are separate
processes sending signed `POST /api/v2/orders` for random members and markets (so 2 of 3 orders
cross nodes through RabbitMQ to their market in the 3-node run). Where an order is sent (`--route`):

- `random`: to a random node, so 2 of 3 orders also cross to the node of the member's account shard
  (request + reply over the bus) before their funds are locked;
- `shard`: to the node that runs the member's account shard, learnt from the `X-Shard-Node` header
  of the node's answers (a member's first order goes to a random node), as a balancer that routes
  members to their shard does (docs/operations.md): the account hop is gone.

By default the 3-node cluster runs both ways (`--route both`), so the cost of the hop shows.

Which markets a member trades (`--traffic`):

- `all`: every member trades every market, so 2 of 3 orders cross to another node's market, and
  their trades' settlements come back over the bus: what a cross-node order costs;
- `local`: each member trades only the markets of the node that runs its account shard, and is
  sent there: traffic that a placement of markets and shards can keep on one node (disjoint
  markets and members), so that the cluster's own cost per order shows, without the crossings.
  The 1-node run of this pair carries the very same load (the same members on the same markets).

By default both pairs run (`--traffic both`). All runs have the same 6 markets, members and load
generators. Each run has two phases:

- saturation: every connection sends its next order when the last is answered; orders/s,
  p50/p99 latency, and the CPU-seconds per order of the node processes together, of PostgreSQL
  (its backends for the benchmark's database, from /proc/<pid>/stat) and of RabbitMQ (beam.smp),
  apart; bus messages and store round trips per order from the nodes' /metrics counters;
- fixed rate (`--rate`, default 1,000 orders/s): orders are sent on a schedule whatever the answers
  do, and latency counts from the scheduled time (no coordinated omission): p50/p99. An order due
  while 500 of a generator's are unanswered is not sent and counted as `over capacity`.

The seeding writes the notices of the members' deposits itself and mails nothing, as an operator's
import of balances would: else the first node up mailed 1,200 of them while the measures ran (orders
make no notices: that was seeding's cost, not the load's). Before the load, the nodes' idle CPU
(ownership ticks, sweeps, notices and rights polls) is measured for 5 s, once the deposits are past
the notices' look-back (the nodes' polls then read no rows). At low throughput idle CPU is a part of
the nodes' CPU per order, so that is also printed less the idle part.

Then the ratios 3-node / 1-node, and a capacity model for 10 nodes and 100 markets from the
measured costs: bus messages and store round trips per order, connections per node vs
PostgreSQL's max_connections. CPU is that of the whole box: on a shared machine other processes'
PostgreSQL and RabbitMQ work is not counted, but they still slow the run down.

    python bench/bench_cluster.py [--seconds 10] [--rate 1000] [--clients 2] [--concurrency 32]
                                  [--route both|shard|random] [--traffic both|all|local]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("EXCHANGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ = os.environ.get("EXCHANGE_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
MARKETS = {  # id: (base, quote, price precision, volume precision, mid price, volume)
    "btcusd": ("btc", "usd", 2, 4, "30000", "0.01"),
    "ltcusd": ("ltc", "usd", 2, 4, "80", "1"),
    "ltcbtc": ("ltc", "btc", 6, 2, "0.0025", "1"),
    "dogebtc": ("doge", "btc", 8, 0, "0.0000025", "1000"),
    "dogeusd": ("doge", "usd", 5, 0, "0.07", "100"),
    "dogeltc": ("doge", "ltc", 8, 0, "0.0009", "100"),
}
ONE_NODE = {"n1": list(MARKETS)}
THREE_NODES = {"n1": ["btcusd", "ltcbtc"], "n2": ["dogebtc", "ltcusd"], "n3": ["dogeusd", "dogeltc"]}
COUNTERS = {  # /metrics counter → what it counts
    "exchange_orders_accepted_total": "accepted",
    "exchange_bus_published_total": "bus_orders_out",
    "exchange_bus_handed_over_total": "handed_over",
    "exchange_bus_consumed_total": "bus_orders_in",
    "exchange_bus_replies_total": "bus_replies",
    "exchange_bus_events_published_total": "bus_events_out",
    "exchange_bus_events_consumed_total": "bus_events_in",
    "exchange_store_transactions_total": "store_tx",
    "exchange_store_round_trips_total": "store_rt",
}
COMMIT_KINDS = ("market", "accounts")  # exchange_batch_commit_seconds_count{actor="<kind>:…"} → commits_<kind>
SHARDS = 6  # account shards: a multiple of the 3 nodes, so that each runs as many (node/account_shards.py)
TICK = os.sysconf("SC_CLK_TCK")
MAX_INFLIGHT = 500  # per load generator, in the fixed-rate phase
IDLE_S = 5.0  # the nodes' idle CPU is measured this long before the load


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def config_text(database: str, nodes: dict[str, list[str]], ports: dict[str, int], rabbit: bool) -> str:
    out = [f'[exchange]\nname = "bench"\ndatabase = "{database}"\n']
    if rabbit:
        out.append(f'rabbitmq = "{RABBITMQ}"\n')
    for code in ("btc", "ltc", "doge"):
        out.append(f'[currencies.{code}]\nprecision = 8\nkind = "coin"\n')
    out.append('[currencies.usd]\nprecision = 6\nkind = "fiat"\n')
    used = [m for ms in nodes.values() for m in ms]
    for mid in used:
        base, quote, pp, vp, _, _ = MARKETS[mid]
        out.append(f'[markets.{mid}]\nbase = "{base}"\nquote = "{quote}"\nprice_precision = {pp}\n'
                   f'volume_precision = {vp}\nmaker_fee = "0.001"\ntaker_fee = "0.002"\n')
    for name, ms in nodes.items():
        out.append(f'[nodes.{name}]\nhost = "127.0.0.1"\nport = {ports[name]}\nmarkets = {ms!r}\n'.replace("'", '"'))
    # A lease of 30 s: on a loaded machine the nodes can take more than the default 10 s to start, and a
    # standby would then adopt the markets and shards of a primary still starting, measuring another
    # placement than the one configured (and a self-fence under load would move them mid-run).
    out.append("[actors]\nmailbox_size = 100000\nmax_batch = 2000\nask_timeout_ms = 30000\n"
               f"account_shards = {SHARDS}\n"
               "lease_ms = 30000\n")
    out.append("[api]\nsigned_limit = 0\npublic_limit = 0\n")  # the load is a few hundred keys, on purpose
    out.append("[http]\nmax_connections_per_ip = 5000\n")  # every load generator is 127.0.0.1
    return "\n".join(out)


async def create_db() -> str:
    import asyncpg

    name = "bench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


async def drop_db(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    await conn.close()


async def delete_broker_objects(url: str, markets: list[str]) -> None:
    """The durable queues and exchange the nodes declared, named after the cluster id in the
    database (their other queues are exclusive and went with their connections): else every run
    leaves its market and account shard queues and its event exchange on the broker."""
    import aio_pika
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        cluster_id = await conn.fetchval("SELECT value FROM cluster_info WHERE name = 'cluster_id'")
        shards = [int(r[0]) for r in await conn.fetch("SELECT shard FROM account_shards")]
    except asyncpg.UndefinedTableError:
        return  # no node ever started on it
    finally:
        await conn.close()
    if cluster_id is None:
        return
    prefix = f"exchange.{cluster_id}"
    broker = await aio_pika.connect(RABBITMQ)
    try:
        channel = await broker.channel()
        for market in markets:
            await channel.queue_delete(f"{prefix}.market.{market}")
        for shard in shards:
            await channel.queue_delete(f"{prefix}.accounts.{shard}")
        await channel.exchange_delete(f"{prefix}.event-lists")
    finally:
        await broker.close()


async def seed(config_path: Path, key_file: Path, members: int) -> list[tuple[str, str, int]]:
    """The members, each funded in every currency, and an API key each: (access key, secret, member id)."""
    from node.apikeys import ApiKeys
    from node.bootstrap import start_exchange
    from node.config import load_config
    from node.notices import Notices
    from node.secrets_box import SecretBox, load_server_key

    ex = await start_exchange(load_config(config_path), actors=False)
    keys = ApiKeys(ex.store, SecretBox(load_server_key(key_file), "api-secret"))
    out = []
    for i in range(members):
        mid = await ex.create_member(f"bench{i}@bench")
        for cur, amount in (("btc", "100000"), ("ltc", "10000000"), ("doge", "10000000000"), ("usd", "100000000")):
            await ex.deposit(mid, cur, amount)
        out.append((*await keys.create(mid, "bench", now=int(time.time() * 1000)), mid))
    await Notices(ex, Unmailed, "bench").scan()  # the deposits' notices, as a node writes them, not mailed
    await ex.stop()
    return out


class Unmailed:
    """The seeding's mailer: members of an import are not told of their opening balances."""

    async def send(self, mail: object) -> None:
        pass


# -- load ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trader:
    """A member as the load sees it: its API key, the markets it trades, and the node its orders go to
    first (None: a random one)."""
    access_key: str
    secret: str
    markets: tuple[str, ...]
    home: str | None = None


def traders(keys: list[tuple[str, str, int]], nodes: dict[str, list[str]], traffic: str) -> list[Trader]:
    """`all`: every member trades every market, from any node. `local`: a member trades only the
    markets of the node that runs its account shard in the 3-node layout (shard `member_id % SHARDS`,
    placed on the nodes in turn: placement.seed_shard_primary), and is sent to that node, as a
    balancer routing members to their shard's node does. In the 1-node run the same members trade the
    same markets, so both runs carry the same load."""
    if traffic == "all":
        return [Trader(ak, sk, tuple(m for ms in nodes.values() for m in ms)) for ak, sk, _ in keys]
    names = list(THREE_NODES)
    out = []
    for ak, sk, mid in keys:
        group = names[(mid % SHARDS) % len(names)]
        out.append(Trader(ak, sk, tuple(THREE_NODES[group]), group if group in nodes else next(iter(nodes))))
    return out


def load_worker(bases: dict[str, str], members: list[Trader], begin: float, start: float,
                end: float, conc: int, rate: float, seed_: int, route: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    """Send orders from `begin` to `end` (wall clock): `conc` closed loops, or `rate` orders/s on a
    schedule when rate > 0, with at most MAX_INFLIGHT unanswered (an order due beyond that is not
    sent and counted as `over capacity`: the nodes are not keeping up). Reports the latencies of
    orders sent and answered within `start`..`end` (before `start`: the warm-up), and the errors.
    `bases` is every node's URL by node name; a member's orders go to its home node if it has one,
    and with `route` "shard" to the node its last answer named in `X-Shard-Node`. HTTP is spoken by
    bench/leanhttp.py: aiohttp's client would take several times the CPU per order from the nodes."""
    import resource

    from leanhttp import Pool, post_form

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one socket per order in flight

    from node.web.signature import payload, sign, to_query

    async def main() -> None:
        lat: list[float] = []
        errors: dict[str, int] = {}
        last_tonce: dict[str, int] = {}
        home = {t.access_key: bases[t.home] for t in members if t.home}  # access key -> its shard's node URL
        homes = set(home)  # those sent to their shard's node from the first order
        urls = list(bases.values())
        rng = random.Random(seed_)

        def order() -> tuple[str, str, bytes]:
            t = members[rng.randrange(len(members))]
            ak, sk, mid = t.access_key, t.secret, rng.choice(t.markets)
            _, _, pp, vp, px, vol = MARKETS[mid]
            side = rng.choice(("buy", "sell"))
            step = 1 + rng.randint(-3, 3) / 1000
            price = f"{float(px) * step:.{pp}f}"  # load-generator side only: the server parses strings strictly
            tonce = max(last_tonce.get(ak, 0) + 1, int(time.time() * 1000))  # unique per key, near now
            last_tonce[ak] = tonce
            params = {"market": mid, "side": side, "volume": vol, "price": price, "access_key": ak, "tonce": str(tonce)}
            params["signature"] = sign(sk, payload("POST", "/api/v2/orders", params))
            return ak, home.get(ak) or rng.choice(urls), to_query(params).encode()

        async def send(session: Pool, t0: float) -> None:
            """One order; its latency counts from `t0` (wall clock: when it was due)."""
            ak, base, body = order()
            host, port = base.rsplit("/", 1)[1].rsplit(":", 1)
            try:
                status, node = await session.exchange(host, int(port), post_form(host, "/api/v2/orders", body),
                                                      b"x-shard-node")
            except (OSError, RuntimeError, asyncio.IncompleteReadError) as e:  # uvloop: RuntimeError
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                return
            if route == "shard" and node in bases:
                if home.get(ak, bases[node]) != bases[node] and ak in homes:  # the bench's layout is wrong
                    errors["shard elsewhere"] = errors.get("shard elsewhere", 0) + 1
                home[ak] = bases[node]
            if status != 201:
                errors[str(status)] = errors.get(str(status), 0) + 1
                return
            if t0 >= start and time.time() <= end:
                lat.append(time.time() - t0)

        async def loop(session: Pool) -> None:
            while time.time() < end:
                await send(session, time.time())

        await asyncio.sleep(max(0.0, begin - time.time()))
        session = Pool()  # open loop: as many connections as the schedule needs
        try:
            if rate <= 0:
                await asyncio.gather(*(loop(session) for _ in range(conc)))
            else:
                tasks: set[asyncio.Task[None]] = set()
                t, i = time.time(), 0
                while True:
                    due = t + i / rate
                    if due >= end:
                        break
                    delay = due - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    i += 1
                    if len(tasks) >= MAX_INFLIGHT:
                        errors["over capacity"] = errors.get("over capacity", 0) + 1
                        continue
                    task = asyncio.create_task(send(session, due))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.gather(*tasks)
        finally:
            session.close()
        q.put((lat, errors))

    asyncio.run(main())


# -- CPU and counters --------------------------------------------------------------------------------
def cpu_of(pid: int) -> float:
    """CPU-seconds (user + system, all threads) a process has used; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def run_time_of(pid: int) -> float:
    """Seconds a process has run on a CPU (all threads), from the scheduler's nanosecond counts: an
    idle node uses a few ms/s, below the 10 ms resolution of `cpu_of`."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        pass
    return total / 1e9


def pids_named(comm: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == comm:
                        out.append(int(d))
            except OSError:
                pass
    return out


async def pg_backends(dbname: str) -> list[int]:
    """PostgreSQL's server processes serving the benchmark's database (the nodes' pools and locks)."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        return [int(r[0]) for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", dbname)]
    finally:
        await conn.close()


async def pg_max_connections() -> int:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        return int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()


async def scrape(bases: list[str]) -> dict[str, float]:
    """The nodes' counters, summed over the nodes."""
    import aiohttp

    total = dict.fromkeys([*COUNTERS.values(), *(f"commits_{k}" for k in COMMIT_KINDS)], 0.0)
    async with aiohttp.ClientSession() as s:
        for base in bases:
            async with s.get(base + "/metrics") as r:
                text = await r.text()
            for line in text.splitlines():
                if line.startswith("#"):
                    continue
                name = line.split("{", 1)[0].split(" ", 1)[0]
                if name in COUNTERS:
                    total[COUNTERS[name]] += float(line.rsplit(" ", 1)[1])
                elif name == "exchange_batch_commit_seconds_count":
                    kind = "commits_" + line.split('actor="', 1)[1].split(":", 1)[0]
                    if kind in total:
                        total[kind] += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Sample:
    nodes: float
    pg: dict[int, float]
    rabbit: dict[int, float]  # beam.smp processes by pid
    counters: dict[str, float]


async def sample(node_pids: list[int], dbname: str, bases: list[str]) -> Sample:
    """The counters, then at once every CPU figure: an overloaded node answers /metrics seconds
    late, and CPU read before that would be from another moment than the counters."""
    backends = await pg_backends(dbname)
    t0 = time.monotonic()
    counters = await scrape(bases)
    if time.monotonic() - t0 > 1.0:
        print(f"  warning: the nodes took {time.monotonic() - t0:.1f} s to answer /metrics (overloaded): the "
              "phase's window is that much shorter or later")
    return Sample(sum(cpu_of(p) for p in node_pids), {p: cpu_of(p) for p in backends},
                  {p: cpu_of(p) for p in pids_named("beam.smp")}, counters)


@dataclass
class Phase:
    orders_s: float
    p50: float
    p99: float
    errors: dict[str, int]
    accepted: float
    cpu_nodes: float = 0.0  # CPU-seconds per accepted order
    cpu_pg: float = 0.0
    cpu_rabbit: float = 0.0
    per_order: dict[str, float] = field(default_factory=dict)  # counter deltas per accepted order
    idle_nodes: float = 0.0  # CPU-seconds per second of the nodes before any load (ticks, sweeps)
    seconds: float = 1.0
    lock_waits: list[int] = field(default_factory=list)  # backends waiting on a lock, sampled every 100 ms

    @property
    def cpu_nodes_net(self) -> float:
        """The nodes' CPU per order less what they spend idle: the part that grows with orders."""
        return max(0.0, self.cpu_nodes - self.idle_nodes * self.seconds / max(self.accepted, 1.0))

    @property
    def cpu_total(self) -> float:
        return self.cpu_nodes + self.cpu_pg + self.cpu_rabbit


def percentile(lat: list[float], p: float) -> float:
    return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else 0.0


async def lock_waits(dbname: str, until: float, out: list[int]) -> None:
    """Every 100 ms until `until`, how many backends of the database wait on a lock (row locks
    included): the contention that account shards remove."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        while time.time() < until:
            out.append(int(await conn.fetchval(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", dbname)))
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def phase(bases: dict[str, str], members: list[Trader], args: argparse.Namespace,
                rate: float, node_pids: list[int], dbname: str, route: str) -> Phase:
    begin = time.time() + 1.0  # the workers' start-up
    start = begin + 2.0  # a warm-up before the window opens
    end = start + args.seconds
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    workers = [mp.Process(target=load_worker, args=(bases, members[i::args.clients], begin, start, end,
                                                   args.concurrency, rate / args.clients, i, route, q))
               for i in range(args.clients)]
    for w in workers:
        w.start()
    await asyncio.sleep(max(0.0, start - time.time()))
    before = await sample(node_pids, dbname, list(bases.values()))
    waits: list[int] = []
    await lock_waits(dbname, end, waits)
    after = await sample(node_pids, dbname, list(bases.values()))
    lat: list[float] = []
    errors: dict[str, int] = {}
    for _ in workers:
        lt, er = await asyncio.to_thread(q.get)
        lat += lt
        for k, v in er.items():
            errors[k] = errors.get(k, 0) + v
    for w in workers:
        w.join()
    lat.sort()
    accepted = after.counters["accepted"] - before.counters["accepted"]
    n = max(accepted, 1.0)
    pg = sum(cpu - before.pg.get(pid, 0.0) for pid, cpu in after.pg.items())  # a new backend: all its CPU
    # the broker's processes alive at both ends: one gone meanwhile made the difference negative
    rabbit = sum(cpu - before.rabbit[pid] for pid, cpu in after.rabbit.items() if pid in before.rabbit)
    return Phase(orders_s=len(lat) / args.seconds, p50=percentile(lat, 0.5), p99=percentile(lat, 0.99), errors=errors,
                 accepted=accepted, seconds=args.seconds, cpu_nodes=(after.nodes - before.nodes) / n, cpu_pg=pg / n,
                 cpu_rabbit=rabbit / n,
                 per_order={k: (after.counters[k] - before.counters[k]) / n for k in after.counters},
                 lock_waits=waits)


# -- one cluster -------------------------------------------------------------------------------------
def spawn_node(cfg: Path, key_file: Path, name: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "--key-file", str(key_file),
                                 "--node", name, "serve"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


async def run(nodes: dict[str, list[str]], args: argparse.Namespace, route: str, traffic: str) -> tuple[Phase, Phase]:
    """Start the nodes on a fresh database; a saturation phase, then a fixed-rate one."""
    url = await create_db()
    tmp = Path(tempfile.mkdtemp())
    ports = {n: free_port() for n in nodes}
    cfg = tmp / "cluster.toml"
    cfg.write_text(config_text(url, nodes, ports, rabbit=len(nodes) > 1))
    key_file = tmp / "secret.key"
    keys = await seed(cfg, key_file, args.members)
    procs = []
    try:
        for name in nodes:
            procs.append(spawn_node(cfg, key_file, name, tmp / f"{name}.log"))
        import aiohttp

        async with aiohttp.ClientSession() as s:
            for name in nodes:
                for _ in range(300):
                    try:
                        async with s.get(f"http://127.0.0.1:{ports[name]}/api/v2/timestamp") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
        bases = {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
        members = traders(keys, nodes, traffic)
        pids = [p.pid for p in procs]
        dbname = url.rsplit("/", 1)[1]
        await start_up_done(url)
        t0, idle0 = time.monotonic(), sum(run_time_of(p) for p in pids)
        await asyncio.sleep(IDLE_S)
        idle = (sum(run_time_of(p) for p in pids) - idle0) / (time.monotonic() - t0)
        saturated = await phase(bases, members, args, 0.0, pids, dbname, route)
        saturated.idle_nodes = idle
        await asyncio.sleep(3)  # what the bus still holds is taken in before the next phase
        fixed = await phase(bases, members, args, args.rate, pids, dbname, route)
        await check_placement(nodes, bases)
        return saturated, fixed
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        try:
            if len(nodes) > 1:
                await delete_broker_objects(url, [m for ms in nodes.values() for m in ms])
        finally:
            await drop_db(url)


async def start_up_done(url: str) -> None:
    """Wait until the seeded deposits are past the notices' look-back (two polls more), after which
    the nodes' polls read no rows."""
    import asyncpg

    from node.notices import OVERLAP_MS, POLL_S

    conn = await asyncpg.connect(url)
    try:
        last = await conn.fetchval("SELECT MAX(done_at) FROM deposits")
    finally:
        await conn.close()
    await asyncio.sleep(max(0.0, (int(last or 0) + OVERLAP_MS) / 1000 + 2 * POLL_S - time.time()))


async def check_placement(nodes: dict[str, list[str]], bases: dict[str, str]) -> None:
    """Say so when a node ran other markets than configured (a standby adopted a slow primary's, or
    a node fenced itself under load): the run then measured another placement."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        for name, base in bases.items():
            async with s.get(base + "/metrics") as r:
                text = await r.text()
            held = sorted(line.split('market="', 1)[1].split('"', 1)[0] for line in text.splitlines()
                          if line.startswith("exchange_market_lease_held{") and line.rstrip().endswith(" 1.0"))
            if held != sorted(nodes[name]):
                print(f"  warning: node {name} ran {held}, not {sorted(nodes[name])}: another placement was measured")


# -- report ------------------------------------------------------------------------------------------
def ms(cpu_s: float) -> str:
    return f"{cpu_s * 1000:.3f} ms"


def errs(e: dict[str, int]) -> str:
    return f"errors {sum(e.values())}" + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(e.items()))})" if e else "")


def report(label: str, sat: Phase, fixed: Phase, rate: float) -> None:
    print(f"{label}: {sat.orders_s:,.0f} orders/s, p50 {sat.p50:.1f} ms, p99 {sat.p99:.1f} ms, {errs(sat.errors)}")
    print(f"  CPU per order: nodes {ms(sat.cpu_nodes)}, PostgreSQL {ms(sat.cpu_pg)}, RabbitMQ {ms(sat.cpu_rabbit)}, "
          f"together {ms(sat.cpu_total)}")
    if sat.lock_waits:
        print(f"  backends waiting on locks: mean {sum(sat.lock_waits) / len(sat.lock_waits):.2f}, "
              f"max {max(sat.lock_waits)} ({len(sat.lock_waits)} samples)")
    print(f"  the nodes idle: {sat.idle_nodes:.3f} CPU-s/s; their CPU per order less that: {ms(sat.cpu_nodes_net)}")
    po = sat.per_order
    bus = po["bus_orders_out"] + po["bus_orders_in"] + po["bus_replies"] + po["bus_events_out"] + po["bus_events_in"]
    print(f"  per order: store transactions {po['store_tx']:.2f}, round trips {po['store_rt']:.2f}; bus messages "
          f"{bus:.2f} (to market and shard queues {po['bus_orders_out']:.2f} carrying {po['handed_over']:.2f} "
          f"orders handed over, taken {po['bus_orders_in']:.2f}, replies "
          f"{po['bus_replies']:.2f}, events out {po['bus_events_out']:.2f}, delivered {po['bus_events_in']:.2f}: "
          "to nodes that follow them, none here)")
    print(f"  batches committed per order: market actors {po['commits_market']:.3f}, account actors "
          f"{po['commits_accounts']:.3f}, everything else (tonces, leases, sweeps) "
          f"{po['store_tx'] - po['commits_market'] - po['commits_accounts']:.3f}")
    print(f"  at a fixed {rate:,.0f} orders/s: {fixed.orders_s:,.0f} answered/s, p50 {fixed.p50:.1f} ms, "
          f"p99 {fixed.p99:.1f} ms, {errs(fixed.errors)}")
    fo = fixed.per_order
    fbus = fo["bus_orders_out"] + fo["bus_orders_in"] + fo["bus_replies"] + fo["bus_events_out"] + fo["bus_events_in"]
    print(f"    CPU per order: nodes {ms(fixed.cpu_nodes)}, PostgreSQL {ms(fixed.cpu_pg)}, RabbitMQ "
          f"{ms(fixed.cpu_rabbit)}, together {ms(fixed.cpu_total)}; store transactions {fo['store_tx']:.2f}, "
          f"bus messages {fbus:.2f} per order (the same load on both: compare runs at a rate both keep up with)")


def capacity(one: Phase, three: Phase, args: argparse.Namespace, max_conn: int) -> None:
    """10 nodes and 100 markets, from the per-order costs measured at 3 nodes."""
    from node.config import ActorConf, PoolConf

    nodes, markets = 10, 100
    po = three.per_order
    cross3 = po["handed_over"]  # orders sent to another node's market, per order (2/3 expected)
    cross10 = (nodes - 1) / nodes
    per_cross = (po["bus_orders_out"] + po["bus_orders_in"] + po["bus_replies"]) / cross3 if cross3 else 0.0
    fanout = po["bus_events_in"] / po["bus_events_out"] if po["bus_events_out"] else 0.0
    fanout10 = fanout * nodes / 3 if fanout > 2.5 else fanout  # every node takes every event, or only subscribers
    bus10 = cross10 * per_cross + po["bus_events_out"] * (1 + fanout10)
    pool = PoolConf()
    conns = nodes * (pool.max_size + 1)
    lease_s = ActorConf().lease_ms / 1000
    tick = min(1.0, lease_s / 5)
    print(f"capacity model, {nodes} nodes x {markets} markets (from the 3-node costs; clients spread over the nodes):")
    print(f"  bus messages per order: {bus10:.2f} = {cross10:.2f} cross-node orders x {per_cross:.2f} messages "
          f"(measured at 3 nodes: {cross3:.2f} x {per_cross:.2f}) + {po['bus_events_out']:.2f} events x "
          f"(1 + {fanout10:.1f} deliveries; {fanout:.1f} at 3 nodes)")
    print(f"  store round trips per order: {po['store_rt']:.2f} ({po['store_tx']:.2f} transactions), as at 3 nodes "
          f"({one.per_order['store_rt']:.2f} at 1 node); besides orders, {2 * nodes / tick:.0f} lease renewals/s "
          f"(each node renews its {markets // nodes} markets' leases in one statement, its shards' in another) and "
          f"{nodes / tick:.0f} heartbeats/s")
    print(f"  PostgreSQL connections: {nodes} x (pool_max {pool.max_size} + 1 liveness lock) = {conns} of "
          f"max_connections {max_conn}" + ("" if conns + 10 <= max_conn else
                                           " -> too many: lower pool_max, raise max_connections or use PgBouncer"))
    if three.cpu_pg > 0:
        print(f"  one PostgreSQL core: ~{1 / three.cpu_pg:,.0f} orders/s; one RabbitMQ core: "
              f"~{1 / max(three.cpu_rabbit, 1e-9):,.0f} orders/s; one node core: ~{1 / max(three.cpu_nodes, 1e-9):,.0f} "
              "orders/s")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10, help="length of each measured phase")
    ap.add_argument("--rate", type=float, default=1000, help="orders/s of the fixed-rate phase")
    ap.add_argument("--clients", type=int, default=2, help="load generator processes")
    ap.add_argument("--concurrency", type=int, default=32, help="connections per load generator (saturation)")
    ap.add_argument("--members", type=int, default=300)
    ap.add_argument("--route", choices=("both", "shard", "random"), default="both",
                    help="3 nodes: orders sent to the member's shard node, to a random node, or a run of each")
    ap.add_argument("--traffic", choices=("both", "all", "local"), default="both",
                    help="members trade every market, only their shard node's markets, or a pair of runs of each")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()} (nodes, PostgreSQL, RabbitMQ and load generators share them); "
          f"{len(MARKETS)} markets, {args.clients} x {args.concurrency} connections, {args.seconds:.0f} s per phase")
    last: tuple[Phase, Phase] | None = None
    if args.traffic in ("both", "all"):
        print("-- every member trades every market (2 of 3 orders cross nodes on 3 nodes)")
        one = await run(ONE_NODE, args, "random", "all")
        report("1 node  x 6 markets", *one, args.rate)
        routes = ("random", "shard") if args.route == "both" else (args.route,)
        threes = {}
        for route in routes:
            threes[route] = await run(THREE_NODES, args, route, "all")
            report(f"3 nodes x 2 markets, orders sent to {'the shard' if route == 'shard' else 'a random'} node",
                   *threes[route], args.rate)
        for route, three in threes.items():
            ratios(f"3 nodes ({route} node) / 1 node", one, three, args.rate)
        if len(threes) == 2:
            r, sh = threes["random"][0], threes["shard"][0]
            print(f"the account hop (random node / shard node, 3 nodes): CPU per order: nodes "
                  f"{r.cpu_nodes / max(sh.cpu_nodes, 1e-9):.2f}x, together {r.cpu_total / max(sh.cpu_total, 1e-9):.2f}x; "
                  f"orders/s {r.orders_s / max(sh.orders_s, 1e-9):.2f}x")
        capacity(one[0], threes[routes[-1]][0], args, await pg_max_connections())
        last = one
    if args.traffic in ("both", "local"):
        print("-- each member trades the markets of its account shard's node, and is sent there (disjoint traffic)")
        one = await run(ONE_NODE, args, "shard", "local")
        report("1 node  x 6 markets", *one, args.rate)
        three = await run(THREE_NODES, args, "shard", "local")
        report("3 nodes x 2 markets, members on their shard's node", *three, args.rate)
        ratios("3 nodes / 1 node, disjoint traffic", one, three, args.rate)
        if last is not None:
            print(f"the same node, all vs disjoint traffic: CPU per order together "
                  f"{last[0].cpu_total / max(one[0].cpu_total, 1e-9):.2f}x (1 node: only which members trade where "
                  "differs)")


def ratios(label: str, one: tuple[Phase, Phase], three: tuple[Phase, Phase], rate: float) -> None:
    a, b = one[0], three[0]
    print(f"ratio {label}: orders/s {b.orders_s / max(a.orders_s, 1e-9):.2f}x; CPU per "
          f"order: nodes {b.cpu_nodes / max(a.cpu_nodes, 1e-9):.2f}x (less idle: "
          f"{b.cpu_nodes_net / max(a.cpu_nodes_net, 1e-9):.2f}x), PostgreSQL {b.cpu_pg / max(a.cpu_pg, 1e-9):.2f}x, "
          f"together {b.cpu_total / max(a.cpu_total, 1e-9):.2f}x (target: at most 1.25x); p99 at "
          f"{rate:,.0f}/s {one[1].p99:.1f} -> {three[1].p99:.1f} ms (target: under 100 ms)")


if __name__ == "__main__":
    asyncio.run(main())
