"""The operator's cluster commands: `status`, `cluster node add|remove`, `market place|move|adopt|release`,
`shard place|move`.

`status` reads the store, so it tells the same truth about every node from any machine.
`cluster node add|remove` and `market place` change the membership and placement in the store
(node/placement.py), with an audit entry; running nodes apply them at their next ownership tick.
`market move|adopt|release` reach one running process through the bus and return its answer: each
is done now or refused now with the reason, never kept to run at a later boot (`move` also records
the target as the market's primary). `shard place|move` do the same for an account shard
(node/account_shards.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from node import placement
from node.account_shards import shard_problems, shard_view
from node.actors.lease import Liveness
from node.actors.shards import lease_name
from node.bootstrap import start_exchange
from node.config import load_config
from node.errors import ExchangeError
from node.exchange import Exchange
from node.ownership import cluster_view
from node.security import audit


def _ms(v: Any) -> str:
    return "-" if v is None else f"{int(v) / 1000:.1f}s"


def _placed(m: dict[str, Any]) -> str:
    """A market's or shard's placement as `status` words it."""
    return (f"placed: primary {m['primary']}, standbys {', '.join(m['standbys']) or 'none'}"
            + (" (every other node)" if m["standbys"] and m.get("placed_standbys") == placement.EVERY_OTHER else "")
            + (f", version {m['placement_version']}" if m.get("placement_version") else ""))


async def status_cmd(args: argparse.Namespace) -> int:
    """Every node and market as the store tells it; exit code 1 when something is wrong."""
    config = load_config(args.config)
    ex = await start_exchange(config, args.node, actors=False)
    probe = None if ex.store.backend == "sqlite" else Liveness(
        config.direct_database, f"cli:{os.getpid()}", config.actors.store_timeout_ms / 1000)
    try:
        view = await cluster_view(ex.store, config, probe.gone if probe else None)
        if config.rabbitmq:  # a cluster: account shards are leased too (node/account_shards.py)
            view["account_shards"] = await shard_view(ex.store, config)
            view["problems"] += shard_problems(view["account_shards"])
    finally:
        if probe is not None:
            await probe.close()
        await ex.stop()
    if getattr(args, "json", False):
        print(orjson.dumps(view, option=orjson.OPT_INDENT_2, default=str).decode())
        return 1 if view["problems"] else 0
    for name, member in view["members"].items():
        n = view["nodes"].get(name)
        if not member["member"]:
            if n is not None and n["alive"]:
                print(f"node {name}: removed from the cluster, but running")
            continue
        if n is None:
            print(f"node {name} ({member['address'] or 'no address'}): never seen")
            continue
        st = n["status"]
        state = "up" if n["alive"] else "DOWN"
        print(f"node {name} ({n['address']}, boot {n['boot']}, pid {n['pid']}): {state}, seen {_ms(n['seen_ago_ms'])} ago, "
              f"markets {', '.join(n['markets']) or 'none'}")
        for a in st.get("actors", []):
            print(f"  actor {a['name']}: mailbox {a['mailbox']}, processed {a['processed']}, restarts {a['restarts']}"
                  + (f", {a['recent_crashes']} in 10 min, last error {a['last_error']}" if a.get("recent_crashes") else "")
                  + (", FENCED" if a.get("fenced") else ""))
        for mid, why in st.get("refusals", {}).items():
            print(f"  standby for {mid}: {why}")
    for mid, m in view["markets"].items():
        owner = m["owner"] or (f"none (handed to {m['handed_to']})" if m.get("handed_to") else "NONE")
        print(f"market {mid}: owner {owner}, epoch {m['epoch']}, lease age {_ms(m['lease_age_ms'])}, renewed "
              f"{_ms(m['renewed_ago_ms'])} ago, expires in {_ms(m['expires_in_ms'])}; {_placed(m)}")
    for k, sh in view.get("account_shards", {}).items():
        print(f"account shard {k}: owner {sh['owner'] or 'NONE'}, epoch {sh['epoch']}, expires in "
              f"{_ms(sh['expires_in_ms'])}, settlements unapplied {sh['unapplied']}; {_placed(sh)}")
    for p in view["problems"]:
        print(f"PROBLEM: {p}")
    return 1 if view["problems"] else 0


async def market_cmd(args: argparse.Namespace) -> int:
    """`move` (to a live node), `adopt` (on a node, if the market is free) or `release`."""
    from node.cluster.rabbit import send_control_once

    config = load_config(args.config)
    if not config.rabbitmq:
        print("this needs a cluster (exchange.rabbitmq in the configuration)", file=sys.stderr)
        return 2
    if args.market not in config.markets:
        print(f"unknown market {args.market!r}", file=sys.stderr)
        return 2
    ex = await start_exchange(config, args.node, actors=False)
    probe = Liveness(config.direct_database, f"cli:{os.getpid()}", config.actors.store_timeout_ms / 1000)
    try:
        view = await cluster_view(ex.store, config, probe.gone)
        alive = {name: n for name, n in view["nodes"].items() if n["alive"]}
        m = view["markets"][args.market]
        if args.sub == "adopt":
            target = args.on
            command: dict[str, Any] = {"cmd": "adopt", "market": args.market}
        else:
            target = m["owner"]
            if target is None or target not in alive:
                print(f"market {args.market} has no running owner to act (it falls to a standby once its lease "
                      f"expires; `market adopt {args.market} --on NODE` takes it now if it is free)", file=sys.stderr)
                return 1
            command = {"cmd": "release", "market": args.market, "to": getattr(args, "to", None)}
            if args.sub == "move":
                if not view["members"].get(args.to, {}).get("member"):
                    print(f"node {args.to!r} is not a member of the cluster", file=sys.stderr)
                    return 2
                if args.to not in alive:
                    print(f"node {args.to} is not running: market {args.market} stays on {target}", file=sys.stderr)
                    return 1
        if target not in alive:
            print(f"node {target} is not running", file=sys.stderr)
            return 1
        answer = await send_control_once(config.rabbitmq, await ex.cluster_id(), target, alive[target]["boot"], command)
        if not answer.get("ok"):
            print(f"refused: {answer.get('message')}", file=sys.stderr)
            return 1
        print(answer.get("message"))
        if args.sub == "move":
            token = audit.set_origin(audit.CLI)
            try:  # after the hand-over: the new owner took it under the old placement and keeps it
                p = await placement.record_move(ex.store, config, args.market, args.to)
            finally:
                audit.reset_origin(token)
            print(f"market {args.market} placed on {args.to} (version {p.version})")
            return await _wait_owner(ex, config, args.market, args.to)
        return 0
    finally:
        await probe.close()
        await ex.stop()


async def _wait_owner(ex: Exchange, config: Any, market: str, node: str, seconds: float = 30.0) -> int:
    async def lease() -> dict[str, Any]:
        info: dict[str, Any] = (await cluster_view(ex.store, config))["markets"][market]
        return info

    return await _wait_for(lease, f"market {market}", node, seconds)


async def _wait_for(lease: Callable[[], Awaitable[dict[str, Any]]], what: str, node: str, seconds: float) -> int:
    for _ in range(int(seconds * 10)):
        info = await lease()
        if info["owner"] == node:
            print(f"{what} now runs on node {node} (epoch {info['epoch']})")
            return 0
        await asyncio.sleep(0.1)
    print(f"{what}: node {node} did not take it within {seconds:.0f} s; it falls to a standby "
          "when the hand-over lease expires", file=sys.stderr)
    return 1


async def shard_cmd(args: argparse.Namespace) -> int:
    """`shard place K --primary A [--standbys B,C]` (written now; the shard's owner hands it over
    at its next tick if the primary runs) and `shard move K --to B` (the owner drains the shard's
    actor and hands its lease to B now; B becomes its primary). Each waits for the new owner."""
    from node.cluster.rabbit import send_control_once

    config = load_config(args.config)
    if not config.rabbitmq:  # one process runs every shard, unleased: there is nowhere to place one
        print("this needs a cluster (exchange.rabbitmq in the configuration)", file=sys.stderr)
        return 2
    ex = await start_exchange(config, args.node, actors=False)
    probe = Liveness(config.direct_database, f"cli:{os.getpid()}", config.actors.store_timeout_ms / 1000)
    token = audit.set_origin(audit.CLI)
    k = args.shard
    wait = max(30.0, 4 * config.actors.lease_ms / 1000)

    async def lease() -> dict[str, Any]:
        info: dict[str, Any] = (await shard_view(ex.store, config))[str(k)]
        return info

    try:
        if k not in placement.shards_placed(ex.store, config):
            print(f"unknown account shard {k} (shards 0 to {len(placement.shards_placed(ex.store, config)) - 1})",
                  file=sys.stderr)
            return 2
        view = await cluster_view(ex.store, config, probe.gone)
        alive = {name: n for name, n in view["nodes"].items() if n["alive"]}
        if args.sub == "place":
            try:
                p = await placement.place_shard(ex.store, config, k, args.primary, placement.parse_standbys(args.standbys))
            except ExchangeError as e:
                print(f"refused: {e.message}", file=sys.stderr)
                return 1
            sh = await lease()
            print(f"account shard {k} placed: primary {p.primary}, standbys {', '.join(sh['standbys']) or 'none'}"
                  + (" (every other node)" if p.standbys is None else "") + f" (version {p.version})")
            if args.no_wait or sh["owner"] == p.primary:
                return 0
            if p.primary not in alive:
                print(f"node {p.primary} is not running: the shard stays where it is until it does (or a `shard move`)")
                return 0
            return await _wait_for(lease, f"account shard {k}", p.primary, wait)
        owner = (await lease())["owner"]
        if owner is None or owner not in alive:
            print(f"account shard {k} has no running owner to hand it over (it falls to a standby once its lease "
                  "expires)", file=sys.stderr)
            return 1
        if not view["members"].get(args.to, {}).get("member"):
            print(f"node {args.to!r} is not a member of the cluster", file=sys.stderr)
            return 2
        if args.to not in alive:
            print(f"node {args.to} is not running: account shard {k} stays on {owner}", file=sys.stderr)
            return 1
        answer = await send_control_once(config.rabbitmq, await ex.cluster_id(), owner, alive[owner]["boot"],
                                         {"cmd": "release_shard", "shard": k, "to": args.to})
        if not answer.get("ok"):
            print(f"refused: {answer.get('message')}", file=sys.stderr)
            return 1
        print(answer.get("message"))
        # after the hand-over: the new owner took it under the old placement and keeps it
        p = await placement.record_move(ex.store, config, lease_name(k), args.to, action=placement.SHARD_MOVE)
        print(f"account shard {k} placed on {args.to} (version {p.version})")
        return await _wait_for(lease, f"account shard {k}", args.to, wait)
    finally:
        audit.reset_origin(token)
        await probe.close()
        await ex.stop()


async def place_cmd(args: argparse.Namespace) -> int:
    """`market place MARKET --primary A [--standbys B,C]`: written now; the market's owner hands it
    over at its next tick if the primary runs (this waits for that unless --no-wait)."""
    config = load_config(args.config)
    if not config.rabbitmq:  # one process runs every market: there is nowhere else to place one
        print("this needs a cluster (exchange.rabbitmq in the configuration)", file=sys.stderr)
        return 2
    standbys = placement.parse_standbys(args.standbys)
    ex = await start_exchange(config, args.node, actors=False)
    token = audit.set_origin(audit.CLI)
    try:
        try:
            p = await placement.place(ex.store, config, args.market, args.primary, standbys)
        except ExchangeError as e:
            print(f"refused: {e.message}", file=sys.stderr)
            return 1
        cluster = await placement.read(ex.store)
        print(f"market {p.market} placed: primary {p.primary}, standbys "
              f"{', '.join(cluster.standbys_of(p.market)) or 'none'}"
              + (" (every other node)" if p.standbys is None else "") + f" (version {p.version})")
        if args.no_wait:
            return 0
        view = await cluster_view(ex.store, config)
        owner = view["markets"][p.market]["owner"]
        if owner == p.primary:
            return 0
        if not view["nodes"].get(p.primary, {}).get("alive"):
            print(f"node {p.primary} is not running: the market stays where it is until it does (or a "
                  f"`market move`)")
            return 0
        return await _wait_owner(ex, config, p.market, p.primary, seconds=max(30.0, 4 * config.actors.lease_ms / 1000))
    finally:
        audit.reset_origin(token)
        await ex.stop()


async def node_cmd(args: argparse.Namespace) -> int:
    """`cluster node add NAME [--address HOST:PORT]` and `cluster node remove NAME`."""
    config = load_config(args.config)
    ex = await start_exchange(config, args.node, actors=False)
    token = audit.set_origin(audit.CLI)
    try:
        await placement.load(ex.store, config)  # a store never started yet is seeded first
        if args.op == "add":
            print(await placement.add_node(ex.store, args.name, args.address))
        else:
            print(await placement.remove_node(ex.store, args.name))
        return 0
    except ExchangeError as e:
        print(f"refused: {e.message}", file=sys.stderr)
        return 1
    finally:
        audit.reset_origin(token)
        await ex.stop()


def _placement_options(parser: Any, what: str) -> None:
    """`market place` and `shard place` take the same options: a placement is a placement."""
    parser.add_argument("--primary", required=True, help=f"the node that runs the {what}")
    parser.add_argument("--standbys", default=placement.EVERY_OTHER,
                        help="comma-separated nodes that take it over when its owner fails; '*' (default): every "
                             "other node; '': none")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the hand-over to the primary")


def add_arguments(sub: Any) -> None:
    st = sub.add_parser("status", help="every node and market as the store tells it (exit 1 if something is wrong)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=status_cmd)
    cl = sub.add_parser("cluster", help="the cluster's members").add_subparsers(dest="sub", required=True)
    nd = cl.add_parser("node", help="add a node to the cluster or remove one").add_subparsers(dest="op", required=True)
    na = nd.add_parser("add", help="make a node a member (its markets: market place)")
    na.add_argument("name")
    na.add_argument("--address", default="", help="HOST:PORT where it serves (shown by status)")
    na.set_defaults(fn=node_cmd)
    nr = nd.add_parser("remove", help="take a node out (refused while a market is placed on it or it runs one)")
    nr.add_argument("name")
    nr.set_defaults(fn=node_cmd)
    mk = sub.add_parser("market", help="markets of a cluster").add_subparsers(dest="sub", required=True)
    pl = mk.add_parser("place", help="set a market's primary and standbys (applied by the nodes within a tick)")
    pl.add_argument("market")
    _placement_options(pl, "market")
    pl.set_defaults(fn=place_cmd)
    mv = mk.add_parser("move", help="hand a market over to another running node, now")
    mv.add_argument("market")
    mv.add_argument("--to", required=True, help="the node that takes the market")
    mv.set_defaults(fn=market_cmd)
    ad = mk.add_parser("adopt", help="make a node take a market now, if its lease is free")
    ad.add_argument("market")
    ad.add_argument("--on", required=True, help="the node that takes the market")
    ad.set_defaults(fn=market_cmd)
    rl = mk.add_parser("release", help="make the owner give a market up now (a standby takes it)")
    rl.add_argument("market")
    rl.set_defaults(fn=market_cmd)
    sh = sub.add_parser("shard", help="account shards of a cluster").add_subparsers(dest="sub", required=True)
    sp = sh.add_parser("place", help="set a shard's primary and standbys (its owner hands it over within a tick)")
    sp.add_argument("shard", type=int)
    _placement_options(sp, "shard")
    sp.set_defaults(fn=shard_cmd)
    sm = sh.add_parser("move", help="hand a shard over to another running node, now (it becomes its primary)")
    sm.add_argument("shard", type=int)
    sm.add_argument("--to", required=True, help="the node that takes the shard")
    sm.set_defaults(fn=shard_cmd)
