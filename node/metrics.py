"""What a node shows Prometheus (/metrics), and whether it is ready to take traffic (/readyz).

Almost every number is read from the node's live objects when Prometheus asks (mailboxes, leases,
epochs, the pool, the bus link's counters, websocket clients, wallet heights): nothing is added to
the order path but a counter increment per accepted request and a histogram observation per
committed batch. The few numbers that need a round trip (withdrawals waiting, from the store; each
owned market's queue on the bus) are fetched once per scrape, each within the readiness timeout,
so a scrape during an outage answers on time with the last values it had.

Each node has its own registry: several exchanges in one process (the tests) never mix numbers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.actors.lease import HANDED_OVER
from node.actors.runtime import Actor
from node.actors.shards import lease_name
from node.clock import now_ms
from node.ownership import SELF_FENCE
from node.wallet.records import HOLDING

if TYPE_CHECKING:
    from node.exchange.core import ExchangeCore

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A batch commits in about a millisecond on SQLite and a few on PostgreSQL; a store timeout is seconds.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeMetrics:
    def __init__(self, ex: ExchangeCore) -> None:
        self.ex = ex
        self.registry = CollectorRegistry(auto_describe=False)
        self.commit = Histogram("exchange_batch_commit_seconds",
                                "Time from a batch's start to its commit (a pipelined actor: its write alone)",
                                ["actor"], registry=self.registry, buckets=COMMIT_BUCKETS)
        self.registry.register(_Live(self))
        self.ws_clients: Callable[[], int] = lambda: 0  # set by the web app (its websocket hub)
        self.withdrawals: dict[tuple[str, str], tuple[int, float]] = {}  # (currency, state) → (count, oldest age s)
        self.queued: dict[str, int] = {}  # market → messages waiting on the bus
        self.refresh_errors = 0
        self.draining = False  # set at shutdown: /readyz answers 503 while the node drains
        self.ready: tuple[bool, dict[str, bool]] | None = None  # the last scrape's readiness, per check

    def watch(self, actor: Actor[Any]) -> None:
        """Time the actor's committed batches."""
        if actor.on_commit is None:
            actor.on_commit = self.commit.labels(actor.name).observe

    def actors(self) -> list[Actor[Any]]:
        ex = self.ex
        return [*ex.markets.values(), *ex.accounts, *ex.funds.actors.values(), *ex.extra_actors]

    async def refresh(self) -> None:
        """Before a scrape: readiness (which probes the store and the bus, and reads the owned
        markets' queues), then the withdrawals if the store answered. Each round trip is bounded by
        `[ops] ready_timeout_ms`, and one that failed is not tried again in the same scrape; on
        failure the last numbers stay."""
        ex = self.ex
        ok, body = await readiness(ex, draining=self.draining)
        checks = body["checks"]
        self.ready = (ok, {name: bool(c["ok"]) if "ok" in c else all(v["ok"] for v in c.values())
                           for name, c in checks.items()})
        if not checks["store"]["ok"]:
            self.refresh_errors += 1
            return
        try:
            rows = await asyncio.wait_for(ex.store.fetch(
                f"SELECT currency, state, COUNT(*) AS n, MIN(updated_at) AS oldest FROM withdraws "
                f"WHERE state IN ({','.join('?' * len(HOLDING))}) GROUP BY currency, state", *HOLDING),
                ex.config.ops.ready_timeout_ms / 1000)
            now = time.time()
            self.withdrawals = {(str(r["currency"]), str(r["state"])): (int(r["n"]), max(0.0, now - int(r["oldest"]) / 1000))
                                for r in rows}
        except Exception as e:
            self.refresh_errors += 1
            log.debug("metrics: withdrawals not read (%r)", e)

    def render(self) -> bytes:
        for actor in self.actors():  # actors started outside the exchange (wallets, tonces)
            self.watch(actor)
        return generate_latest(self.registry)


