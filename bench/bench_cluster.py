"""Cluster benchmark: orders/s and latency through 1 node × 2 markets vs 3 nodes × 2 markets.

Nodes are separate processes on PostgreSQL + RabbitMQ; load generators are separate processes
sending signed `POST /api/v2/orders` to random nodes for random markets (so 2 of 3 orders cross
nodes through RabbitMQ in the 3-node run). Prints total orders/s, p50/p99 latency and the cores.

    python bench/bench_cluster.py [--seconds 10] [--clients 4] [--concurrency 32]
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


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


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
    out.append("[actors]\nmailbox_size = 100000\nmax_batch = 2000\nask_timeout_ms = 30000\n")
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


async def seed(config_path: Path, key_file: Path, members: int) -> list[tuple[str, str]]:
    from node.apikeys import ApiKeys
    from node.config import load_config
    from node.exchange import Exchange
    from node.secrets_box import SecretBox, load_server_key

    ex = await Exchange.start(load_config(config_path), actors=False)
    keys = ApiKeys(ex.store, SecretBox(load_server_key(key_file), "api-secret"))
    out = []
    for i in range(members):
        mid = await ex.create_member(f"bench{i}@bench")
        for cur, amount in (("btc", "100000"), ("ltc", "10000000"), ("doge", "10000000000"), ("usd", "100000000")):
            await ex.deposit(mid, cur, amount)
        out.append(await keys.create(mid, "bench", now=int(time.time() * 1000)))
    await ex.stop()
    return out


def load_worker(bases: list[str], markets: list[str], keys: list[tuple[str, str]], seconds: float, conc: int,
                seed_: int, q: mp.Queue) -> None:  # type: ignore[type-arg]
    import aiohttp

    from node.web.signature import payload, sign, to_query

    async def main() -> None:
        lat: list[float] = []
        errors = 0
        deadline = time.monotonic() + seconds
        last_tonce: dict[str, int] = {}

        async def client(k: int, session: aiohttp.ClientSession) -> None:
            nonlocal errors
            rng = random.Random(seed_ * 1000 + k)
            ak, sk = keys[k % len(keys)]
            while time.monotonic() < deadline:
                mid = rng.choice(markets)
                _, _, pp, vp, px, vol = MARKETS[mid]
                side = rng.choice(("buy", "sell"))
                step = 1 + rng.randint(-3, 3) / 1000
                price = f"{float(px) * step:.{pp}f}"  # load-generator side only: the server parses strings strictly
                tonce = max(last_tonce.get(ak, 0) + 1, int(time.time() * 1000))  # unique per key, near now
                last_tonce[ak] = tonce
                params = {"market": mid, "side": side, "volume": vol, "price": price, "access_key": ak,
                          "tonce": str(tonce)}
                params["signature"] = sign(sk, payload("POST", "/api/v2/orders", params))
                base = rng.choice(bases)
                t0 = time.perf_counter()
                try:
                    async with session.post(base + "/api/v2/orders", data=to_query(params).encode(),
                                            headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                        await r.read()
                        if r.status != 201:
                            errors += 1
                            continue
                except aiohttp.ClientError:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t0)

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:
            await asyncio.gather(*(client(k, session) for k in range(conc)))
        q.put((lat, errors))

    asyncio.run(main())


def spawn_node(cfg: Path, key_file: Path, name: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "--key-file", str(key_file),
                                 "--node", name, "serve"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


async def run(nodes: dict[str, list[str]], args: argparse.Namespace) -> tuple[float, float, float, int]:
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
        bases = [f"http://127.0.0.1:{p}" for p in ports.values()]
        markets = [m for ms in nodes.values() for m in ms]
        q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        t0 = time.perf_counter()
        workers = [mp.Process(target=load_worker, args=(bases, markets, keys[i::args.clients], args.seconds,
                                                       args.concurrency, i, q)) for i in range(args.clients)]
        for w in workers:
            w.start()
        lat: list[float] = []
        errors = 0
        for _ in workers:
            lt, er = await asyncio.to_thread(q.get)
            lat += lt
            errors += er
        elapsed = time.perf_counter() - t0
        for w in workers:
            w.join()
        lat.sort()
        p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
        p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else 0.0
        return len(lat) / elapsed, p50, p99, errors
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        await drop_db(url)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=2, help="load generator processes")
    ap.add_argument("--concurrency", type=int, default=32, help="connections per load generator")
    ap.add_argument("--members", type=int, default=300)
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()} (nodes and load generators share them)")
    one = await run({"n1": ["btcusd", "ltcbtc"]}, args)
    print(f"1 node  x 2 markets: {one[0]:,.0f} orders/s, p50 {one[1]:.1f} ms, p99 {one[2]:.1f} ms, errors {one[3]}")
    three = await run({"n1": ["btcusd", "ltcbtc"], "n2": ["dogebtc", "ltcusd"], "n3": ["dogeusd", "dogeltc"]}, args)
    print(f"3 nodes x 2 markets: {three[0]:,.0f} orders/s, p50 {three[1]:.1f} ms, p99 {three[2]:.1f} ms, errors {three[3]}")
    print(f"scaling 1 -> 3 nodes: {three[0] / one[0]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
