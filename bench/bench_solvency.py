"""Snapshot generation benchmark for both liability-proof schemes.

Run: ``python bench/bench_solvency.py [--accounts 100000] [--all-proofs]``. Target: building
both trees for 100k accounts (all proofs then derivable in O(log n)) in under 10 s total.

``--store`` (on by default; ``--no-store`` skips it) then takes a real snapshot from an exchange
store holding that many funded accounts (SQLite in a temporary directory, or ``--database URL``)
while members keep trading through the actors, and prints the snapshot's time, how many orders
and trades went through during it compared with before it, and the longest event-loop stall:
the proof that trading was not stopped. Exit status 1 if the snapshot misses 10 s or trading
stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.bootstrap import start_exchange
from node.solvency import maxwell, v2  # noqa: E402


def _accounts(count: int, seed: int = 7) -> list[tuple[str, str]]:
    """Deterministic fake balances with up to 8 decimals, as the store would hand them over."""
    rng = random.Random(seed)
    return [
        (f"member{i}@example.com", f"{rng.randrange(10**6)}.{rng.randrange(10**8):08d}") for i in range(count)
    ]


def _timed(label: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    took = time.perf_counter() - start
    print(f"{label:<44} {took:8.3f} s")
    return out, took


def main(argv: list[str] | None = None) -> int:
    """Print build, per-proof and verify timings; exit 1 if the 10 s build target is missed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000, help="proofs to cut and verify per scheme")
    parser.add_argument("--all-proofs", action="store_true", help="also cut every member's proof")
    parser.add_argument("--store", action=argparse.BooleanOptionalAction, default=True,
                        help="also snapshot a live exchange store while trading goes on")
    parser.add_argument("--database", default=None, help="database URL for --store (default: SQLite in a temp dir)")
    parser.add_argument("--traders", type=int, default=8, help="concurrent trading loops during --store")
    args = parser.parse_args(argv)

    accounts = _accounts(args.accounts)
    users = [u for u, _ in accounts]
    sample = random.Random(1).sample(users, min(args.sample, len(users)))
    print(f"{args.accounts} accounts, sample of {len(sample)} proofs")

    mtree, t_max = _timed("maxwell build (tree + root)", lambda: maxwell.build_tree(accounts, precision=8))
    vtree, t_v2 = _timed("v2 build (tree + padding + root)", lambda: v2.build_tree(accounts, precision=8))
    mroot, vroot = mtree.root_json(), vtree.root_json()
    print(f"  maxwell root sum {mroot['root']['sum']}, v2 height {vroot['height']} ({vtree.size} leaves)")

    schemes: list[tuple[str, Callable[[str], dict[str, Any]], Callable[..., bool], dict[str, Any]]] = [
        ("maxwell", mtree.partial_tree, maxwell.verify, mroot),
        ("v2", vtree.proof, v2.verify, vroot),
    ]
    for name, cut, check, root in schemes:
        start = time.perf_counter()
        proofs = [cut(u) for u in sample]
        t_cut = time.perf_counter() - start
        start = time.perf_counter()
        ok = all(check(p, root) for p in proofs)
        t_chk = time.perf_counter() - start
        if not ok:
            print(f"{name}: a proof failed to verify")
            return 1
        print(
            f"{name + ' cut / verify one proof':<44} {1e6 * t_cut / len(sample):6.1f} µs / {1e6 * t_chk / len(sample):.1f} µs"
        )
        if args.all_proofs:
            start = time.perf_counter()
            for user in users:
                cut(user)
            print(f"{name + f' cut all {len(users)} proofs':<44} {time.perf_counter() - start:8.3f} s")

    total = t_max + t_v2
    print(f"{'snapshot generation, both schemes':<44} {total:8.3f} s (target < 10 s)")
    ok = total < 10
    if args.store:
        import tomllib

        data = tomllib.loads((Path(__file__).resolve().parents[1] / "cluster.toml").read_text())
        with tempfile.TemporaryDirectory(prefix="bench_solvency_") as tmp:
            data["exchange"]["database"] = args.database or f"sqlite:///{tmp}/exchange.db"
            data["exchange"]["sqlite_synchronous"] = "normal"
            ok = asyncio.run(_store_bench(data, args.accounts, args.traders)) and ok
    return 0 if ok else 1


# --------------------------------------------------------------------------- live store


