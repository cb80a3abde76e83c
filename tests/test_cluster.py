"""Two nodes, one exchange: markets on different nodes, orders routed through RabbitMQ, PostgreSQL shared.

Node A runs btcusd and ltcbtc, node B runs dogebtc; members trade dogebtc through node A's API.
Then B is killed (SIGKILL) while orders keep flowing through A, and restarted: every acknowledged
order is there once, no trade is doubled, the books balance.
"""

from __future__ import annotations

import asyncio
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.audit import audit
from node.cluster.rabbit import INTEREST_UNSURE
from node.config import load_config
from node.store import open_store
from tests.apiclient import ApiClient, ApiError
from tests.nodeproc import ROOT, NodeProcess, cli, free_ports
from tests.wsclient import Book, WsClient

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"


def cluster_config(tmp: Path, database: str, port_a: int, port_b: int) -> Path:
    text = (ROOT / "cluster.toml").read_text()
    text = text.replace('database = "sqlite:///var/exchange.db"', f'database = "{database}"\nrabbitmq = "{RABBITMQ}"')
    head, _, _ = text.partition("[nodes.main]")
    _, _, tail = text.partition("[actors]")
    text = head + f"""[nodes.a]
host = "127.0.0.1"
port = {port_a}
markets = ["btcusd", "ltcbtc"]

[nodes.b]
host = "127.0.0.1"
port = {port_b}
markets = ["dogebtc"]

[actors]""" + tail
    path = tmp / "cluster.toml"
    path.write_text(text)
    return path


async def start_two_nodes(tmp: Path, pg_url: str, members: int) -> tuple[Path, list[tuple[str, str]], NodeProcess, NodeProcess]:
    """Config, funded members with API keys, and nodes A (btcusd, ltcbtc) and B (dogebtc) running."""
    pa, pb = free_ports(2)
    config = cluster_config(tmp, pg_url, pa, pb)
    key_file = tmp / "secret.key"
    keys = await make_members(config, key_file, members)
    a = NodeProcess(config, pa, key_file, tmp / "a.log", node="a")
    b = NodeProcess(config, pb, key_file, tmp / "b.log", node="b")
    await b.start()
    await a.start()
    return config, keys, a, b


async def wait_no_pending(config: Path, tries: int = 200) -> int:
    """Wait until every accepted order was matched (through the bus or the pending sweep)."""
    cfg = load_config(config)
    pending = -1
    for _ in range(tries):
        store = await open_store(cfg.database, migrate=False)
        try:
            pending = int(await store.fetchval("SELECT COUNT(*) FROM orders WHERE state = 'pending'"))
        finally:
            await store.close()
        if pending == 0:
            break
        await asyncio.sleep(0.1)
    return pending


async def check_books(config: Path, acked: dict[int, Any] | list[int]) -> dict[int, dict[str, Any]]:
    """Every acknowledged order is stored, no trade is lost or doubled, the books balance."""
    cfg = load_config(config)
    store = await open_store(cfg.database)
    try:
        rows = {int(r["id"]): dict(r) for r in await store.fetch("SELECT * FROM orders")}
        assert not set(acked) - set(rows), "acknowledged orders lost"
        executed: dict[int, int] = {}
        for t in await store.fetch("SELECT * FROM trades"):
            for oid in (int(t["ask_id"]), int(t["bid_id"])):
                executed[oid] = executed.get(oid, 0) + int(t["volume"])
        for oid, r in rows.items():
            assert r["volume"] - r["remaining"] == executed.get(oid, 0), f"order {oid}: a trade was lost or doubled"
        report = await audit(store, cfg.markets)
        assert report.ok, report.lines()
        return rows
    finally:
        await store.close()


async def make_members(config: Path, key_file: Path, n: int) -> list[tuple[str, str]]:
    keys = []
    for i in range(n):
        email = f"c{i}@example.com"
        cli(config, "member", "create", email)
        cli(config, "deposit", email, "btc", "100")
        cli(config, "deposit", email, "doge", "10000000")
        out = cli(config, "apikey", "create", email, key_file=key_file)
        kv = dict(line.split("=", 1) for line in out.strip().splitlines())
        keys.append((kv["access_key"], kv["secret_key"]))
    return keys


