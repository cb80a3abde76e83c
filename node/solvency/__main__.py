"""Stand-alone verifier: ``python -m node.solvency verify --root R --proof P``.

Needs only the standard library, so a member can run it without the exchange's stack.
Prints ``OK`` or ``FAIL`` with the user and balance; exit status 0 on OK, 1 on FAIL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node.solvency import verify


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, verify, print one line; usage errors exit 2 like any argparse tool."""
    parser = argparse.ArgumentParser(prog="python -m node.solvency", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("verify", help="check a member's proof against a published root")
    cmd.add_argument("--root", required=True, help="root JSON file")
    cmd.add_argument("--proof", required=True, help="the member's proof / partial tree JSON file")
    cmd.add_argument("--scheme", choices=["auto", "maxwell", "v2"], default="auto")
    cmd.add_argument("--user", help="fail unless the proof is for this user key")
    cmd.add_argument("--balance", help="fail unless the leaf holds exactly this amount (whole coins)")
    args = parser.parse_args(argv)

    try:
        proof, root = _read(args.proof), _read(args.root)
    except OSError as exc:
        print(f"FAIL cannot read input: {exc}")
        return 1
    scheme = "pos-v2" if args.scheme == "v2" else args.scheme
    result = verify(proof, root, scheme=scheme, user=args.user, balance=args.balance)
    fields = [f"scheme={result.scheme}", f"user={result.user}", f"balance={result.balance}"]
    if result.currency:
        fields.append(f"currency={result.currency}")
    if result.ok:
        fields.append(f"total={result.total}")
        print("OK " + " ".join(fields))
        return 0
    print("FAIL " + " ".join(fields) + f" reason={result.reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
