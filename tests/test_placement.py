"""Membership and placement in the store (node/placement.py): cluster.toml seeds them once, commands
change them with an audit entry, and a node that is no member does not start. The running cluster's
side (a placed market handed over within a tick, `status`) is in tests/test_cluster.py."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from node import placement
from node.actors.shards import lease_name
from node.bootstrap import start_exchange
from node.config import Config, ConfigError, parse_config
from node.errors import InvalidParameter, Unavailable
from node.store import open_store
from tests.conftest import ROOT, config_with

THREE = {
    "a": {"host": "10.0.0.1", "port": 8080, "markets": ["btcusd", "ltcbtc"]},
    "b": {"host": "10.0.0.2", "port": 8080, "markets": ["dogebtc"]},
    "c": {"host": "10.0.0.3", "port": 8080, "markets": []},
}


def three_nodes(database: str, nodes: dict[str, Any] | None = None, **markets: Any) -> Config:
    """cluster.toml's markets on nodes a, b, c of a cluster; `markets`: settings per market."""
    data = tomllib.loads((ROOT / "cluster.toml").read_text())
    data["exchange"] = {"name": "t", "database": database, "rabbitmq": "amqp://x/"}
    data["nodes"] = nodes or THREE
    for mid, extra in markets.items():
        data["markets"][mid].update(extra)
    return parse_config(data, "test")


async def audit_actions(store: Any) -> list[tuple[str, str]]:
    return [(r["action"], r["target"]) for r in await store.fetch("SELECT action, target FROM audit_log ORDER BY seq")]


async def test_cluster_toml_seeds_the_store_once_then_the_store_wins(database_url: str) -> None:
    store = await open_store(database_url)
    try:
        cfg = three_nodes(database_url, ltcbtc={"standbys": ["c"]})
        cluster = await placement.load(store, cfg)
        assert cluster.members == ["a", "b", "c"]
        assert cluster.nodes["b"]["address"] == "10.0.0.2:8080"
        assert cluster.placement["btcusd"] == placement.Placement("btcusd", "a", None, 1)  # unnamed: every other node
        assert cluster.standbys_of("btcusd") == ("b", "c")
        assert cluster.placement["ltcbtc"].standbys == ("c",)
        assert cluster.markets_of("a") == ["btcusd", "ltcbtc"] and cluster.markets_of("c") == []
        assert await audit_actions(store) == [(placement.SEED, "cluster")]

        # a later cluster.toml naming other nodes and primaries changes nothing the store has
        other = {"a": {"markets": ["dogebtc"]}, "d": {"markets": ["btcusd", "ltcbtc"]}}
        again = await placement.load(store, three_nodes(database_url, other))
        assert again == cluster
        assert len(await audit_actions(store)) == 1
    finally:
        await store.close()


async def test_node_add_remove_and_place_are_checked_and_audited(database_url: str) -> None:
    store = await open_store(database_url)
    cfg = three_nodes(database_url)
    try:
        await placement.load(store, cfg)
        assert "added" in await placement.add_node(store, "d", "10.0.0.4:8080")
        assert "already" in await placement.add_node(store, "d")
        with pytest.raises(InvalidParameter, match="bad node name"):
            await placement.add_node(store, "d;drop")

        # a primary cannot be removed until its markets are placed elsewhere
        with pytest.raises(Unavailable, match="primary of dogebtc: place it elsewhere first"):
            await placement.remove_node(store, "b")
        with pytest.raises(InvalidParameter, match="not a member"):
            await placement.place(store, cfg, "dogebtc", "e", None)
        with pytest.raises(InvalidParameter, match="unknown market"):
            await placement.place(store, cfg, "xyz", "d", None)
        p = await placement.place(store, cfg, "dogebtc", "d", ["b", "c", "d"])
        assert p == placement.Placement("dogebtc", "d", ("b", "c"), 2)
        cluster = await placement.read(store)
        assert cluster.primary_of("dogebtc") == "d" and cluster.standbys_of("dogebtc") == ("b", "c")

        # b still holds dogebtc's lease: refused until the market has moved
        await store.execute("INSERT INTO market_leases (market, node, owner, expires_at) VALUES ('dogebtc', 'b', "
                            "'b:1', ?)", 2**52)
        with pytest.raises(Unavailable, match="still holds dogebtc"):
            await placement.remove_node(store, "b")
        await store.execute("UPDATE market_leases SET node = 'd', owner = 'd:1'")
        assert "from the standbys of dogebtc" in await placement.remove_node(store, "b")
        cluster = await placement.read(store)
        assert cluster.members == ["a", "c", "d"] and cluster.nodes["b"]["removed_at"] is not None
        assert cluster.placement["dogebtc"].standbys == ("c",)
        assert cluster.standbys_of("btcusd") == ("c", "d")  # "*": every other member, b no longer
        with pytest.raises(InvalidParameter, match="not a member"):
            await placement.remove_node(store, "b")
        assert "added" in await placement.add_node(store, "b")  # and back again

        # `market move` makes its target the primary; the old primary takes its place among the standbys
        p = await placement.record_move(store, cfg, "dogebtc", "c")
        assert (p.primary, p.standbys, p.version) == ("c", ("d",), 3)

        assert [a for a, _ in await audit_actions(store)] == [
            placement.SEED, placement.NODE_ADD, placement.PLACE, placement.NODE_REMOVE, placement.NODE_ADD,
            "market.move"]
        for r in await store.fetch("SELECT detail FROM audit_log WHERE action = ?", placement.PLACE):
            assert '"was_primary":"b"' in r["detail"] and '"primary":"d"' in r["detail"]
    finally:
        await store.close()


