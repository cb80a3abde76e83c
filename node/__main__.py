"""Command line: run a node, manage members, credit funds, create API keys, seed a demo.

    python -m node serve [--demo]            run this node (web, API, actors)
    python -m node member create EMAIL      create a member
    python -m node deposit EMAIL CUR AMOUNT credit funds (an admin deposit with a ledger entry)
    python -m node apikey create EMAIL      create an API key (the secret is shown once)
    python -m node demo                     seed demo members and books, then exit
    python -m node audit                    cross-check the books (ledger, orders, trades, deposits, withdrawals)
    python -m node reconcile [CUR ...]      coins held (hot and cold wallets) against the books, item by item
    python -m node solvency snapshot        take a proof-of-solvency snapshot now (also: assets, fiat, show)
    python -m node admin grant EMAIL ROLE   roles; also: withdraws, approve, reject, process, bank-deposit,
                                            reset-2fa, log
    python -m node status                   a cluster's members, placement and owners (node/cli_cluster.py); also:
                                            cluster node add|remove, market place|move|adopt|release,
                                            shard place|move
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node import demo
from node.admin.service import Admin
from node.bootstrap import build_web, keyed_services, start_exchange
from node.clock import now_ms
from node.config import CONFIG_ENV, ConfigError, find_config, load_config
from node.errors import ExchangeError
from node.exchange import Exchange
from node.tuning import freeze_startup_objects
from node.web import edge
from node.web.ops import make_ops_app

log = logging.getLogger("node")


def _run(coro: Awaitable[Any]) -> Any:
    from node.tuning import tune_runtime

    tune_runtime()
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]


async def _with_exchange(args: argparse.Namespace, fn: Callable[[Exchange], Awaitable[Any]], actors: bool = False) -> Any:
    """Admin commands run beside a live node: they use the store only and start no actor."""
    ex = await start_exchange(load_config(args.config), args.node, actors=actors)
    try:
        return await fn(ex)
    finally:
        await ex.stop()


async def serve(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM. Whatever ends it, start-up failures included, stops the exchange
    (its writer thread and the database lock), so the process exits instead of hanging."""
    fd_limit = edge.raise_fd_limit()  # before anything opens: clients are then capped below it
    config = load_config(args.config)
    if config.ops.log_format == "json" and not args.log_json:
        from node.logs import use_json

        use_json()
    ex = await start_exchange(config, args.node)
    if args.log_json or config.ops.log_format == "json":
        from node.logs import add_fields

        add_fields(node=ex.node.name, boot=ex.leases.boot)
    ops_port = args.ops_port if args.ops_port is not None else config.ops_port(ex.node)
    runner: web.AppRunner | None = None
    ops_runner: web.AppRunner | None = None
    listener: asyncio.Server | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        services = await keyed_services(ex, args.key_file)
        app = build_web(services, ops_routes=not ops_port)
        freeze_startup_objects()
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=config.http.keepalive_timeout)
        await runner.setup()
        host = args.host or ex.node.host
        port = args.port if args.port is not None else ex.node.port
        assert runner.server is not None
        gate = edge.Gate(config.http, fd_limit)
        try:
            listener = await asyncio.get_running_loop().create_server(
                gate.factory(runner.server), host, port, reuse_address=True, backlog=1024)
        except OSError as e:
            why = "the port is in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            print(f"cannot serve on {host}:{port}: {why}", file=sys.stderr)
            return 1
        log.info("connections: at most %d (%d per address; file descriptors: %d)", gate.cap, gate.per_ip, fd_limit)
        if ops_port:  # the operators' own listener: /healthz, /readyz, /metrics, /ops/status
            ops_runner = web.AppRunner(make_ops_app(ex), access_log=None)
            await ops_runner.setup()
            try:
                await web.TCPSite(ops_runner, config.ops.host, ops_port, reuse_address=True).start()
            except OSError as e:
                why = "the port is in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
                print(f"cannot serve the operator endpoints on {config.ops.host}:{ops_port}: {why}", file=sys.stderr)
                return 1
            log.info("operator endpoints on http://%s:%d/ (healthz, readyz, metrics)", config.ops.host, ops_port)
        services.mail_links_at(host, port)
        tasks.append(asyncio.create_task(services.solvency.run_schedule(), name="solvency"))  # [solvency] node only
        if args.demo:
            members = await demo.seed(ex)
            tasks.append(asyncio.create_task(demo.trade_forever(ex, members)))
        print(f"{config.name} node {ex.node.name} serving http://{host}:{port}/ ({ex.store.backend})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: draining mailboxes")
        return 0
    finally:
        ex.metrics.draining = True  # /readyz says 503 from now on: the load balancer stops sending
        for t in tasks:
            t.cancel()
        if listener is not None:
            listener.close()
        if runner is not None:
            await runner.cleanup()
        await ex.stop()
        if ops_runner is not None:
            await ops_runner.cleanup()


async def member_create(args: argparse.Namespace) -> None:
    async def go(ex: Exchange) -> None:
        mid = await ex.create_member(args.email, name=args.name or "")
        print(mid)

    await _with_exchange(args, go)


async def deposit(args: argparse.Namespace) -> None:
    async def go(ex: Exchange) -> None:
        member = await ex.member_by_email(args.email)
        did = await ex.deposit(int(member["id"]), args.currency, args.amount, txid=args.txid)
        print(did)

    await _with_exchange(args, go)