@pytest.mark.slow
async def test_orders_through_one_node_match_on_another(tmp_path: Path, pg_url: str) -> None:
    config, keys, a, b = await start_two_nodes(tmp_path, pg_url, 2)
    seller = ApiClient(a.base, *keys[0])
    buyer = ApiClient(a.base, *keys[1])
    session = aiohttp.ClientSession()
    watchers = []
    for node in (a, b):  # a websocket client on each node watches dogebtc's public trades
        ws = await session.ws_connect(node.base.replace("http", "ws") + "/ws")
        await ws.send_json({"subscribe": {"market": "dogebtc", "channels": ["trades"]}})
        watchers.append(ws)
    try:
        # the buyer follows its balances through node A; its dogebtc trade settles on node B
        wallet = WsClient(ws=await session.ws_connect(a.base.replace("http", "ws") + "/ws"))
        wallet.start()
        await wallet.wait(lambda f: "challenge" in f)
        assert "success" in await wallet.auth(*keys[1], legacy=False)
        await wallet.command({"subscribe": {"channels": ["account"]}}, "subscribed")
        await wallet.wait(lambda f: "account" in f and f["account"]["currency"] == "doge")
        ask = await seller.post("/orders", market="dogebtc", side="sell", volume="1000", price="0.0000025")
        # Signed answers name the node of the member's account shard, the same through either node
        # (each learns the other's shards from the leases within a tick); public ones name none.
        homes = [await shard_node(api, a.base, b.base) for api in (seller, buyer)]
        assert sorted(homes) == ["a", "b"]  # members 1 and 2: shards 1 and 2 of 4, one on each node
        await seller.public("/timestamp")
        assert "X-Shard-Node" not in seller.headers
        depth = await buyer.public("/depth", market="dogebtc")  # asked of node B through the bus
        assert depth["asks"] == [["0.0000025", "1000.0"]]
        bid = await buyer.post("/orders", market="dogebtc", side="buy", volume="400", price="0.0000026")
        for _ in range(100):
            o = await buyer.get("/order", id=str(bid["id"]))
            if o["state"] == "done":
                break
            await asyncio.sleep(0.05)
        assert o["state"] == "done" and o["trades"][0]["price"] == "0.0000025"
        cancelled = await seller.post("/order/delete", id=str(ask["id"]))  # a cancel, answered by B
        assert cancelled["id"] == ask["id"]
        o = await seller.get("/order", id=str(ask["id"]))
        assert o["state"] == "cancel" and o["remaining_volume"] == "600.0"
        # The same trade is visible through node B.
        trades = await ApiClient(b.base).public("/trades", market="dogebtc")
        assert [t["volume"] for t in trades] == ["400.0"]
        # B's account events for the buyer reached A, which follows them for its websocket client
        doge = await wallet.wait(lambda f: "account" in f and f["account"]["currency"] == "doge"
                                 and Decimal(f["account"]["balance"]) > 10_000_000)
        assert Decimal(doge["account"]["balance"]) < 10_000_400  # 400 bought, less the fee
        await wallet.close()
        for ws in watchers:  # and streamed live by both nodes
            seen: list[str] = []
            while not seen:
                msg = await asyncio.wait_for(ws.receive_json(), 10)
                frame = msg.get("trades")
                if frame and not frame.get("snapshot"):
                    seen = [t["volume"] for t in frame["trades"]]
            assert seen == ["400.0"]
    finally:
        for ws in watchers:
            await ws.close()
        await session.close()
        await seller.close()
        await buyer.close()
        a.terminate()
        b.terminate()
    await check_books(config, [])