class _Live(Collector):
    """Reads the node's state at scrape time."""

    def __init__(self, m: NodeMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m, ex = self.m, self.m.ex
        info = GaugeMetricFamily("exchange_node_info", "This process: node name, boot id, store backend",
                                 labels=["node", "boot", "store"])
        info.add_metric([ex.node.name, ex.leases.boot, ex.store.backend], 1)
        yield info
        yield GaugeMetricFamily("exchange_uptime_seconds", "Seconds since this process started",
                                value=time.time() - ex.started_at)
        if m.ready is not None:
            yield GaugeMetricFamily("exchange_ready", "1 when /readyz would answer 200 (at this scrape)", value=int(m.ready[0]))
            check = GaugeMetricFamily("exchange_ready_check", "1 when a readiness check passes: store, bus, leases, "
                                      "mailboxes, queues, draining", labels=["check"])
            for name, good in sorted(m.ready[1].items()):
                check.add_metric([name], int(good))
            yield check

        accepted = CounterMetricFamily("exchange_orders_accepted", "Orders accepted (funds locked) through this node",
                                       labels=["market"])
        for mid in ex.config.markets:
            accepted.add_metric([mid], ex.accepted.get(mid, 0))
        yield accepted
        trades = CounterMetricFamily("exchange_trades", "Matches committed by this node's market actors (a trade: "
                                     "one taker against one maker); from 0 when a market is adopted", labels=["market"])
        for mid, actor in ex.markets.items():
            trades.add_metric([mid], actor.trades_total)
        yield trades

        depth = GaugeMetricFamily("exchange_mailbox_depth", "Messages waiting in an actor's mailbox", labels=["actor"])
        cap = GaugeMetricFamily("exchange_mailbox_capacity", "An actor's mailbox size", labels=["actor"])
        restarts = CounterMetricFamily("exchange_actor_restarts", "Times an actor crashed and was rebuilt from the store",
                                       labels=["actor"])
        fenced = GaugeMetricFamily("exchange_actor_fenced", "1 when an actor stopped because another node took over",
                                   labels=["actor"])
        for a in m.actors():
            depth.add_metric([a.name], a.depth)
            cap.add_metric([a.name], a.mailbox.maxsize)
            restarts.add_metric([a.name], a.restarts)
            fenced.add_metric([a.name], int(a.fenced))
        yield from (depth, cap, restarts, fenced)

        held = GaugeMetricFamily("exchange_market_lease_held", "1 when this node holds the market's lease and runs it",
                                 labels=["market"])
        epoch = GaugeMetricFamily("exchange_market_epoch", "The fencing epoch this node runs the market under",
                                  labels=["market"])
        renewed = GaugeMetricFamily("exchange_market_lease_renewed_age_seconds",
                                    "Seconds since this node last renewed the market's lease", labels=["market"])
        halted = GaugeMetricFamily("exchange_market_halted", "1 when the market is halted", labels=["market"])
        primary = GaugeMetricFamily("exchange_market_primary", "1 when this node is the market's primary",
                                    labels=["market"])
        off_primary = GaugeMetricFamily("exchange_market_off_primary", "1 when this node runs the market but another "
                                        "node is its primary (a failover left it here)", labels=["market"])
        own = ex.ownership
        now = time.monotonic()
        for mid in ex.config.markets:
            running = ex.markets.get(mid)
            held.add_metric([mid], int(running is not None and not running.fenced))
            primary.add_metric([mid], int(own is not None and own.placement.primary_of(mid) == ex.node.name))
            if running is not None:
                placed = own.placement.primary_of(mid) if own is not None else None
                off_primary.add_metric([mid], int(not running.fenced and placed not in (None, ex.node.name)))
                epoch.add_metric([mid], running.epoch)
                halted.add_metric([mid], int(running.halted))
                if own is not None and mid in own.last_renewed:
                    renewed.add_metric([mid], now - own.last_renewed[mid])
        yield from (held, epoch, renewed, halted, primary, off_primary)
        yield from _shard_metrics(ex)
        if own is not None:
            yield GaugeMetricFamily("exchange_lease_seconds", "The lease of a market ([actors] lease_ms)",
                                    value=own.lease_s)
            yield GaugeMetricFamily("exchange_lease_self_fence_seconds",
                                    "Unrenewed this long, a market stops matching on its own", value=own.lease_s * SELF_FENCE)

        errors = CounterMetricFamily("exchange_store_errors", "Failed store calls: timeout, unreachable, server",
                                     labels=["kind"])
        for kind, n in getattr(ex.store, "errors", {}).items():
            errors.add_metric([kind], n)
        yield errors
        calls = getattr(ex.store, "calls", None)
        if calls is not None:
            yield CounterMetricFamily("exchange_store_transactions", "Store transactions (a statement outside one "
                                      "counts as one)", value=calls.transactions)
            yield CounterMetricFamily("exchange_store_round_trips", "Store round trips: statements, BEGIN and COMMIT "
                                      "(a pipelined batch counts as one)", value=calls.round_trips)
        pool_use = getattr(ex.store, "pool_use", None)
        if pool_use is not None:
            p = pool_use()
            conns = GaugeMetricFamily("exchange_store_pool_connections", "PostgreSQL connections of this node's pool",
                                      labels=["state"])
            conns.add_metric(["open"], p["open"])
            conns.add_metric(["busy"], p["busy"])
            yield conns
            yield GaugeMetricFamily("exchange_store_pool_max", "The pool's maximum ([exchange] pool_max)", value=p["max"])

        link = ex.link
        if link is not None:
            yield GaugeMetricFamily("exchange_bus_connected", "1 while the RabbitMQ connection is up",
                                    value=int(link.connected))
            bus_err = CounterMetricFamily("exchange_bus_errors", "Bus failures: hand-overs left to the pending sweep, "
                                          "events dropped", labels=["kind"])
            bus_err.add_metric(["handover"], link.handover_failures)
            bus_err.add_metric(["event_dropped"], link.dropped_events)
            yield bus_err
            yield CounterMetricFamily("exchange_bus_published", "Messages sent to market and account shard queues "
                                      "(a list of orders or requests counts once)", value=link.published)
            yield CounterMetricFamily("exchange_bus_handed_over", "Accepted orders sent to their market's queue",
                                      value=link.handed_over)
            yield CounterMetricFamily("exchange_bus_consumed", "Messages taken from this node's market and account "
                                      "shard queues", value=link.consumed)
            yield CounterMetricFamily("exchange_bus_replies", "Answers sent back to nodes that asked a market or an "
                                      "account shard here (a list of answers counts once)", value=link.replies)
            yield CounterMetricFamily("exchange_bus_events_published", "Event messages (lists of envelopes) sent to the "
                                      "other nodes",
                                      value=link.events_published)
            yield CounterMetricFamily("exchange_bus_events_unfollowed", "Envelopes not sent to the other nodes: none "
                                      "of them follows any of their keys", value=link.events_unfollowed)
            yield CounterMetricFamily("exchange_bus_events_consumed", "Event messages the bus delivered to this "
                                      "node (its own included, which it drops)", value=link.events_consumed)
            yield GaugeMetricFamily("exchange_bus_event_bindings", "Keys (markets, members) this node receives "
                                    "other nodes' events for, because something on it follows them", value=len(ex.bus.bound()))
            queued = GaugeMetricFamily("exchange_bus_queued", "Messages waiting on the bus for a market this node runs",
                                       labels=["market"])
            for mid, n in m.queued.items():
                queued.add_metric([mid], n)
            yield queued

        yield GaugeMetricFamily("exchange_websocket_clients", "Open websocket connections", value=m.ws_clients())

        wallet_up = GaugeMetricFamily("exchange_wallet_up", "1 while the wallet's daemon answers", labels=["currency"])
        lag = GaugeMetricFamily("exchange_wallet_lag_blocks", "Blocks the wallet's last complete scan is behind the "
                                "chain (the daemon's headers)", labels=["currency"])
        cycle = GaugeMetricFamily("exchange_wallet_cycle_age_seconds", "Seconds since the wallet's last complete cycle",
                                  labels=["currency"])
        wall = time.time()
        for code, w in ex.funds.actors.items():
            h = w.health
            wallet_up.add_metric([code], int(h.get("status") == "ok"))
            scanned = h.get("scanned_height")
            tip = max(int(h.get("headers") or 0), int(h.get("height") or 0))
            if scanned is not None:
                lag.add_metric([code], max(0, tip - int(scanned)))
            if h.get("status") == "ok" and h.get("last_cycle"):
                cycle.add_metric([code], max(0.0, wall - int(h["last_cycle"]) / 1000))
        yield from (wallet_up, lag, cycle)

        waiting = GaugeMetricFamily("exchange_withdrawals_waiting", "Withdrawals holding funds, by state (the store's "
                                    "numbers, the same on every node)", labels=["currency", "state"])
        oldest = GaugeMetricFamily("exchange_withdrawals_oldest_seconds", "Age of the oldest unchanged withdrawal in a "
                                   "waiting state", labels=["currency", "state"])
        for (code, state), (n, age) in sorted(m.withdrawals.items()):
            waiting.add_metric([code, state], n)
            oldest.add_metric([code, state], age)
        yield from (waiting, oldest)
        yield CounterMetricFamily("exchange_metrics_refresh_errors", "Scrapes that could not read the store or the bus "
                                  "in time (their numbers are the previous ones)", value=m.refresh_errors)


async def readiness(ex: ExchangeCore, *, draining: bool = False) -> tuple[bool, dict[str, Any]]:
    """Whether a load balancer should send this node traffic, and why not.

    - the store and (in a cluster) the bus each answer a round trip within `[ops] ready_timeout_ms`;
    - every market this node runs is matching (not fenced) under a lease renewed within half a lease
      (a node that cannot renew stops matching at SELF_FENCE of the lease: this says so before);
    - every actor's mailbox and every owned market's bus queue is below its bound.
    A market whose primary this node is but which another node runs under a valid lease is
    reported, not failed: orders for it still go through the bus. One that nobody runs fails the
    check until this node (or a standby) has adopted it.
    """
    conf = ex.config.ops
    timeout = conf.ready_timeout_ms / 1000
    checks: dict[str, Any] = {}
    ok = not draining
    if draining:
        checks["draining"] = {"ok": False, "error": "shutting down"}

    started = time.perf_counter()
    leases: dict[str, Any] = {}
    try:  # one round trip: the store answers, and says who holds each lease
        leases = {str(r["market"]): r for r in await asyncio.wait_for(ex.leases.all(), timeout)}
        checks["store"] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
    except Exception as e:
        ok = False
        checks["store"] = {"ok": False, "error": _why(e, timeout)}
    if ex.link is not None:
        started = time.perf_counter()
        try:
            await ex.link.ping(timeout)
            checks["bus"] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
        except Exception as e:
            ok = False
            checks["bus"] = {"ok": False, "error": _why(e, timeout)}

    own = ex.ownership
    markets: dict[str, Any] = {}
    now = time.monotonic()
    for mid in ex.config.markets:
        actor = ex.markets.get(mid)
        if actor is None:
            if own is not None and own.placement.primary_of(mid) == ex.node.name:
                lease = leases.get(mid)
                wall = now_ms()
                elsewhere = (ex.link is not None and lease is not None and lease["owner"] not in ("", HANDED_OVER)
                             and int(lease["expires_at"]) > wall and lease["owner"] != ex.leases.owner)
                why = f"run by node {lease['node']}" if elsewhere and lease is not None else (
                    own.refusals.get(mid, "nobody runs it") if own is not None else "nobody runs it")
                markets[mid] = {"ok": elsewhere, "runs_here": False, "note": why}
                ok = ok and elsewhere
            continue
        age = now - own.last_renewed.get(mid, 0.0) if own is not None else 0.0
        good = actor.running and not actor.fenced and (own is None or age < own.lease_s / 2)
        markets[mid] = {"ok": good, "runs_here": True, "epoch": actor.epoch, "renewed_ago_s": round(age, 2)}
        ok = ok and good
    checks["leases"] = markets

    deep = {a.name: a.depth for a in [*ex.markets.values(), *ex.accounts, *ex.extra_actors] if a.depth > conf.ready_max_mailbox}
    checks["mailboxes"] = {"ok": not deep, "limit": conf.ready_max_mailbox, **({"over": deep} if deep else {})}
    ok = ok and not deep
    if ex.link is not None and ex.markets and checks["bus"]["ok"]:  # a bus that did not answer: not asked again
        over: dict[str, int] = {}
        queued: dict[str, int] = {}
        for mid in list(ex.markets):
            n = await ex.link.queue_depth(mid, timeout)
            if n is None:
                continue
            queued[mid] = n
            if n > conf.ready_max_queued:
                over[mid] = n
        ex.metrics.queued = queued
        checks["queues"] = {"ok": not over, "limit": conf.ready_max_queued, **({"over": over} if over else {})}
        ok = ok and not over
    return ok, {"ready": ok, "node": ex.node.name, "boot": ex.leases.boot, "checks": checks}


def _why(e: BaseException, timeout: float) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {timeout:.1f} s"
    return f"{type(e).__name__}: {e}"[:300]


def _shard_metrics(ex: ExchangeCore) -> list[GaugeMetricFamily]:
    """Account shards leased by this node (a cluster only), as markets are: held, epoch, off primary."""
    shards = ex.shards
    if shards is None or not shards.map.leased:
        return []
    held = GaugeMetricFamily("exchange_account_shard_held", "1 when this node holds the account shard's lease and "
                             "runs it", labels=["shard"])
    epoch = GaugeMetricFamily("exchange_account_shard_epoch", "The fencing epoch this node runs the account shard "
                              "under", labels=["shard"])
    off_primary = GaugeMetricFamily("exchange_account_shard_off_primary", "1 when this node runs the account shard "
                                    "but another node is its primary (a failover left it here)", labels=["shard"])
    for shard, actor in sorted(shards.actors.items()):
        placed = shards.placement.primary_of(lease_name(shard))
        runs = not actor.fenced and shard in actor.epochs
        held.add_metric([str(shard)], int(runs))
        off_primary.add_metric([str(shard)], int(runs and placed not in (None, ex.node.name)))
        at = actor.epochs.get(shard)
        if at is not None:
            epoch.add_metric([str(shard)], at)
    return [held, epoch, off_primary]

