"""`python -m node admin …`: the admin actions an operator needs from a shell, beside a running node.

    python -m node admin grant EMAIL ROLE            give a role (admin, support, finance)
    python -m node admin revoke EMAIL ROLE
    python -m node admin staff                       who has which role
    python -m node admin withdraws                   the withdrawals waiting for an admin
    python -m node admin approve WITHDRAW_ID         approve a withdrawal (the wallet pays it)
    python -m node admin reject WITHDRAW_ID --reason "…"
    python -m node admin process WITHDRAW_ID [--bank-ref REF]   a bank transfer made / run the wallet now
    python -m node admin bank-deposit CUR REFERENCE AMOUNT BANK_REF   credit a fiat deposit
    python -m node admin holds                       members whose withdrawals are on hold (re-org shortfalls)
    python -m node admin release-hold HOLD_ID --resolution "…"   let the member withdraw again
    python -m node admin reset-2fa EMAIL --reason "…"   switch off a member's second factors (TOTP, SMS, codes)
    python -m node admin log [--limit N]             the audit log, newest first

They need the server key as `serve` does (`--key-file`, `EXCHANGE_KEY_FILE`, `EXCHANGE_SECRET_KEY`,
else var/secret.key; a wrong one is refused at start), since a 2FA reset opens sealed secrets.
They act as the `cli` admin (the shell has the database's credentials anyway) through the same
service as the admin pages, so every one of them is checked and lands in the audit log. Balance
corrections are not here: they need two people, and the shell is nobody in particular.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Awaitable, Callable
from typing import Any

from node.admin import audit, roles
from node.admin.roles import Actor
from node.admin.service import Admin
from node.exchange import Exchange
from node.money import format_units

Run = Callable[[argparse.Namespace, Callable[[Exchange], Awaitable[Any]]], Awaitable[Any]]
MakeAdmin = Callable[[Exchange], Awaitable[Admin]]


def actor() -> Actor:
    try:
        who = getpass.getuser()
    except Exception:  # no user name in this environment: still the shell
        who = "?"
    return Actor(None, f"cli:{who}", roles.CLI_ACTOR.roles, "cli")


def _w(ex: Exchange, w: dict[str, Any]) -> str:
    cur = ex.config.currencies.get(str(w["currency"]))
    amount = format_units(int(w["amount"]), cur.precision) if cur else str(w["amount"])
    return f"#{w['id']} {w['sn']} member {w['member_id']} {amount} {str(w['currency']).upper()} to {w['address']}: {w['state']}" \
        + (f" ({w['note']})" if w.get("note") else "")


async def run(args: argparse.Namespace, with_exchange: Run, make_admin: MakeAdmin) -> int:
    """One admin command, on the admin service the composition root makes (node/bootstrap.py)."""
    async def go(ex: Exchange) -> int:
        svc, who = await make_admin(ex), actor()
        cmd = args.admin_cmd
        if cmd == "grant":
            print("granted" if await svc.grant(who, args.email, args.role) else "already had it")
        elif cmd == "revoke":
            print("revoked" if await svc.revoke(who, args.email, args.role) else "did not have it")
        elif cmd == "staff":
            for s in await roles.staff(ex.store, ex.config):
                print(f"{s['email']}\t{s['role']}\t{s['granted_by']}")
        elif cmd == "withdraws":
            for w in await svc.withdraw_queue():
                print(_w(ex, w))
        elif cmd == "approve":
            print(_w(ex, await svc.approve_withdraw(who, args.id)))
        elif cmd == "reject":
            print(_w(ex, await svc.reject_withdraw(who, args.id, args.reason)))
        elif cmd == "process":
            print(_w(ex, await svc.process_withdraw(who, args.id, args.bank_ref or "")))
        elif cmd == "bank-deposit":
            d = await svc.confirm_bank_deposit(who, args.currency, args.reference, args.amount, args.bank_ref)
            print(f"deposit #{d['id']} credited to member {d['member_id']}")
        elif cmd == "holds":
            for h in await svc.freezes():
                cur = ex.config.currencies.get(str(h["currency"]))
                short = format_units(int(h["shortfall"]), cur.precision) if cur else str(h["shortfall"])
                print(f"#{h['id']} member {h['member_id']} {h['email']} {str(h['currency']).upper()} shortfall {short}: {h['reason']}")
        elif cmd == "release-hold":
            h = await svc.release_freeze(who, args.id, args.resolution)
            print(f"hold #{h['id']} released: member {h['member_id']} may withdraw again")
        elif cmd == "reset-2fa":
            member = await ex.member_by_email(args.email)
            done = await svc.reset_2fa(who, int(member["id"]), args.reason)
            print(f"two-factor authentication of member {member['id']} reset" if done
                  else f"member {member['id']} had no second factor")
        elif cmd == "log":
            for a in await audit.entries(ex.store, limit=args.limit):
                print(f"{a['created_at']}\t{a['actor']}\t{a['action']}\t{a['target']}\t{'ok' if a['ok'] else 'REFUSED'}\t{a['detail']}")
        return 0

    result: int = await with_exchange(args, go)
    return result


def add_arguments(sub: Any, handler: Callable[[argparse.Namespace], Awaitable[int]]) -> None:
    """The `admin` command and its subcommands, for node/__main__.py's parser."""
    p = sub.add_parser("admin", help="admin actions: roles, withdrawals, bank deposits, audit log")
    a = p.add_subparsers(dest="admin_cmd", required=True)
    for name in ("grant", "revoke"):
        x = a.add_parser(name, help=f"{name} a role ({', '.join(roles.ROLES)})")
        x.add_argument("email")
        x.add_argument("role", choices=roles.ROLES)
    a.add_parser("staff", help="who has which role")
    a.add_parser("withdraws", help="withdrawals waiting for an admin")
    x = a.add_parser("approve", help="approve a withdrawal")
    x.add_argument("id", type=int)
    x = a.add_parser("reject", help="reject a withdrawal (funds back to the member)")
    x.add_argument("id", type=int)
    x.add_argument("--reason", required=True)
    x = a.add_parser("process", help="record a bank transfer made, or run the coin wallet now")
    x.add_argument("id", type=int)
    x.add_argument("--bank-ref", default="")
    x = a.add_parser("bank-deposit", help="credit a fiat deposit that arrived at the bank")
    for name in ("currency", "reference", "amount", "bank_ref"):
        x.add_argument(name)
    a.add_parser("holds", help="members whose withdrawals are on hold")
    x = a.add_parser("release-hold", help="let a member withdraw again (the shortfall is settled)")
    x.add_argument("id", type=int)
    x.add_argument("--resolution", required=True)
    x = a.add_parser("reset-2fa", help="switch off a member's second factors (audited with the reason)")
    x.add_argument("email")
    x.add_argument("--reason", required=True)
    x = a.add_parser("log", help="the admin audit log, newest first")
    x.add_argument("--limit", type=int, default=50)
    p.set_defaults(fn=handler)
