"""Signed `POST /api/v2/orders`: the node's user-space instructions per order, under callgrind.

On a shared machine CPU time per order moves with the neighbours' load (their processes take the
node's caches and cores) far more than a small change of the code does; the number of instructions
the node runs for an order hardly moves at all. So this runs the node (`python -m node serve`,
SQLite FULL, as bench_api.py) under valgrind's callgrind with instrumentation off, warms it up,
and counts only while `--orders` signed orders go through `--connections` keep-alive connections
(signed in chunks just before they are sent, each tonce well inside its window). Every thread of
the node is counted (the event loop and the SQLite writer); kernel work (syscalls, fsync) is not.
Compare two builds by running this in each worktree, in turns. With `--depth N`, the same for N
public `GET /api/v2/depth?market=btcusd` (after the warm-up's orders have made a book) instead of
orders. With `--postgres`, the node's store is a fresh PostgreSQL database (made through the
`--pg-url` server, dropped afterwards) instead of SQLite: the instructions of the PostgreSQL path.

    python bench/bench_api_instructions.py [--orders 2000] [--connections 32] [--depth 2000] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_api as b  # noqa: E402
from leanhttp import Conn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 400  # orders signed at a time: under callgrind the node serves a few dozen a second


async def send(port: int, bodies: list[str], connections: int) -> dict[int, int]:
    """Every body once, over `connections` connections each sending its next when answered."""
    conns = [await Conn.open("127.0.0.1", port) for _ in range(connections)]
    todo = iter(bodies)
    statuses: dict[int, int] = {}

    async def worker(c: Conn) -> None:
        for body in todo:
            status, _ = await c.exchange(b._request_bytes(f"127.0.0.1:{port}", body))
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        c.close()
    return statuses


async def get_depth(port: int, n: int, connections: int) -> dict[int, int]:
    """`n` depth requests over `connections` keep-alive connections."""
    request = f"GET {b.DEPTH_URL} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    conns = [await Conn.open("127.0.0.1", port) for _ in range(connections)]
    todo = iter(range(n))
    statuses: dict[int, int] = {}

    async def worker(c: Conn) -> None:
        for _ in todo:
            status, _ = await c.exchange(request)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        c.close()
    return statuses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--depth", type=int, default=0, help="count this many GET /depth instead of orders")
    ap.add_argument("--postgres", action="store_true", help="the node on a fresh PostgreSQL database")
    ap.add_argument("--pg-url", default=os.environ.get("EXCHANGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
                    help="the PostgreSQL server to make it on (an admin connection)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench_api_instructions needs valgrind (apt-get install valgrind)")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_api_cg_"))
    database = f"bench_api_cg_{os.getpid()}" if args.postgres else None
    try:
        port = b.free_port()
        if database:
            asyncio.run(ddl(args.pg_url, f"CREATE DATABASE {database}"))
        config = b.write_config(tmp, port, database and args.pg_url.rsplit("/", 1)[0] + "/" + database)
        key_file = tmp / "secret.key"
        keys = asyncio.run(b.make_members(config, key_file, args.keys))
        out = tmp / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
               "-m", "node", "--config", str(config), "--key-file", str(key_file), "serve", "--port", str(port)]
        with open(tmp / "node.log", "ab") as log:
            node = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=log,
                                    stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/timestamp", timeout=5):
                    break
            except OSError:
                if node.poll() is not None or time.monotonic() > deadline:
                    print(f"the node did not come up: {(tmp / 'node.log').read_text()[-2000:]}")
                    return 1
                time.sleep(1)
        gen = b.Orders(keys, seed=7)
        asyncio.run(send(port, [gen.body(i) for i in range(CHUNK)], args.connections))  # warm-up, not counted
        if args.depth:
            asyncio.run(get_depth(port, 300, args.connections))
        subprocess.run(["callgrind_control", "-i", "on", str(node.pid)], check=True, capture_output=True)
        statuses: dict[int, int] = {}
        if args.depth:
            statuses = asyncio.run(get_depth(port, args.depth, args.connections))
        for start in range(0, 0 if args.depth else args.orders, CHUNK):
            bodies = [gen.body(CHUNK + start + i) for i in range(min(CHUNK, args.orders - start))]
            for status, n in asyncio.run(send(port, bodies, args.connections)).items():
                statuses[status] = statuses.get(status, 0) + n
        subprocess.run(["callgrind_control", "-i", "off", str(node.pid)], check=True, capture_output=True)
        b.stop(node)
        total = 0
        for path in glob.glob(f"{out}*"):
            for line in open(path):
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        if args.depth:
            ok = statuses.get(200, 0)
            print(f"public GET /depth: {ok} answered of {args.depth} ({statuses}), {args.connections} connections; "
                  f"node user-space instructions {total:,}, {total / max(ok, 1):,.0f} per request")
            return 0
        ok = statuses.get(201, 0)
        print(f"signed POST /orders{' on PostgreSQL' if database else ''}: {ok} accepted of {args.orders} ({statuses}), {args.connections} connections; "
              f"node user-space instructions {total:,}, {total / max(ok, 1):,.0f} per order")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if database:
            asyncio.run(ddl(args.pg_url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))


async def ddl(admin: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
