"""API v2 over real HTTP on loopback: signed `POST /orders` and public `GET /depth`.

The node runs as its own process (`python -m node serve`, SQLite with synchronous=FULL: every
acknowledged order is durable), the load generator in other processes:

1. signed orders, throughput: `wrk` (Debian's) replays requests signed beforehand by this script
   (wrk's LuaJIT has no HMAC; each request has its own tonce, valid for ±30 s, so they are signed
   just before the run, and each is sent once). Several connections over several keys.
2. signed orders, latency at a fixed rate (2,500/s, half the 5,000/s target, by default; and at half
   the throughput measured in 1. when that is lower): an open-loop asyncio
   client in a separate process sends at a steady rate and measures each answer from the moment
   the request was *due*, so a stall is not hidden (no coordinated omission).
3. public depth: `wrk` on `GET /api/v2/depth?market=btcusd`.
4. the ceiling: an aiohttp + uvloop hello-world, in a process of its own, under the same wrk
   settings in the same run: plain text, and a JSON body as large as /depth's answer. Our rates are
   printed as fractions of its rates (orders ÷ plain text, /depth ÷ JSON), which, unlike raw
   rates, hardly depend on what else the machine is running.
5. with `--postgres`, phase 1 again on PostgreSQL (a fresh database on `--pg-url`'s server),
   printed as a fraction of SQLite's rate and CPU per order, with the CPU per order of the
   PostgreSQL backends serving the node (from /proc: the server must run on this machine).

wrk is required (`apt-get install wrk`): the ceilings are its numbers. Prints requests/s and
p50/p99 for each phase, the node's CPU time per request (which, unlike throughput, does not depend
on what else the machine is running), and at the end the ratios to the ceilings.

    python bench/bench_api.py [--duration 10] [--connections 64] [--keys 8] [--rate 2500] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leanhttp import Pool, post_form  # noqa: E402

from node.web.signature import payload, sign, to_query  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ORDER_PATH = "/api/v2/orders"
DEPTH_URL = "/api/v2/depth?market=btcusd"
MID = 30_000  # btcusd mid price, in dollars; orders are spread over 40 levels each side of it

LUA = r"""
-- Replays pre-signed POST /orders bodies: thread i takes lines i, i+n, i+2n... of the file, and
-- sends each once; status codes are counted so the report shows what was accepted.
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local n = tonumber(args[2])
  bodies = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % n == id then table.insert(bodies, line) end
    i = i + 1
  end
  pos = 0
  ok = 0
  refused = 0
  statuses = {}
end
function request()
  pos = pos + 1
  if pos > #bodies then
    wrk.thread:stop()
    pos = #bodies
  end
  return wrk.format("POST", "/api/v2/orders", {["Content-Type"] = "application/x-www-form-urlencoded"}, bodies[pos])
