"""Websocket fan-out benchmark: N clients on loopback subscribed to one market while it trades.

    python bench/bench_ws.py [--clients 1000] [--procs 2] [--seconds 10] [--rate 50]

The node (store, actors, web app with the hub) runs in this process on uvloop; the clients run in
`--procs` other processes, each a lean asyncio websocket client (handshake, unmasked frame parser,
pong) so that the load generator costs little next to the server. Orders go straight to the node's
exchange object (no HTTP), so what is measured is matching → events → frames → sockets.

Phase 1, latency: `--rate` taker orders per second, one trade each, clients subscribed to `trades`.
For every trade: time from its publication on the event bus (right after its commit) to the moment the
*last* of the N clients received it; p50 / p99 / max over the trades. (Also from the trade's
`created_at`, stamped before the commit, in ms.)

Phase 2, throughput: clients also subscribe to `depth` and `ticker`; orders are sent as fast as the
node takes them; messages/s = websocket messages received by all clients per second.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- client process -------------------------------------------------------------------------------------
def _masked(obj: Any) -> bytes:
    payload = orjson.dumps(obj)
    mask = os.urandom(4)
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Stats:
    def __init__(self) -> None:
        self.frames = 0
        self.last: dict[int, float] = {}  # trade id -> latest receive time over this process' clients
        self.seen: dict[int, int] = {}  # trade id -> how many clients got it
        self.ready = 0
        self.parse = True  # phase 2 only counts frames: the clients must cost less than the server
        self.all_ready = asyncio.Event()
        self.expected = 0


class BenchClient(asyncio.Protocol):
    def __init__(self, stats: Stats, subscribe: bytes) -> None:
        self.stats = stats
        self.subscribe = subscribe
        self.buf = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is no asyncio.Transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            self.upgraded = True
            buf = buf[end + 4:]
            assert self.transport is not None
            self.transport.write(self.subscribe)
            self.stats.ready += 1
            if self.stats.ready == self.stats.expected:
                self.stats.all_ready.set()
        st = self.stats
        i, n = 0, len(buf)
        while n - i >= 2:
            ln = buf[i + 1] & 0x7F
            h = 2
            if ln == 126:
                if n - i < 4:
                    break
                ln, h = int.from_bytes(buf[i + 2:i + 4], "big"), 4
            elif ln == 127:
                if n - i < 10:
                    break
                ln, h = int.from_bytes(buf[i + 2:i + 10], "big"), 10
            if n - i < h + ln:
                break
            op = buf[i] & 0x0F
            start = i + h
            i = start + ln
            st.frames += 1
            if op == 9:  # ping -> pong
                assert self.transport is not None
                self.transport.write(b"\x8a\x80\x00\x00\x00\x00")
            elif st.parse and buf.startswith(b'{"trades"', start):
                for t in orjson.loads(buf[start:i])["trades"]["trades"]:
                    tid = t["id"]
                    st.last[tid] = now
                    st.seen[tid] = st.seen.get(tid, 0) + 1
        self.buf = buf[i:] if i < n else b""


async def client_main(port: int, clients: int, channels: list[str]) -> None:
    _raise_fd_limit()
    loop = asyncio.get_running_loop()
    stats = Stats()
    stats.expected = clients
    sub = _masked({"subscribe": {"market": "btcusd", "channels": channels}})
    transports = []
    for _ in range(clients):
        t, _p = await loop.create_connection(lambda: BenchClient(stats, sub), "127.0.0.1", port)
        transports.append(t)
    await stats.all_ready.wait()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": clients}), flush=True)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "mark":
            print(json.dumps({"t": time.time(), "frames": stats.frames}), flush=True)
        elif line == "count":
            stats.parse = False
            print(json.dumps({"ok": True}), flush=True)
        elif line.startswith("subscribe "):
            more = _masked({"subscribe": {"market": "btcusd", "channels": line.split()[1:]}})
            for t in transports:
                t.write(more)
            print(json.dumps({"ok": True}), flush=True)
        elif line in ("stop", ""):
            print(json.dumps({"last": stats.last, "seen": stats.seen, "frames": stats.frames}), flush=True)
            for t in transports:
                t.close()
            return


# -- server side ----------------------------------------------------------------------------------------
class ClientProc:
    def __init__(self, port: int, clients: int, channels: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--client", str(port), str(clients), *channels],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    async def ask(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        out: str = await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)
        return json.loads(out)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def server_main(args: argparse.Namespace) -> None:
    from aiohttp import web

    from node.bootstrap import start_exchange, web_app
    from node.errors import ExchangeError
    from node.exchange import OrderInput
    from node.web.ws import HUB
    from tests.conftest import config_with

    _raise_fd_limit()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ws_"))
    config = config_with(f"sqlite:///{tmp}/exchange.db")
    config = dataclasses.replace(config, sqlite_synchronous=args.synchronous,  # every client is on loopback
                                 http=dataclasses.replace(config.http, ws_max_per_ip=args.clients + 10))
    ex = await start_exchange(config)
    app = web_app(ex, key_file=tmp / "secret.key")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    published: dict[int, float] = {}
    created: dict[int, int] = {}

    def on_event(topic: str, event: dict[str, Any]) -> None:
        if topic == "market.btcusd":  # one envelope per matching batch
            for t in event["trades"]:
                published[t["id"]] = time.time()
                created[t["id"]] = t["created_at"]

    ex.bus.subscribe(on_event)
    maker = await ex.create_member("maker@bench")
    taker = await ex.create_member("taker@bench")
    await ex.deposit(maker, "btc", "100000")
    await ex.deposit(taker, "usd", "100000000000")
    await ex.submit_order(maker, OrderInput("btcusd", "sell", "50000", "30000"))

    per = args.clients // args.procs
    procs = [ClientProc(port, per, ["trades"]) for _ in range(args.procs)]
    t0 = time.monotonic()
    for p in procs:
        await p.ask("")
    n_clients = per * args.procs
    print(f"{n_clients} clients connected and subscribed in {time.monotonic() - t0:.1f} s "
          f"({args.procs} client processes)", flush=True)

    # phase 1: latency at a steady trade rate
    first_id = None
    interval = 1 / args.rate
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < args.seconds:
        o = await ex.submit_order(taker, OrderInput("btcusd", "buy", "0.0001", "30000"))
        if first_id is None:
            first_id = o["id"]
        n += 1
        await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
    await ex.quiesce()
    await asyncio.sleep(1.0)
    lat_ids = sorted(published)
    # phase 2: throughput with more channels, orders as fast as the node takes them
    for p in procs:
        await p.ask("count")
        await p.ask("subscribe depth ticker")
    marks0 = [await p.ask("mark") for p in procs]
    sent = 0
    stop_at = time.monotonic() + args.seconds

    async def pump() -> None:
        nonlocal sent
        while time.monotonic() < stop_at:
            try:
                await ex.submit_order(taker, OrderInput("btcusd", "buy", "0.0001", "30000"))
                sent += 1
            except ExchangeError:
                await asyncio.sleep(0.001)

    await asyncio.gather(*(pump() for _ in range(args.pumps)))
    await ex.quiesce()
    await asyncio.sleep(0.5)
    marks1 = [await p.ask("mark") for p in procs]
    results = [await p.ask("stop") for p in procs]
    for p in procs:
        p.proc.wait(10)
    hub = app[HUB]
    await runner.cleanup()
    await ex.stop()

    last: dict[int, float] = {}
    seen: dict[int, int] = {}
    for r in results:
        for k, v in r["last"].items():
            last[int(k)] = max(last.get(int(k), 0.0), v)
        for k, v in r["seen"].items():
            seen[int(k)] = seen.get(int(k), 0) + v
    lats = [(last[i] - published[i]) * 1000 for i in lat_ids if seen.get(i) == n_clients]
    lats_c = [last[i] * 1000 - created[i] for i in lat_ids if seen.get(i) == n_clients]
    missing = sum(1 for i in lat_ids if seen.get(i, 0) != n_clients)
    frames = sum(m1["frames"] - m0["frames"] for m0, m1 in zip(marks0, marks1, strict=True))
    span = max(m["t"] for m in marks1) - min(m["t"] for m in marks0)
    print(f"phase 1: {len(lat_ids)} trades at {args.rate}/s, each delivered to all {n_clients} clients"
          f"{f' (except {missing})' if missing else ''}")
    if lats:
        print(f"  trade published -> last client received: p50 {statistics.median(lats):.1f} ms, "
              f"p99 {pct(lats, 0.99):.1f} ms, max {max(lats):.1f} ms")
        print(f"  trade created_at -> last client received: p50 {statistics.median(lats_c):.1f} ms, "
              f"p99 {pct(lats_c, 0.99):.1f} ms")
    print(f"phase 2: {sent} orders in {args.seconds} s ({sent / args.seconds:.0f} trades/s), "
          f"{frames} messages delivered in {span:.1f} s: {frames / span:,.0f} messages/s "
          f"(hub: {hub.stats['writes']} socket writes, {hub.stats['drains']} drains, "
          f"{hub.stats['dropped_slow']} slow drops, {hub.stats['fanout_ns'] / 1e6 / max(hub.stats['drains'], 1):.2f} ms "
          "of fan-out per drain)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, clients, channels = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
        try:
            import uvloop

            uvloop.run(client_main(port, clients, channels))
        except ImportError:
            asyncio.run(client_main(port, clients, channels))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    ap.add_argument("--rate", type=float, default=50.0, help="trades per second in the latency phase")
    ap.add_argument("--pumps", type=int, default=32, help="concurrent order senders in the throughput phase")
    ap.add_argument("--synchronous", default="normal", help="SQLite synchronous mode of the bench store")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.run(server_main(args))
    except ImportError:
        asyncio.run(server_main(args))


if __name__ == "__main__":
    main()