async def test_account_shards_are_seeded_from_the_node_order_then_placed_by_command(database_url: str) -> None:
    store = await open_store(database_url)
    cfg = three_nodes(database_url)
    try:
        cluster = await placement.load(store, cfg)
        count = cfg.actors.shard_count(store.backend)
        assert [(cluster.placement[lease_name(k)].primary, cluster.placement[lease_name(k)].standbys)
                for k in range(count)] == [("abc"[k % 3], None) for k in range(count)]  # the rule before placement
        assert cluster.standbys_of(lease_name(0)) == ("b", "c")
        assert cluster.markets_of("a") == ["btcusd", "ltcbtc"]  # a shard is no market

        with pytest.raises(InvalidParameter, match="unknown account shard"):
            await placement.place_shard(store, cfg, count, "a", None)
        with pytest.raises(InvalidParameter, match="not a member"):
            await placement.place_shard(store, cfg, 0, "e", None)
        p = await placement.place_shard(store, cfg, 0, "b", ["c", "b"])
        assert p == placement.Placement(lease_name(0), "b", ("c",), 2)
        p = await placement.record_move(store, cfg, lease_name(0), "c", action=placement.SHARD_MOVE)
        assert (p.primary, p.standbys, p.version) == ("c", ("b",), 3)

        await placement.place_shard(store, cfg, 0, "a", ["c"])

        # shards do not hold a node back (what it runs passes to the standbys when it stops): c is
        # still the primary of shard 2 on PostgreSQL, and is taken off shard 0's standbys
        assert "from the standbys of accounts/0" in await placement.remove_node(store, "c")
        assert (await placement.read(store)).standbys_of(lease_name(0)) == ()
        assert [a for a, _ in await audit_actions(store)] == [
            placement.SEED, placement.SHARD_PLACE, placement.SHARD_MOVE, placement.SHARD_PLACE, placement.NODE_REMOVE]
    finally:
        await store.close()
    with pytest.raises(InvalidParameter, match="only in a cluster"):
        await placement.place_shard(store, config_with(database_url), 0, "main", None)


async def test_the_last_node_cannot_be_removed(database_url: str) -> None:
    store = await open_store(database_url)
    try:
        await placement.load(store, config_with(database_url))
        await placement.add_node(store, "spare")
        await placement.remove_node(store, "spare")
        with pytest.raises(Unavailable, match="primary of btcusd"):
            await placement.remove_node(store, "main")
    finally:
        await store.close()