async def shard_node(api: ApiClient, *bases: str) -> str:
    """The `X-Shard-Node` that every node answers the member with, once they all agree."""
    seen: list[str | None] = []
    home = api.base
    for _ in range(50):
        seen = []
        for base in bases:  # one client, so that its tonces keep increasing
            api.base = base
            await api.get("/members/me")
            seen.append(api.headers.get("X-Shard-Node"))
        api.base = home
        if seen[0] is not None and len(set(seen)) == 1:
            return seen[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the nodes never agreed on the member's shard node: {seen}")


async def flow(api: ApiClient, rng: random.Random, acked: dict[int, dict[str, str]], stop: asyncio.Event) -> None:
    """A client sending random dogebtc orders through node A until told to stop."""
    while not stop.is_set():
        params = {"market": "dogebtc", "side": rng.choice(["buy", "sell"]), "volume": str(rng.randint(1, 500)),
                  "price": f"0.00000{rng.randint(240, 260)}"}
        try:
            o = await api.post("/orders", **params)
            acked[o["id"]] = params
        except ApiError as e:
            assert e.status in (400, 503, 504), e  # a refused or unavailable order: not acknowledged
            await asyncio.sleep(0.02)
        except (TimeoutError, aiohttp.ClientError):
            await asyncio.sleep(0.05)


class Flow:
    """Clients (one per key) sending random dogebtc orders through one node until stopped;
    `acked` holds every acknowledged order."""

    def __init__(self, base: str, keys: list[tuple[str, str]], seed: int) -> None:
        self.acked: dict[int, dict[str, str]] = {}
        self.apis = [ApiClient(base, *k) for k in keys]
        self._stop = asyncio.Event()
        rng = random.Random(seed)
        self._tasks = [asyncio.create_task(flow(api, random.Random(rng.random()), self.acked, self._stop))
                       for api in self.apis]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for api in self.apis:
            await api.close()


async def still_matches(apis: list[ApiClient], why: str) -> None:
    """A crossing dogebtc pair placed now is processed at once (matched, or cancelled by self-trade
    prevention), not minutes later by the pending sweep."""
    await apis[1].post("/orders", market="dogebtc", side="buy", volume="1", price="0.0000030")
    sell = await apis[0].post("/orders", market="dogebtc", side="sell", volume="1", price="0.0000001")
    state = None
    for _ in range(50):
        state = (await apis[0].get("/order", id=str(sell["id"])))["state"]
        if state in ("done", "cancel"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{why} (order {sell['id']} is {state})")


@pytest.mark.slow
async def test_killing_the_owner_loses_no_acknowledged_order(tmp_path: Path, pg_url: str) -> None:
    config, keys, a, b = await start_two_nodes(tmp_path, pg_url, 4)
    traffic = Flow(a.base, keys, seed=5)
    try:
        await asyncio.sleep(1.5)
        b.kill()  # orders keep being accepted by A: they wait in B's durable queue
        await asyncio.sleep(1.0)
        await b.start()
        await asyncio.sleep(1.5)
        await traffic.stop()
        assert await wait_no_pending(config) == 0  # everything acknowledged got matched
    finally:
        await traffic.close()
        a.terminate()
        b.terminate()
    assert len(traffic.acked) > 50
    await check_books(config, traffic.acked)


@pytest.mark.slow
async def test_broker_connections_closed_during_trading_lose_nothing(tmp_path: Path, pg_url: str) -> None:
    """`rabbitmqctl close_all_connections` while orders flow: the nodes reconnect; all acknowledged
    orders are matched exactly once (the pending sweep covers what the bus dropped)."""
    import shutil
    import subprocess

    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed here")
    config, keys, a, b = await start_two_nodes(tmp_path, pg_url, 4)
    traffic = Flow(a.base, keys, seed=9)
    try:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "close_all_connections", "test: broker restart"],
                                check=True, capture_output=True, timeout=60)
        await asyncio.sleep(2.0)
        await traffic.stop()
        assert await wait_no_pending(config) == 0
        for node in (a, b):  # both nodes report their link back
            for _ in range(100):
                async with aiohttp.ClientSession() as s, s.get(node.base + "/ops/status") as r:
                    if (await r.json())["bus"]["connected"]:
                        break
                await asyncio.sleep(0.1)
        # The link is back: new orders reach B through its queue at once (the sweep would take >5 s).
        await still_matches(traffic.apis, "the consumer did not come back after the reconnection")
    finally:
        await traffic.close()
        a.terminate()
        b.terminate()
    assert len(traffic.acked) > 50
    await check_books(config, traffic.acked)