async def _seed(ex: Any, count: int) -> None:
    """`count` members with a BTC deposit each, written in bulk (as many years of sign-ups would)."""
    from node.clock import now_ms

    ts = now_ms()
    rng = random.Random(3)
    first = int(await ex.store.fetchval("SELECT COALESCE(MAX(id), 0) FROM members")) + 1
    ids = range(first, first + count)
    amounts = [rng.randrange(1, 10**9) for _ in ids]
    async with ex.store.transaction() as tx:
        await tx.executemany(
            "INSERT INTO members (id, sn, email, name, activated, created_at) VALUES (?, ?, ?, '', 1, ?)",
            [(i, f"B{i:011d}", f"bench{i}@example.com", ts) for i in ids])
        await tx.executemany(
            "INSERT INTO accounts (member_id, currency, balance, locked) VALUES (?, ?, ?, 0)",
            [(i, code, amt if code == "btc" else 0) for i, amt in zip(ids, amounts, strict=True) for code in ex.config.currencies])
        await tx.executemany(
            "INSERT INTO deposits (member_id, currency, amount, fee, txid, channel, state, confirmations, created_at, done_at) "
            "VALUES (?, 'btc', ?, 0, ?, 'bench', 'accepted', 0, ?, ?)",
            [(i, amt, f"bench:{i}", ts, ts) for i, amt in zip(ids, amounts, strict=True)])
    if ex.store.backend == "postgresql":  # explicit ids: move the identity past them
        await ex.store.execute("SELECT setval(pg_get_serial_sequence('members', 'id'), (SELECT MAX(id) FROM members))")


async def _trade(ex: Any, members: list[int], stop: asyncio.Event, counts: list[int], seed: int) -> None:
    from node.errors import ExchangeError
    from node.exchange import OrderInput

    rng = random.Random(seed)
    while not stop.is_set():
        side = rng.choice(("buy", "sell"))
        price = f"{30000 + rng.randint(-5, 5)}"
        try:
            await ex.submit_order(rng.choice(members), OrderInput("btcusd", side, "0.01", price))
            counts[0] += 1
        except ExchangeError:
            pass


async def _stalls(stop: asyncio.Event, worst: list[float]) -> None:
    """How late a 10 ms timer fires: a snapshot that hogged the event loop would show here."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.01)
        worst[0] = max(worst[0], loop.time() - t - 0.01)


async def _store_bench(data: dict[str, Any], accounts: int, traders: int) -> bool:
    from node.config import parse_config
    from node.solvency.service import SolvencyService

    ex = await start_exchange(parse_config(data, "bench"))
    try:
        start = time.perf_counter()
        await _seed(ex, accounts)
        members = []
        for i in range(20):
            mid = await ex.create_member(f"trader{i}.{secrets.token_hex(3)}@example.com")
            await ex.deposit(mid, "btc", "1000")
            await ex.deposit(mid, "usd", "100000000")
            members.append(mid)
        print(f"\nstore ({ex.store.backend}): {accounts} funded accounts + 20 traders seeded in "
              f"{time.perf_counter() - start:.1f} s; {traders} trading loops running")
        stop = asyncio.Event()
        counts, worst = [0], [0.0]
        tasks = [asyncio.create_task(_trade(ex, members, stop, counts, s)) for s in range(traders)]
        tasks.append(asyncio.create_task(_stalls(stop, worst)))
        trades = "SELECT COUNT(*) FROM trades"
        await asyncio.sleep(1.0)
        o0, t0, w0 = counts[0], int(await ex.store.fetchval(trades)), time.perf_counter()
        worst[0] = 0.0
        await asyncio.sleep(2.0)
        base_s = time.perf_counter() - w0
        o1, t1 = counts[0], int(await ex.store.fetchval(trades))
        stall_before, worst[0] = worst[0], 0.0
        svc = SolvencyService(ex, reserves={})
        w1 = time.perf_counter()
        info = await svc.take_snapshot(assets=False)
        snap_s = time.perf_counter() - w1
        o2, t2 = counts[0], int(await ex.store.fetchval(trades))
        stall = worst[0]
        stop.set()
        await asyncio.gather(*tasks)
        await ex.quiesce()
        funded = {r["currency"]: int(r["s"]) for r in await ex.store.fetch(
            "SELECT currency, SUM(amount) AS s FROM deposits WHERE state = 'accepted' GROUP BY currency")}
        consistent = all(info.totals[c] + info.house[c] == funded.get(c, 0) for c in info.totals)
        before = (o1 - o0) / base_s, (t1 - t0) / base_s
        during = (o2 - o1) / snap_s, (t2 - t1) / snap_s
        print(f"{'snapshot of the live store (read + both trees)':<44} {snap_s:8.3f} s (target < 10 s): "
              f"{info.accounts} leaves, ledger read {info.read_ms} ms, read + build {info.build_ms} ms")
        print(f"{'orders/s, trades/s before the snapshot':<44} {before[0]:8.0f} / {before[1]:.0f}")
        print(f"{'orders/s, trades/s during the snapshot':<44} {during[0]:8.0f} / {during[1]:.0f} "
              f"({o2 - o1} orders, {t2 - t1} trades while it ran)")
        print(f"{'longest event-loop stall before / during it':<44} {1000 * stall_before:8.1f} ms / "
              f"{1000 * stall:.1f} ms")
        print(f"root sums + house = deposits at the snapshot instant: {'yes' if consistent else 'NO'}")
        not_stopped = o2 > o1 and t2 > t1
        print("trading was not stopped by the snapshot" if not_stopped else "TRADING STOPPED during the snapshot")
        return snap_s < 10 and not_stopped and consistent
    finally:
        await ex.stop()


if __name__ == "__main__":
    sys.exit(main())
