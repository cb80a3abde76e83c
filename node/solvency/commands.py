"""`python -m node solvency …`: the admin's commands (take a snapshot, collect assets, declare fiat
reserves, show the latest). The proof verifier is `python -m node.solvency`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from node.solvency import maxwell
from node.solvency.service import SolvencyService
from node.solvency.trees import iso_ms

if TYPE_CHECKING:
    from node.exchange import Exchange


def add_cli_arguments(parser: Any) -> None:
    """`python -m node solvency …`: the admin's side (the verifier is `python -m node.solvency`)."""
    sub = parser.add_subparsers(dest="solvency_cmd", required=True)
    s = sub.add_parser("snapshot", help="take a snapshot now (liabilities, then proof of assets)")
    s.add_argument("--no-assets", action="store_true", help="skip the coin wallets' signatures")
    s.add_argument("--prune", action="store_true", help="then delete snapshots older than [solvency] keep_days")
    a = sub.add_parser("assets", help="(re)collect the coin wallets' signed addresses for a snapshot")
    a.add_argument("--snapshot", type=int, default=None, help="snapshot id (default: the latest)")
    f = sub.add_parser("fiat", help="declare a fiat currency's reserves, with the evidence")
    f.add_argument("currency")
    f.add_argument("amount", help="whole units, e.g. 1250000.00")
    f.add_argument("--evidence", required=True, help="what backs the figure: bank, account, statement date")
    f.add_argument("--by", default="admin", help="who declares it")
    sub.add_parser("show", help="print the latest snapshot's roots, assets and ratios")


async def run_cli(ex: Exchange, args: Any) -> int:
    """Run one `solvency` sub-command against the store; prints what an operator needs to see."""
    svc = SolvencyService(ex)
    try:
        if args.solvency_cmd == "snapshot":
            info = await svc.take_snapshot(assets=not args.no_assets)
            print(f"snapshot {info.id} ({info.name}) at {iso_ms(info.taken_at)}: {info.accounts} accounts, "
                  f"read {info.read_ms} ms, built {info.build_ms} ms")
            for code, total in info.totals.items():
                prec = ex.config.currencies[code].precision
                print(f"  {code}: owed {maxwell.format_units(total, prec)}, house "
                      f"{maxwell.format_units(info.house[code], prec)}, assets {info.assets.get(code, 'skipped')}")
            if args.prune:
                print(f"pruned {await svc.prune()} old snapshot(s)")
        elif args.solvency_cmd == "assets":
            sid = args.snapshot if args.snapshot is not None else int((await svc._snapshot())["id"])
            for code, status in (await svc.collect_assets(sid)).items():
                print(f"{code}: {status}")
        elif args.solvency_cmd == "fiat":
            did = await svc.declare_fiat(args.currency, args.amount, args.evidence, args.by)
            print(f"declaration {did} recorded")
        else:
            doc = await svc.assets()
            roots = {r["currency"]: r for r in (await svc.roots())["currencies"]}
            print(f"snapshot {doc['snapshot']['id']} ({doc['snapshot']['name']}) at {doc['snapshot']['taken_at']}")
            for c in doc["currencies"]:
                r = roots[c["currency"]]
                print(f"  {c['currency']}: owed {c['liabilities']}, assets {c['assets'] or '-'} ({c['status']}), "
                      f"ratio {c['ratio'] or '-'}, v2 root {r['v2']['root']['hash']}")
        return 0
    finally:
        await svc.close()