@pytest.mark.slow
async def test_moving_a_market_loses_and_reorders_nothing(tmp_path: Path, pg_url: str) -> None:
    """dogebtc moves from B to A while a client keeps submitting: every order arrives, in order."""
    config, [keys], a, b = await start_two_nodes(tmp_path, pg_url, 1)
    api = ApiClient(a.base, *keys)
    sent: list[int] = []
    stop = asyncio.Event()

    async def submit_in_sequence() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:  # one at a time: each order is sent after the previous one was acknowledged
                o = await api.post("/orders", market="dogebtc", side="sell", volume="1",
                                   price=f"0.000{10_000 + i % 50:05d}")
                sent.append(o["id"])
            except ApiError as e:
                assert e.status in (503, 504), e
                await asyncio.sleep(0.01)

    task = asyncio.create_task(submit_in_sequence())
    try:
        await asyncio.sleep(1.0)
        move = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node", "--config", str(config), "market", "move", "dogebtc",
            "--to", "a", cwd=str(ROOT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await move.communicate()
        assert move.returncode == 0, out.decode()
        assert b"now runs on node a" in out
        await asyncio.sleep(1.0)
        stop.set()
        await task
        status = await ApiClient(a.base).session.get(a.base + "/ops/status")
        st = await status.json()
        assert "dogebtc" in st["markets"]
        st_b = await (await ApiClient(b.base).session.get(b.base + "/ops/status")).json()
        assert "dogebtc" not in st_b["markets"]
    finally:
        await api.close()
        a.terminate()
        b.terminate()
    assert len(sent) > 30
    rows = await check_books(config, sent)
    assert all(rows[i]["state"] == "wait" for i in sent), "an order was not taken into the book"
    seqs = [rows[i]["seq"] for i in sent]
    assert seqs == sorted(seqs), "orders were taken in a different order than they were sent"


@pytest.mark.slow
async def test_peatio_orderbook_stream_on_another_node_knows_older_orders(tmp_path: Path, pg_url: str) -> None:
    """An order resting on B's market before A started: when it is cancelled, a Peatio client of A's
    `orderbook` stream is told to remove it (A asked B for the resting orders when it started)."""
    pa, pb = free_ports(2)
    config = cluster_config(tmp_path, pg_url, pa, pb)
    key_file = tmp_path / "secret.key"
    [keys] = await make_members(config, key_file, 1)
    a = NodeProcess(config, pa, key_file, tmp_path / "a.log", node="a")
    b = NodeProcess(config, pb, key_file, tmp_path / "b.log", node="b")
    await b.start()
    api, api_a = ApiClient(b.base, *keys), ApiClient(a.base, *keys)
    session = aiohttp.ClientSession()
    try:
        old = await api.post("/orders", market="dogebtc", side="sell", volume="700", price="0.0000031")
        await a.start()
        legacy = WsClient(ws=await session.ws_connect(a.base.replace("http", "ws") + "/ws"))
        legacy.start()
        await legacy.wait(lambda f: "challenge" in f)
        assert "success" in await legacy.auth(*keys)  # a Peatio client: the orderbook stream comes with it
        await asyncio.sleep(0.5)  # A's mirror of B's book is in place well before this
        await api_a.post("/order/delete", id=str(old["id"]))
        removed = await legacy.wait(lambda f: f.get("orderbook", {}).get("action") == "remove")
        assert removed["orderbook"]["order"]["id"] == old["id"]
        await legacy.close()
    finally:
        await api.close()
        await api_a.close()
        await session.close()
        a.terminate()
        b.terminate()


def run_cli(config: Path, *args: str) -> tuple[int, str]:
    """`python -m node …`: its exit code and what it printed (both streams)."""
    import subprocess

    out = subprocess.run([sys.executable, "-m", "node", "--config", str(config), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=90)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.slow
async def test_membership_and_placement_are_commands_applied_within_a_tick(tmp_path: Path, pg_url: str) -> None:
    """A node that cluster.toml does not list joins by `cluster node add`; `market place` moves a
    market to it within a tick (through the ordinary hand-over: resting orders go along); a primary
    cannot be removed; `status` shows the placement."""
    config, [seller, buyer], a, b = await start_two_nodes(tmp_path, pg_url, 2)
    key_file = tmp_path / "secret.key"
    (pc,) = free_ports(1)
    c = NodeProcess(config, pc, key_file, tmp_path / "c.log", node="c")
    api = ApiClient(a.base, *seller)
    api_b = ApiClient(a.base, *buyer)
    try:
        code, out = run_cli(config, "status")
        assert "placed: primary b, standbys a (every other node), version 1" in out, out
        resting = await api.post("/orders", market="dogebtc", side="sell", volume="1", price="0.00010000")

        with pytest.raises(RuntimeError, match="not a member of the cluster"):
            await c.start(timeout=20)
        assert "added to the cluster" in cli(config, "cluster", "node", "add", "c", "--address", f"127.0.0.1:{pc}")
        await c.start()

        code, out = run_cli(config, "market", "place", "dogebtc", "--primary", "c", "--standbys", "b")
        assert code == 0, out
        assert "placed: primary c, standbys b (version 2)" in out and "now runs on node c" in out, out
        st_c = await (await api.session.get(c.base + "/ops/status")).json()
        assert list(st_c["markets"]) == ["dogebtc"]
        order = await api.get("/order", id=str(resting["id"]))
        assert order["state"] == "wait"
        buy = await api_b.post("/orders", market="dogebtc", side="buy", volume="1", price="0.00010000")
        for _ in range(100):  # matched on c, against the order that rested on b
            if (await api_b.get("/order", id=str(buy["id"])))["state"] == "done":
                break
            await asyncio.sleep(0.1)
        assert (await api.get("/order", id=str(resting["id"])))["state"] == "done"

        code, out = run_cli(config, "cluster", "node", "remove", "c")
        assert code == 1 and "primary of dogebtc: place it elsewhere first" in out, out
        assert "removed from the cluster" in cli(config, "cluster", "node", "remove", "b")
        code, out = run_cli(config, "status")
        assert code == 1, out
        assert "market dogebtc: owner c" in out and "placed: primary c, standbys none" in out, out
        assert f"node c (127.0.0.1:{pc}" in out
        assert "PROBLEM: node b runs but is not a member of the cluster" in out
    finally:
        await api.close()
        await api_b.close()
        c.terminate()
        a.terminate()
        b.terminate()
    await check_books(config, [resting["id"], buy["id"]])


OUT, UNFOLLOWED = "exchange_bus_events_published_total", "exchange_bus_events_unfollowed_total"


async def events_in(node: NodeProcess, counter: str = "exchange_bus_events_consumed_total") -> float:
    """Event messages the bus delivered to the node (its /metrics, served to loopback), or another
    of its bus counters."""
    async with aiohttp.ClientSession() as s, s.get(node.base + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(counter + " "):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {counter} in /metrics")


@pytest.mark.slow
async def test_a_node_receives_only_the_events_its_clients_follow(tmp_path: Path, pg_url: str) -> None:
    """B's market trades while nobody on A follows it: nothing reaches A, and B does not even
    publish it (A has told B what it follows). A depth client on A: A receives B's batches, and
    after B restarts (a new actor: its sequence starts again) the client gets a fresh snapshot
    marked `resync`, its book equal to B's. Unsubscribed: nothing again."""
    config, keys, a, b = await start_two_nodes(tmp_path, pg_url, 2)
    seller, buyer = ApiClient(b.base, *keys[0]), ApiClient(b.base, *keys[1])
    session = aiohttp.ClientSession()

    async def trade(price: str) -> None:
        await seller.post("/orders", market="dogebtc", side="sell", volume="100", price=price)
        bid = await buyer.post("/orders", market="dogebtc", side="buy", volume="100", price=price)
        for _ in range(100):
            if (await buyer.get("/order", id=str(bid["id"])))["state"] == "done":
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the trade did not happen")

    try:
        await asyncio.sleep(INTEREST_UNSURE)  # B has heard what every node follows
        quiet = await events_in(a)
        sent, unsent = await events_in(b, OUT), await events_in(b, UNFOLLOWED)
        await trade("0.0000025")
        await asyncio.sleep(1.0)
        assert await events_in(a) == quiet, "A received events nothing on it follows"
        assert await events_in(b, OUT) == sent, "B published events nobody follows"
        assert await events_in(b, UNFOLLOWED) > unsent

        c = WsClient(ws=await session.ws_connect(a.base.replace("http", "ws") + "/ws"))
        c.start()
        await c.wait(lambda f: "challenge" in f)
        await c.command({"subscribe": {"market": "dogebtc", "channels": ["depth"]}}, "subscribed")
        await c.wait(lambda f: f.get("depth", {}).get("snapshot"))
        await seller.post("/orders", market="dogebtc", side="sell", volume="300", price="0.0000030")
        await c.wait(lambda f: "depth" in f and not f["depth"].get("snapshot"))
        assert await events_in(a) > quiet

        assert b.terminate() == 0
        await b.start()
        await seller.post("/orders", market="dogebtc", side="sell", volume="200", price="0.0000031")
        resync = await c.wait(lambda f: f.get("depth", {}).get("resync"), timeout=20)
        book = Book()
        for f in c.frames:
            if "depth" in f:
                book.apply(f["depth"])
        await c.wait(lambda f: "depth" in f and f["depth"]["sequence"] >= resync["depth"]["sequence"])
        depth = await ApiClient(a.base).public("/depth", market="dogebtc")  # asked of B
        assert book.levels("asks") == sorted((Decimal(p), Decimal(v)) for p, v in depth["asks"])

        await c.command({"unsubscribe": {"market": "dogebtc", "channels": ["depth"]}}, "unsubscribed")
        await asyncio.sleep(max(1.0, INTEREST_UNSURE))  # B (restarted) has heard A again
        followed, sent = await events_in(a), await events_in(b, OUT)
        await trade("0.0000024")
        await asyncio.sleep(1.0)
        assert await events_in(a) == followed, "A still receives a market nobody on it follows"
        assert await events_in(b, OUT) == sent, "B still publishes a market nobody follows"
        await c.close()
    finally:
        await session.close()
        await seller.close()
        await buyer.close()
        a.terminate()
        b.terminate()


@pytest.mark.slow
async def test_clients_on_another_node_receive_what_they_follow_from_one_list_per_batch(
        tmp_path: Path, pg_url: str) -> None:
    """B's market dogebtc trades: a client on A following its trades and the buyer's private order
    stream on A both get their events, out of the lists B publishes for all keys at once; B follows
    nothing of A's, so the bus delivers nothing to B meanwhile."""
    config, keys, a, b = await start_two_nodes(tmp_path, pg_url, 2)
    seller, buyer = ApiClient(a.base, *keys[0]), ApiClient(a.base, *keys[1])
    session = aiohttp.ClientSession()
    try:
        market = WsClient(ws=await session.ws_connect(a.base.replace("http", "ws") + "/ws"))
        orders = WsClient(ws=await session.ws_connect(a.base.replace("http", "ws") + "/ws"))
        for c in (market, orders):
            c.start()
            await c.wait(lambda f: "challenge" in f)
        await market.command({"subscribe": {"market": "dogebtc", "channels": ["trades"]}}, "subscribed")
        assert "success" in await orders.auth(*keys[1], legacy=False)
        await orders.command({"subscribe": {"channels": ["order"]}}, "subscribed")
        quiet = await events_in(b)

        await seller.post("/orders", market="dogebtc", side="sell", volume="1000", price="0.0000025")
        bid = await buyer.post("/orders", market="dogebtc", side="buy", volume="400", price="0.0000025")
        frame = await market.wait(lambda f: "trades" in f and not f["trades"].get("snapshot") and f["trades"]["trades"])
        assert [t["volume"] for t in frame["trades"]["trades"]] == ["400.0"]
        done = await orders.wait(lambda f: "order" in f and f["order"]["id"] == bid["id"] and f["order"]["state"] == "done")
        assert done["order"]["executed_volume"] == "400.0"
        assert not [f for f in orders.frames if "order" in f and f["order"]["side"] == "sell"], "another member's order"
        await asyncio.sleep(1.0)
        assert await events_in(b) == quiet, "B received events nothing on it follows"
        await market.close()
        await orders.close()
    finally:
        await session.close()
        await seller.close()
        await buyer.close()
        a.terminate()
        b.terminate()