end
function response(status, headers, body)
  if status == 201 then ok = ok + 1 else refused = refused + 1 end
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total_ok, total_refused = 0, 0
  local all = {}
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_refused = total_refused + t:get("refused")
    for k, v in pairs(t:get("statuses")) do all[k] = (all[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(all) do table.insert(parts, string.format('"%d": %d', k, v)) end
  io.write(string.format('RESULT {"ok": %d, "refused": %d, "statuses": {%s}}\n', total_ok, total_refused,
    table.concat(parts, ", ")))
end
"""


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")


# ------------------------------------------------------------------------------------- the ceiling
def hello_main(port: int) -> None:
    """An aiohttp + uvloop hello-world: the most this machine's aiohttp serves, to divide by.

    `GET /plain` answers 13 bytes of text; `GET /json` a JSON body whose size `PUT /size?n=` sets
    (built once, served as bytes: the ceiling of serving a cached /depth answer). No middleware,
    no access log, like the node."""
    import orjson
    import uvloop
    from aiohttp import web

    body = {"json": orjson.dumps({"pad": ""})}

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")

    async def json_body(request: web.Request) -> web.Response:
        return web.Response(body=body["json"], content_type="application/json")

    async def size(request: web.Request) -> web.Response:
        n = int(request.query["n"])
        body["json"] = orjson.dumps({"pad": "x" * max(0, n - len(b'{"pad":""}'))})
        return web.Response(text=str(len(body["json"])))

    app = web.Application()
    app.router.add_get("/plain", plain)
    app.router.add_get("/json", json_body)
    app.router.add_put("/size", size)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def start_hello(port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-hello", str(port)]
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hello-world exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/plain", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("hello-world did not come up")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


# -------------------------------------------------------------------------------------------- set-up
def write_config(tmp: Path, port: int, database: str | None = None) -> Path:
    text = (ROOT / "cluster.toml").read_text()
    text = text.replace('database = "sqlite:///var/exchange.db"', f'database = "{database or f"sqlite:///{tmp}/exchange.db"}"')
    text = text.replace("port = 8080", f"port = {port}")
    text = re.sub(r"mailbox_size = \d+", "mailbox_size = 100000", text)
    text += "\n[api]\nsigned_limit = 100000000\npublic_limit = 100000000\n"
    path = tmp / ("cluster-pg.toml" if database else "cluster.toml")
    path.write_text(text)
    return path


async def make_members(config: Path, key_file: Path, n: int) -> list[tuple[str, str]]:
    """Members with ample funds and an API key each, created before the node starts."""
    from node.apikeys import ApiKeys
    from node.bootstrap import start_exchange
    from node.config import load_config
    from node.secrets_box import SecretBox, load_server_key

    ex = await start_exchange(load_config(config), actors=False)
    try:
        keys = ApiKeys(ex.store, SecretBox(load_server_key(key_file), "api-secret"))
        out = []
        for i in range(n):
            mid = await ex.create_member(f"bench{i}@example.com")
            await ex.deposit(mid, "usd", "100000000000")
            await ex.deposit(mid, "btc", "10000000")
            out.append(await keys.create(mid, "bench", now=int(time.time() * 1000)))
        return out
    finally:
        await ex.stop()


def start_node(config: Path, key_file: Path, port: int, log: Path,
               switch_interval: float | None = None) -> subprocess.Popen[bytes]:
    """`python -m node serve`; with `switch_interval`, the interpreter's GIL switch interval is set
    first (CPython's default, 5 ms, makes the SQLite worker threads wait for the GIL behind a busy
    event loop: every statement of a transaction is a thread hop)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = [sys.executable, "-m", "node"]
    if switch_interval is not None:
        run = [sys.executable, "-c", f"import runpy, sys; sys.setswitchinterval({switch_interval!r}); "
               "runpy.run_module('node', run_name='__main__', alter_sys=True)"]
    cmd = [*run, "--config", str(config), "--key-file", str(key_file), "serve", "--port", str(port)]
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/timestamp", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("node did not come up")


class Orders:
    """Signed order bodies: random sides and prices around the mid, unique tonces per key."""

    def __init__(self, keys: list[tuple[str, str]], seed: int = 1) -> None:
        self.keys = keys
        self.rng = random.Random(seed)
        now = time.time_ns() // 1_000_000
        self.tonces = [now] * len(keys)

    def body(self, i: int) -> str:
        k = i % len(self.keys)
        access, secret = self.keys[k]
        self.tonces[k] = max(self.tonces[k] + 1, time.time_ns() // 1_000_000)
        side = "buy" if self.rng.random() < 0.5 else "sell"
        offset = self.rng.randint(0, 40) * (-1 if side == "buy" else 1) + self.rng.randint(-3, 3)
        params = {"market": "btcusd", "side": side, "volume": f"0.{self.rng.randint(1, 99):04d}",
                  "price": str(MID + offset), "access_key": access, "tonce": str(self.tonces[k])}
        params["signature"] = sign(secret, payload("POST", ORDER_PATH, params))
        return to_query(params)


# ------------------------------------------------------------------------------------- load: wrk
def run_wrk(url: str, duration: int, connections: int, threads: int, script: Path | None = None,
            args: list[str] | None = None) -> dict[str, Any]:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "--timeout", "10s"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd += [url]
    if args:
        cmd += ["--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120).stdout
    res: dict[str, Any] = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            res[f"p{q}"] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    m = re.search(r"RESULT (\{.*\})", out)
    if m:
        res.update(json.loads(m.group(1)))
    m = re.search(r"(\d+) requests in ([\d.]+)(s|m)", out)
    if m:
        res["requests"], res["elapsed"] = int(m.group(1)), float(m.group(2)) * (60 if m.group(3) == "m" else 1)
    return res


def wrk_orders(base: str, keys: list[tuple[str, str]], duration: int, connections: int, threads: int,
               tmp: Path, budget_rps: int) -> dict[str, Any]:
    """Sign enough bodies for `duration` at up to `budget_rps`, then let wrk send them all."""
    n = duration * budget_rps
    gen = Orders(keys, seed=7)
    t0 = time.monotonic()
    bodies = tmp / "orders.txt"
    with open(bodies, "w") as f:
        for i in range(n):
            f.write(gen.body(i) + "\n")
    signing = time.monotonic() - t0
    if signing + duration > 25:
        print(f"  warning: signing took {signing:.1f} s; the last tonces may fall out of the ±30 s window")
    script = tmp / "orders.lua"
    script.write_text(LUA)
    res = run_wrk(base + ORDER_PATH, duration, connections, threads, script, [str(bodies), str(threads)])
    ok = int(res.get("ok", 0))
    res["ok_rps"] = ok / res["elapsed"] if res.get("elapsed") else 0.0
    return res


# ----------------------------------------------------------------------- load: a lean asyncio client
def _request_bytes(host: str, body: str) -> bytes:
    return post_form(host, ORDER_PATH, body.encode())


def _client_proc(base: str, keys: list[tuple[str, str]], rate: float, duration: float, seed: int,
                 conn: Any, client: str = "asyncio") -> None:
    """One load-generator process: open loop at `rate` req/s (or closed loop as fast as possible
    when rate is 0), latencies measured from each request's due time.

    Plain asyncio streams, with the open loop's requests signed just before the run (each tonce
    stays well inside the ±30 s window): a full HTTP client such as aiohttp's costs several times
    the CPU per request, on the same two cores as the node, and its own queueing would then be
    counted as the server's latency. `client="aiohttp"` sends the same requests through aiohttp's
    client instead, to compare.
    """
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    hostport = base.split("://", 1)[1]
    host, port = hostport.rsplit(":", 1)

    async def main() -> tuple[list[float], dict[int, int]]:
        gen = Orders(keys, seed)
        lat: list[float] = []
        statuses: dict[int, int] = {}
        pool = Pool()
        session = None
        if client == "aiohttp":
            import aiohttp
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        form = {"Content-Type": "application/x-www-form-urlencoded"}

        async def one(request: bytes, due: float) -> None:
            if session is not None:
                async with session.post(base + ORDER_PATH, data=request.split(b"\r\n\r\n", 1)[1], headers=form) as r:
                    await r.read()
                    status = r.status
            else:
                try:
                    status, _ = await pool.exchange(host, int(port), request)
                except (OSError, RuntimeError, asyncio.IncompleteReadError):
                    status = 0  # the connection broke (uvloop: RuntimeError): counted, and not reused
            statuses[status] = statuses.get(status, 0) + 1
            lat.append(time.perf_counter() - due)

        if rate > 0:
            requests = [_request_bytes(hostport, gen.body(i)) for i in range(int(rate * duration))]
            start = time.perf_counter()
            tasks = []
            for i, request in enumerate(requests):
                due = start + i / rate
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
                tasks.append(asyncio.create_task(one(request, due)))
            await asyncio.gather(*tasks)
        else:
            start = time.perf_counter()

            async def worker(w: int) -> None:
                j = w
                while time.perf_counter() - start < duration:
                    await one(_request_bytes(hostport, gen.body(j)), time.perf_counter())
                    j += 64
            await asyncio.gather(*(worker(w) for w in range(64)))
        pool.close()
        if session is not None:
            await session.close()
        return lat, statuses

    lat, statuses = asyncio.run(main())
    conn.send((lat, statuses))
    conn.close()


def client_orders(base: str, keys: list[tuple[str, str]], rate: float, duration: float, procs: int,
                  client: str = "asyncio") -> dict[str, Any]:
    """Split the keys (and the rate) over `procs` generator processes; merge their samples."""
    ctx = multiprocessing.get_context("spawn")
    pipes, ps = [], []
    for p in range(procs):
        mine = keys[p::procs]
        a, b = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_client_proc, args=(base, mine, rate / procs, duration, 100 + p, b, client))
        proc.start()
        pipes.append(a)
        ps.append(proc)
    lat: list[float] = []
    statuses: dict[int, int] = {}
    for a in pipes:
        lat_p, st = a.recv()
        lat += lat_p
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    for proc in ps:
        proc.join()
    return {"rps": len(lat) / duration, "ok_rps": statuses.get(201, 0) / duration, "p50": pct(lat, 0.5),
            "p99": pct(lat, 0.99), "statuses": statuses, "requests": len(lat)}


# ------------------------------------------------------------------------------------------- main
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to report the node's CPU cost per request: on a
    shared machine throughput depends on the neighbours, the cost per request does not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def wait_idle(pid: int, timeout: float = 60.0) -> None:
    """Let the node finish what the previous phase queued (matching lags behind acceptance)."""
    deadline = time.monotonic() + timeout
    time.sleep(1)
    while time.monotonic() < deadline:
        c0 = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - c0 < 0.05:
            return


def report(title: str, res: dict[str, Any], tool: str, cpu: float) -> None:
    extra = f", accepted (201) {res['ok_rps']:.0f}/s" if "ok_rps" in res else ""
    statuses = f", statuses {res['statuses']}" if res.get("statuses") else ""
    n = res.get("ok") or (res.get("statuses") or {}).get(201) or res.get("requests") or 0
    per = f", node CPU {cpu / n * 1e6:.0f} us/req" if n and cpu == cpu else ""
    print(f"{title:<40} {res.get('rps', 0):8.0f} req/s{extra}, p50 {res.get('p50', float('nan')):.2f} ms, "
          f"p99 {res.get('p99', float('nan')):.2f} ms{per}  [{tool}]{statuses}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per phase")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--keys", type=int, default=8, help="members (API keys) sending orders")
    ap.add_argument("--rate", type=float, default=2500, help="orders/s of the fixed-rate latency phase")
    ap.add_argument("--budget", type=int, default=12000, help="most orders/s the throughput phase can use")
    ap.add_argument("--procs", type=int, default=2, help="asyncio load-generator processes")
    ap.add_argument("--client", choices=["asyncio", "aiohttp"], default="asyncio",
                    help="the open-loop generator's HTTP client (aiohttp's costs several times the CPU)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="set the node's sys.setswitchinterval (seconds), e.g. 0.0001; default: the node's own")
    ap.add_argument("--postgres", action="store_true", help="also measure signed orders on PostgreSQL")
    ap.add_argument("--pg-url", default=os.environ.get("EXCHANGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
                    help="a PostgreSQL database whose server lets us create (and drop) a scratch database")
    ap.add_argument("--orders-only", action="store_true", help="only the throughput phase and its ceiling")
    ap.add_argument("--serve-hello", type=int, default=None, help=argparse.SUPPRESS)  # the ceiling's own process
    args = ap.parse_args()
    if args.serve_hello is not None:
        hello_main(args.serve_hello)
        return 0

    if shutil.which("wrk") is None:
        print("bench_api needs wrk (apt-get install wrk): the ceilings and rates are wrk's")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_api_"))
    port = args.port or free_port()
    config = write_config(tmp, port)
    key_file = tmp / "secret.key"
    keys = asyncio.run(make_members(config, key_file, args.keys))
    hello_port = free_port()
    hello = start_hello(hello_port, tmp / "hello.log")
    hello_base = f"http://127.0.0.1:{hello_port}"
    node = start_node(config, key_file, port, tmp / "node.log", args.switch_interval)
    base = f"http://127.0.0.1:{port}"
    swi = f"{args.switch_interval * 1000:g} ms" if args.switch_interval is not None else "the node's own"
    print(f"node pid {node.pid} on {base}, SQLite synchronous=FULL at {tmp}/exchange.db; switch interval "
          f"{swi}; {args.keys} keys, {args.connections} connections, {args.threads} wrk threads, {args.duration} s "
          f"per phase; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    summary: list[str] = []
    try:
        c0 = cpu_seconds(hello.pid)
        ceiling = run_wrk(hello_base + "/plain", args.duration, args.connections, args.threads)
        report("ceiling: aiohttp+uvloop hello-world", ceiling, "wrk", cpu_seconds(hello.pid) - c0)
        c0 = cpu_seconds(node.pid)
        res = wrk_orders(base, keys, args.duration, args.connections, args.threads, tmp, args.budget)
        orders_cpu = cpu_seconds(node.pid) - c0
        report("signed POST /orders, max throughput", res, "wrk, pre-signed", orders_cpu)
        best = res.get("ok_rps", 0.0)
        sqlite_cpu_us = orders_cpu / max(1, int(res.get("ok", 0))) * 1e6
        summary.append(f"orders ÷ hello-world (plain text): {best / max(ceiling['rps'], 1):.3f}  "
                       f"({best:.0f} / {ceiling['rps']:.0f} req/s); node CPU {sqlite_cpu_us:.0f} us per order")
        if not args.orders_only:
            rates = ([round(best / 2)] if best and best / 2 < args.rate * 0.9 else []) + [args.rate]
            for rate in rates:
                wait_idle(node.pid)
                c0 = cpu_seconds(node.pid)
                res = client_orders(base, keys, rate, args.duration, args.procs, args.client)
                label = "half the measured max" if rate != args.rate else "fixed rate"
                report(f"signed POST /orders at {rate:.0f}/s", res, f"{args.client} client, open loop, {label}",
                       cpu_seconds(node.pid) - c0)
                summary.append(f"open loop at {rate:.0f}/s ({label}): p50 {res['p50']:.2f} ms, p99 {res['p99']:.2f} ms")
            wait_idle(node.pid)
            answer = urllib.request.urlopen(base + DEPTH_URL, timeout=5).read()
            levels = json.loads(answer)
            c0 = cpu_seconds(node.pid)
            res = run_wrk(base + DEPTH_URL, args.duration, args.connections, args.threads)
            report(f"public GET /depth ({len(levels['asks'])}+{len(levels['bids'])} levels, {len(answer)} B)", res,
                   "wrk", cpu_seconds(node.pid) - c0)
            req = urllib.request.Request(f"{hello_base}/size?n={len(answer)}", method="PUT")
            urllib.request.urlopen(req, timeout=5).read()
            c0 = cpu_seconds(hello.pid)
            json_ceiling = run_wrk(hello_base + "/json", args.duration, args.connections, args.threads)
            report(f"ceiling: hello-world JSON ({len(answer)} B)", json_ceiling, "wrk", cpu_seconds(hello.pid) - c0)
            summary.append(f"/depth ÷ hello-world (JSON of the same size): {res['rps'] / max(json_ceiling['rps'], 1):.3f}  "
                           f"({res['rps']:.0f} / {json_ceiling['rps']:.0f} req/s)")
    finally:
        stop(node)
        stop(hello)
    try:
        if args.postgres:
            pg_rps, pg_cpu_us, server_us = postgres_orders(args, tmp)
            summary.append(f"PostgreSQL ÷ SQLite, signed orders: {pg_rps / max(best, 1):.3f}  ({pg_rps:.0f} / {best:.0f} "
                           f"orders/s); node CPU {pg_cpu_us:.0f} vs {sqlite_cpu_us:.0f} us per order, PostgreSQL's "
                           f"backends {server_us:.0f} us per order")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("-- ratios, same run, same wrk settings" + (" (the machine may be shared: ratios, not rates)"))
    for line in summary:
        print("  " + line)
    return 0


def postgres_orders(args: argparse.Namespace, tmp: Path) -> tuple[float, float, float]:
    """Phase 1 on a fresh PostgreSQL database: (accepted orders/s, node CPU us per order, its
    PostgreSQL backends' CPU us per order)."""
    import asyncpg

    name = f"bench_api_{os.getpid()}"
    admin = args.pg_url

    async def ddl(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def backends() -> list[int]:
        conn = await asyncpg.connect(admin)
        try:
            return [int(r[0]) for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)]
        finally:
            await conn.close()

    asyncio.run(ddl(f"CREATE DATABASE {name}"))
    try:
        port = free_port()
        config = write_config(tmp, port, admin.rsplit("/", 1)[0] + "/" + name)
        key_file = tmp / "secret-pg.key"
        keys = asyncio.run(make_members(config, key_file, args.keys))
        node = start_node(config, key_file, port, tmp / "node-pg.log", args.switch_interval)
        try:
            before = {pid: cpu_seconds(pid) for pid in asyncio.run(backends())}
            c0 = cpu_seconds(node.pid)
            res = wrk_orders(f"http://127.0.0.1:{port}", keys, args.duration, args.connections, args.threads, tmp,
                             args.budget)
            cpu = cpu_seconds(node.pid) - c0
            # the node's sessions, a new one with all its CPU (PostgreSQL must be on this machine)
            server = sum(d for d in (cpu_seconds(pid) - before.get(pid, 0.0) for pid in asyncio.run(backends()))
                         if d == d)  # a session gone meanwhile: nan
            report("signed POST /orders on PostgreSQL", res, "wrk, pre-signed", cpu)
        finally:
            stop(node)
        n = max(1, int(res.get("ok", 0)))
        return res.get("ok_rps", 0.0), cpu / n * 1e6, server / n * 1e6
    finally:
        asyncio.run(ddl(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


if __name__ == "__main__":
    sys.exit(main())