async def apikey_create(args: argparse.Namespace) -> None:
    async def go(ex: Exchange) -> None:
        member = await ex.member_by_email(args.email)
        keys = (await keyed_services(ex, args.key_file)).keys
        expires = now_ms() + args.days * 86_400_000 if args.days else None
        access, secret = await keys.create(int(member["id"]), args.label, args.scopes, args.ip or "", expires,
                                           now=now_ms())
        from node.security import audit

        await audit.record(ex.store, audit.API_KEY_CREATE, int(member["id"]), {"label": args.label, "access_key": access,
                                                                             "scopes": args.scopes}, source=audit.CLI)
        print(f"access_key={access}\nsecret_key={secret}")

    await _with_exchange(args, go)


async def demo_seed(args: argparse.Namespace) -> None:
    from node import demo

    async def go(ex: Exchange) -> None:
        members = await demo.seed(ex)
        print("demo members:", ", ".join(str(m) for m in members))

    await _with_exchange(args, go, actors=True)


async def audit_cmd(args: argparse.Namespace) -> int:
    from node.audit import audit

    async def go(ex: Exchange) -> int:
        report = await audit(ex.store, ex.config.markets)
        for line in report.lines():
            print(line)
        return 0 if report.ok else 1

    result: int = await _with_exchange(args, go)
    return result


async def reconcile_cmd(args: argparse.Namespace) -> int:
    """Print each coin currency's reconciliation; exit 1 if any has an unexplained difference."""
    async def go(ex: Exchange) -> int:
        codes = args.currency or [c for c, cur in ex.config.currencies.items()
                                  if cur.wallet is not None and cur.wallet.channel != "bank"]
        if not codes:
            print("no coin wallets are configured")
            return 0
        rc = 0
        for code in codes:
            rec = await ex.funds.reconciliation(code)
            for line in rec.lines():
                print(line)
            rc |= 0 if rec.ok else 1
        return rc

    result: int = await _with_exchange(args, go)
    return result


async def admin_cmd(args: argparse.Namespace) -> int:
    from node.admin.cli import run

    async def admin(ex: Exchange) -> Admin:  # the pages' admin service, 2FA reset included: it needs the key
        return (await keyed_services(ex, args.key_file)).admin

    return await run(args, _with_exchange, admin)


async def solvency_cmd(args: argparse.Namespace) -> int:
    from node.solvency.commands import run_cli

    result: int = await _with_exchange(args, lambda ex: run_cli(ex, args))
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m node", description="Run and manage an exchange node.")
    p.add_argument("--config", default=None,
                   help=f"configuration file (default: ${CONFIG_ENV}, else ./cluster.toml)")
    p.add_argument("--node", default=None, help="which node of the configuration this is (default: the first)")
    p.add_argument("--key-file", default=os.environ.get("EXCHANGE_KEY_FILE", "var/secret.key"),
                   help="server key file (or set EXCHANGE_SECRET_KEY)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line (also: [ops] log_format)")
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("serve", help="run this node")
    s.add_argument("--demo", action="store_true", help="seed demo members and orders, and keep a demo trader running")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--ops-port", type=int, default=None,
                   help="port of the operator endpoints on [ops] host (default: the node's ops_port, else [ops] port; "
                        "0: served by the main listener to local requests only)")
    s.set_defaults(fn=serve)
    m = sub.add_parser("member", help="members").add_subparsers(dest="sub", required=True)
    mc = m.add_parser("create")
    mc.add_argument("email")
    mc.add_argument("--name", default="")
    mc.set_defaults(fn=member_create)
    d = sub.add_parser("deposit", help="credit a member (admin deposit)")
    d.add_argument("email")
    d.add_argument("currency")
    d.add_argument("amount")
    d.add_argument("--txid", default=None, help="reference; the same one is credited once only")
    d.set_defaults(fn=deposit)
    k = sub.add_parser("apikey", help="API keys").add_subparsers(dest="sub", required=True)
    kc = k.add_parser("create")
    kc.add_argument("email")
    kc.add_argument("--label", default="cli")
    kc.add_argument("--scopes", default="all")
    kc.add_argument("--ip", default=None, help="IP whitelist (comma separated addresses or networks)")
    kc.add_argument("--days", type=int, default=0, help="expiry in days (0: never)")
    kc.set_defaults(fn=apikey_create)
    sub.add_parser("demo", help="seed demo data and exit").set_defaults(fn=demo_seed)
    sub.add_parser("audit", help="check the books").set_defaults(fn=audit_cmd)
    rc = sub.add_parser("reconcile", help="coins held against the books, per coin currency")
    rc.add_argument("currency", nargs="*", help="currency codes (default: every coin wallet)")
    rc.set_defaults(fn=reconcile_cmd)
    from node.solvency.commands import add_cli_arguments

    sol = sub.add_parser("solvency", help="proof of solvency: snapshot, assets, fiat reserves, show")
    add_cli_arguments(sol)
    sol.set_defaults(fn=solvency_cmd)
    from node.cli_cluster import add_arguments as add_cluster_arguments

    add_cluster_arguments(sub)
    from node.admin.cli import add_arguments as add_admin_arguments

    add_admin_arguments(sub, admin_cmd)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from node.web.edge import safe_logging

    safe_logging()  # a client's line breaks in a logged value are escaped, never a new line
    if args.log_json:
        from node.logs import use_json

        use_json()
    fn = getattr(args, "fn", None)
    if fn is None:
        args.demo, args.host, args.port, args.ops_port, fn = False, None, None, None, serve
    try:
        args.config = str(find_config(args.config, demo=getattr(args, "demo", False)))
        with contextlib.suppress(KeyboardInterrupt):
            rc = _run(fn(args))
        return int(rc or 0)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    except ExchangeError as e:
        print(f"error {e.code}: {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