async def test_a_node_runs_the_markets_placed_on_it_and_no_member_does_not_start(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/exchange.db"
    cfg = config_with(url)
    store = await open_store(url)
    try:
        await placement.load(store, cfg)
        await placement.add_node(store, "spare")
        await placement.place(store, cfg, "dogebtc", "spare", None)
    finally:
        await store.close()
    ex = await start_exchange(cfg)
    try:
        assert sorted(ex.markets) == ["btcusd", "ltcbtc"]  # dogebtc is placed on another node
        assert ex.ownership is not None and ex.ownership.eligible("dogebtc", None) is None
    finally:
        await ex.stop()

    store = await open_store(url)
    try:
        await placement.place(store, cfg, "dogebtc", "main", [])
        await placement.remove_node(store, "spare")
        await store.execute("UPDATE cluster_nodes SET removed_at = 1 WHERE name = 'main'")  # as if removed meanwhile
    finally:
        await store.close()
    with pytest.raises(ConfigError, match="node main was removed from the cluster"):
        await start_exchange(cfg)


def test_placing_a_market_needs_a_cluster(tmp_path: Any) -> None:
    import subprocess
    import sys

    from tests.nodeproc import write_config

    config = write_config(tmp_path, f"sqlite:///{tmp_path}/x.db", 8080)
    out = subprocess.run([sys.executable, "-m", "node", "--config", str(config), "market", "place", "btcusd",
                          "--primary", "main"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "needs a cluster" in out.stderr, out.stderr


async def test_a_market_left_off_its_primary_is_named_everywhere(tmp_path: Any) -> None:
    """Placed on a node that does not run, a market stays on the node that runs it: `status`, the
    admin dashboard (cluster_view's problems) and the /metrics gauge behind ExchangeMarketOffPrimary
    name it, until it is placed on its runner again."""
    import asyncio
    import subprocess
    import sys

    from node.admin import dashboard
    from node.ownership import cluster_view
    from tests.nodeproc import _env, write_config

    config = write_config(tmp_path, f"sqlite:///{tmp_path}/exchange.db", 0)
    from node.config import load_config

    cfg = load_config(config)
    ex = await start_exchange(cfg)
    off = "market btcusd runs on node main, off its primary spare"
    gauge = b'exchange_market_off_primary{market="btcusd"} 1.0'
    try:
        await placement.add_node(ex.store, "spare")
        await placement.place(ex.store, cfg, "btcusd", "spare", None)  # spare never starts: main keeps btcusd
        for _ in range(100):
            await ex.metrics.refresh()
            if gauge in ex.metrics.render():
                break
            await asyncio.sleep(0.1)
        assert gauge in ex.metrics.render()
        assert b'exchange_market_off_primary{market="ltcbtc"} 0.0' in ex.metrics.render()
        view = await cluster_view(ex.store, cfg)
        assert view["markets"]["btcusd"]["off_primary"] and not view["markets"]["ltcbtc"]["off_primary"]
        assert any(p.startswith(off) for p in view["problems"]), view["problems"]
        assert any(p.startswith(off) for p in (await dashboard.nodes(ex))["problems"])
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "node", "--config", str(config), "status"], cwd=ROOT,
            capture_output=True, text=True, timeout=60, env=_env())
        assert out.returncode == 1 and f"PROBLEM: {off}" in out.stdout, out.stdout + out.stderr

        await placement.place(ex.store, cfg, "btcusd", "main", None)  # kept where it runs: no longer a problem
        for _ in range(100):
            await ex.metrics.refresh()
            if gauge not in ex.metrics.render():
                break
            await asyncio.sleep(0.1)
        assert b'exchange_market_off_primary{market="btcusd"} 0.0' in ex.metrics.render()
        assert not any("off its primary" in p for p in (await cluster_view(ex.store, cfg))["problems"])
    finally:
        await ex.stop()


async def test_an_account_shard_left_off_its_primary_is_a_problem(database_url: str) -> None:
    """As for markets: a standby that took a shard keeps it until it is placed again, and `status`
    (and the alert behind exchange_account_shard_off_primary) say so, with the command that fixes it."""
    import dataclasses

    from node.account_shards import shard_problems, shard_view
    from node.actors.lease import Leases

    store = await open_store(database_url)
    cfg = three_nodes(database_url)
    cfg = dataclasses.replace(cfg, actors=dataclasses.replace(cfg.actors, account_shards=3))
    try:
        await placement.load(store, cfg)  # shard k's primary: "abc"[k % 3]
        on_a = Leases(store, "a")
        await on_a.acquire(lease_name(0))  # its primary
        await on_a.acquire(lease_name(1))  # b's, taken over by a
        view = await shard_view(store, cfg)
        assert (view["0"]["owner"], view["0"]["off_primary"]) == ("a", False)
        assert (view["1"]["owner"], view["1"]["off_primary"]) == ("a", True)
        assert (view["2"]["owner"], view["2"]["off_primary"]) == (None, False)
        problems = shard_problems(view)
        assert "account shard 1 runs on node a, off its primary b (`shard place 1 --primary b` sends it back, " \
               "`--primary a` keeps it there)" in problems
        assert "account shard 2 has no running owner" in problems
        assert not any(p.startswith("account shard 0 ") for p in problems)

        await placement.place_shard(store, cfg, 1, "a", None)  # kept where it runs: no longer a problem
        assert not (await shard_view(store, cfg))["1"]["off_primary"]
    finally:
        await store.close()
