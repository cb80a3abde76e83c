"""Snapshot generation benchmark for both liability-proof schemes.

Run: ``python bench/bench_solvency.py [--accounts 100000] [--all-proofs]``. Target: building
both trees for 100k accounts (all proofs then derivable in O(log n)) in under 10 s total.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
    return 0 if total < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
