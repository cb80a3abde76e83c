"""Every admin action, in one place, for the admin pages and the admin CLI alike.

Each method takes the `Actor` doing it, checks the actor's permission, does the work through the
module that owns it (the wallets' `Funds`, the exchange's market calls, KYC, tickets, pages), and
writes the audit log: who, what, to whom, from which address, allowed or not, and why it failed when
it did. Nothing reaches a member's money except through here and the ledger.

Manual balance corrections are two-person: one admin (or finance) proposes an amount with a reason,
a *different* one approves it, and only then does one transaction move the balance and write a
ledger row with reason `fix` (ref `adjustment`). A correction that would take a balance below zero
is refused at approval and stays pending.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from node import auth_changes, cms
from node.admin import audit, roles
from node.admin.roles import Actor, Forbidden, check
from node.clock import now_ms
from node.errors import N_, ExchangeError, FormError, FormErrors, InvalidParameter, MemberNotFound
from node.fees import rate_in_force
from node.market.settlement import FIX
from node.money import format_units, parse_units
from node.store import ledger

if TYPE_CHECKING:
    from node.exchange import Exchange
    from node.kyc import Kyc
    from node.tickets import Tickets

log = logging.getLogger(__name__)

T = TypeVar("T")
REASON_MAX = 300
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
SecondFactorReset = Callable[[int, Actor, str], Awaitable[bool]]


def reason_text(value: str, field: str = "reason", required: bool = True) -> str:
    """A one-line reason for the audit log and the member; required where the issue says so."""
    text = " ".join(str(value or "").split())
    if required and not text:
        raise FormError(field, N_("Please give a reason: it is kept in the audit log"))
    if len(text) > REASON_MAX:
        raise FormError(field, N_("Too long: at most {n} characters"), n=REASON_MAX)
    return text


class Admin:
    def __init__(self, ex: Exchange, kyc: Kyc, tickets: Tickets, second_factor_reset: SecondFactorReset | None = None) -> None:
        self.ex = ex
        self.store = ex.store
        self.kyc = kyc
        self.tickets = tickets
        self.second_factor_reset = second_factor_reset
        """The security module's reset of a member's two-factor settings (TOTP secret, SMS phone,
        recovery codes): a coroutine `(member_id, admin, reason) -> bool` (False: the member had
        none), given by the composition root from node/security (`Security.reset_2fa`); without it
        (admin commands) `reset_2fa` says there is none."""

    # -- the audit wrapper ---------------------------------------------------------------------------
    async def _do(self, actor: Actor, permission: str, action: str, target: str, detail: str,
                  work: Callable[[], Awaitable[T]], member_id: int | None = None) -> T:
        """Check, do, log. A refusal or a failure is logged too (with its message), then raised.
        `member_id`: the member concerned (a `member:<id>` target names it already)."""
        if member_id is None and target.startswith("member:") and target[7:].isdigit():
            member_id = int(target[7:])
        try:
            check(actor, permission)
        except Forbidden as e:
            await audit.record(self.store, actor, action, target, f"{detail} | refused: {e.message}".strip(" |"), ok=False,
                               member_id=member_id)
            raise
        try:
            result = await work()
        except ExchangeError as e:
            await audit.record(self.store, actor, action, target, f"{detail} | failed: {e.message}".strip(" |"), ok=False,
                               member_id=member_id)
            raise
        await audit.record(self.store, actor, action, target, detail, member_id=member_id)
        return result

    async def log_view(self, actor: Actor, permission: str, action: str, target: str) -> None:
        """Reads of personal data are logged like actions (and refused like them)."""
        async def nothing() -> None:
            return None

        await self._do(actor, permission, action, target, "", nothing)

    async def member_id_by_email(self, email: str) -> int:
        return int((await self.ex.member_by_email(email))["id"])

    # -- roles ----------------------------------------------------------------------------------------
    async def grant(self, actor: Actor, email: str, role: str) -> bool:
        async def work() -> bool:
            mid = await self.member_id_by_email(email)
            return await roles.grant(self.store, mid, role, actor.label)

        return await self._do(actor, "roles", "role.grant", f"member:{email.strip().lower()}", f"role={role}", work)

    async def revoke(self, actor: Actor, email: str, role: str) -> bool:
        async def work() -> bool:
            mid = await self.member_id_by_email(email)
            if actor.member_id == mid and role == roles.ADMIN:
                raise InvalidParameter("an admin cannot take their own admin role (ask another admin)", "role")
            return await roles.revoke(self.store, mid, role)

        return await self._do(actor, "roles", "role.revoke", f"member:{email.strip().lower()}", f"role={role}", work)

    # -- members --------------------------------------------------------------------------------------
    async def set_login_disabled(self, actor: Actor, member_id: int, disabled: bool, reason: str) -> None:
        """Disabling ends the member's sessions at once (the session loader also refuses disabled
        members) and, through `members.disabled`, the API keys too."""
        text = reason_text(reason, required=disabled)

        async def work() -> None:
            await self._member(member_id)
            if member_id in self.ex.house_members:
                raise InvalidParameter("the house accounts cannot log in anyway", "member")
            async with self.store.transaction() as tx:
                await tx.execute("UPDATE members SET disabled = ? WHERE id = ?", int(disabled), member_id)
                await auth_changes.record(tx, member_id)  # every node drops its cached keys and "may trade"
                if disabled:
                    await tx.execute("DELETE FROM web_sessions WHERE member_id = ?", member_id)

        await self._do(actor, "members.write", "member.disable_login" if disabled else "member.enable_login",
                       f"member:{member_id}", text, work)

    async def set_api_disabled(self, actor: Actor, member_id: int, disabled: bool, reason: str) -> None:
        text = reason_text(reason, required=disabled)

        async def work() -> None:
            await self._member(member_id)
            async with self.store.transaction() as tx:
                await tx.execute("UPDATE members SET api_disabled = ? WHERE id = ?", int(disabled), member_id)
                await auth_changes.record(tx, member_id)

        await self._do(actor, "members.write", "member.disable_api" if disabled else "member.enable_api",
                       f"member:{member_id}", text, work)

    async def reset_2fa(self, actor: Actor, member_id: int, reason: str) -> bool:
        text = reason_text(reason)

        async def work() -> bool:
            await self._member(member_id)
            if self.second_factor_reset is None:
                raise InvalidParameter("two-factor authentication is not part of this exchange yet: there is nothing "
                                       "to reset", "member")
            return await self.second_factor_reset(member_id, actor, text)

        return await self._do(actor, "members.write", "member.reset_2fa", f"member:{member_id}", text, work)

    async def _owner(self, table: str, row_id: int) -> int | None:
        """The member a withdrawal, ticket or correction belongs to (their audit log shows the action)."""
        value = await self.store.fetchval(f"SELECT member_id FROM {table} WHERE id = ?", row_id)
        return None if value is None else int(value)

    async def _member(self, member_id: int) -> dict[str, Any]:
        return await self.ex.member(member_id)

    # -- balance corrections ------------------------------------------------------------------------------
    async def propose_adjustment(self, actor: Actor, member_id: int, currency: str, amount: str, reason: str) -> int:
        """A correction waiting for a second person: `amount` is a signed decimal ("-0.5")."""
        errors: list[FormError] = []
        text = ""
        try:
            text = reason_text(reason)
        except FormError as e:
            errors.append(e)
        cur = self.ex.config.currencies.get(currency)
        units = 0
        if cur is None:
            errors.append(FormError("currency", N_("Choose a currency")))
        else:
            raw = str(amount or "").strip()
            negative = raw.startswith("-")
            try:
                units = parse_units(raw.lstrip("-+").strip(), cur.precision, "amount")
                units = -units if negative else units
            except InvalidParameter:
                errors.append(FormError("amount", N_("Enter an amount like 1.5 or -1.5 with at most {n} decimal places"),
                                        n=cur.precision))
        if errors:
            raise FormErrors(errors)

        async def work() -> int:
            await self._member(member_id)
            value = await self.store.fetchval(
                "INSERT INTO balance_adjustments (member_id, currency, amount, reason, state, proposed_by, proposed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id", member_id, currency, units, text, PENDING,
                actor.member_id if actor.member_id is not None else 0, now_ms())
            return int(value)

        assert cur is not None
        detail = f"{currency} {format_units(units, cur.precision)}: {text}"
        return await self._do(actor, "adjust", "adjust.propose", f"member:{member_id}", detail, work)

    async def decide_adjustment(self, actor: Actor, adjustment_id: int, approve: bool, note: str = "") -> dict[str, Any]:
        """The second person approves (balance and ledger move in one transaction) or rejects it."""
        text = reason_text(note, "note", required=not approve)

        async def work() -> dict[str, Any]:
            adj = await self.store.fetchrow("SELECT * FROM balance_adjustments WHERE id = ?", adjustment_id)
            if adj is None:
                raise InvalidParameter(f"adjustment {adjustment_id} does not exist", "id")
            if adj["state"] != PENDING:
                raise InvalidParameter(f"adjustment {adjustment_id} is already {adj['state']}", "id")
            if actor.member_id is None:
                raise Forbidden("a correction needs two people: approve it in the admin area, not from the shell")
            if int(adj["proposed_by"]) == actor.member_id:
                raise Forbidden("a correction needs a second admin: you proposed this one")
            ts = now_ms()
            async with self.store.transaction() as tx:
                n = await tx.execute(
                    "UPDATE balance_adjustments SET state = ?, decided_by = ?, decided_at = ?, note = ? "
                    "WHERE id = ? AND state = ?", APPROVED if approve else REJECTED, actor.member_id, ts, text,
                    adjustment_id, PENDING)
                if n != 1:
                    raise InvalidParameter(f"adjustment {adjustment_id} was decided meanwhile", "id")
                if approve:
                    amount, member, cur = int(adj["amount"]), int(adj["member_id"]), str(adj["currency"])
                    await ledger.entry(tx, member, cur, amount, 0, FIX, "adjustment", adjustment_id, ts, InvalidParameter(
                        "the member's available balance is too low for this correction (it stays pending)", "amount"))
            row = await self.store.fetchrow("SELECT * FROM balance_adjustments WHERE id = ?", adjustment_id)
            assert row is not None
            return dict(row)

        return await self._do(actor, "adjust", "adjust.approve" if approve else "adjust.reject",
                              f"adjustment:{adjustment_id}", text, work,
                              await self._owner("balance_adjustments", adjustment_id))

    async def adjustments(self, state: str | None = PENDING, member_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = ("SELECT a.*, m.email, p.email AS proposer, d.email AS decider FROM balance_adjustments a "
               "JOIN members m ON m.id = a.member_id LEFT JOIN members p ON p.id = a.proposed_by "
               "LEFT JOIN members d ON d.id = a.decided_by WHERE 1 = 1")
        args: list[Any] = []
        if state is not None:
            sql += " AND a.state = ?"
            args.append(state)
        if member_id is not None:
            sql += " AND a.member_id = ?"
            args.append(member_id)
        return [dict(r) for r in await self.store.fetch(sql + " ORDER BY a.id DESC LIMIT ?", *args, limit)]

    # -- markets --------------------------------------------------------------------------------------------
    async def set_halted(self, actor: Actor, market: str, halted: bool, reason: str = "") -> None:
        text = reason_text(reason, required=False)

        async def work() -> None:
            await self.ex.set_halted(market, halted)

        await self._do(actor, "markets", "market.halt" if halted else "market.resume", f"market:{market}", text, work)

    async def cancel_all(self, actor: Actor, market: str, reason: str = "") -> int:
        text = reason_text(reason, required=False)

        async def work() -> int:
            return len(await self.ex.cancel_all(None, None, market))

        n = await self._do(actor, "markets", "market.cancel_all", f"market:{market}", text, work)
        return n

    async def set_fees(self, actor: Actor, market: str, maker: str, taker: str) -> dict[str, int]:
        async def work() -> dict[str, int]:
            for name, value in (("maker_fee", maker), ("taker_fee", taker)):
                if not str(value or "").strip():
                    raise FormError(name, N_("This field is required"))
            return await self.ex.set_fees(market, str(maker).strip(), str(taker).strip())

        before = await self.fees_of(market) if market in self.ex.config.markets else ("?", "?")
        detail = f"maker {before[0]} -> {maker}, taker {before[1]} -> {taker}"
        return await self._do(actor, "markets", "market.fees", f"market:{market}", detail, work)

    async def fees_of(self, market: str) -> tuple[str, str]:
        """The fee rates in force (stored by the market actor when changed, else the configured ones)."""
        maker, taker = await rate_in_force(self.store, self.ex.market(market))
        return format_units(maker, 8), format_units(taker, 8)

    # -- deposits and withdrawals ------------------------------------------------------------------------------
    async def approve_withdraw(self, actor: Actor, withdraw_id: int) -> dict[str, Any]:
        return await self._do(actor, "funds", "withdraw.approve", f"withdraw:{withdraw_id}", "",
                              lambda: self.ex.funds.approve_withdraw(withdraw_id, actor.label),
                              await self._owner("withdraws", withdraw_id))

    async def reject_withdraw(self, actor: Actor, withdraw_id: int, reason: str) -> dict[str, Any]:
        text = reason_text(reason)
        return await self._do(actor, "funds", "withdraw.reject", f"withdraw:{withdraw_id}", text,
                              lambda: self.ex.funds.reject_withdraw(withdraw_id, text),
                              await self._owner("withdraws", withdraw_id))

    async def process_withdraw(self, actor: Actor, withdraw_id: int, bank_ref: str = "") -> dict[str, Any]:
        """Fiat: record the bank transfer made (with the bank's reference). Coins: run the wallet's cycle
        now (it pays accepted withdrawals and looks up stuck ones), where this node runs that wallet."""
        async def work() -> dict[str, Any]:
            w = await self.ex.funds.withdraw(withdraw_id)
            cur = self.ex.config.currencies.get(str(w["currency"]))
            if cur is not None and cur.wallet is not None and cur.wallet.channel == "bank":
                if not bank_ref.strip():
                    raise FormError("bank_ref", N_("Enter the bank's reference of the transfer"))
                return await self.ex.funds.complete_bank_withdraw(withdraw_id, bank_ref)
            if w["state"] not in ("accepted", "processing"):
                raise InvalidParameter(f"withdraw {w['sn']} is {w['state']}: approve it first", "id")
            if w["currency"] in self.ex.funds.actors:
                await self.ex.funds.poll(str(w["currency"]))
            else:
                self.ex.funds.wake(str(w["currency"]))
            return await self.ex.funds.withdraw(withdraw_id)

        return await self._do(actor, "funds", "withdraw.process", f"withdraw:{withdraw_id}", bank_ref.strip(), work,
                              await self._owner("withdraws", withdraw_id))

    async def confirm_bank_deposit(self, actor: Actor, currency: str, reference: str, amount: str,
                                   bank_ref: str) -> dict[str, Any]:
        detail = f"{currency} {amount} reference {reference} bank {bank_ref}"
        return await self._do(actor, "funds", "deposit.bank_confirm", f"reference:{reference}", detail,
                              lambda: self.ex.funds.confirm_bank_deposit(currency, reference, amount, bank_ref))

    async def resolve_alert(self, actor: Actor, alert_id: int, resolution: str) -> None:
        text = reason_text(resolution, "resolution")
        await self._do(actor, "funds", "alert.resolve", f"alert:{alert_id}", text,
                       lambda: self.ex.funds.resolve_alert(alert_id, text))

    async def release_freeze(self, actor: Actor, freeze_id: int, resolution: str) -> dict[str, Any]:
        """Let a member withdraw again once the shortfall of a reversed deposit is settled."""
        text = reason_text(resolution, "resolution")
        member = await self.store.fetchval("SELECT member_id FROM withdraw_freezes WHERE id = ?", freeze_id)
        return await self._do(actor, "funds", "withdraw_hold.release", f"withdraw_hold:{freeze_id}", text,
                              lambda: self.ex.funds.release_freeze(freeze_id, text, actor.label),
                              int(member) if member is not None else None)

    async def freezes(self) -> list[dict[str, Any]]:
        rows = await self.ex.funds.freezes()
        for h in rows:
            h["email"] = await self.store.fetchval("SELECT email FROM members WHERE id = ?", h["member_id"])
        return rows

    # -- KYC ------------------------------------------------------------------------------------------------------
    async def kyc_approve(self, actor: Actor, member_id: int, level: int = 1) -> None:
        await self._do(actor, "kyc", "kyc.approve", f"member:{member_id}", f"level={level}",
                       lambda: self.kyc.approve(member_id, actor.member_id, level))

    async def kyc_reject(self, actor: Actor, member_id: int, reason: str) -> None:
        await self._do(actor, "kyc", "kyc.reject", f"member:{member_id}", " ".join(reason.split())[:REASON_MAX],
                       lambda: self.kyc.reject(member_id, actor.member_id, reason))

    # -- tickets ------------------------------------------------------------------------------------------------
    async def ticket_reply(self, actor: Actor, ticket_id: int, body: str, file: Any) -> int:
        if actor.member_id is None:
            raise Forbidden("tickets are answered in the admin area")
        staff_id = actor.member_id
        return await self._do(actor, "tickets", "ticket.reply", f"ticket:{ticket_id}", f"{len(body)} characters",
                              lambda: self.tickets.comment(ticket_id, staff_id, True, body, file),
                              await self._owner("tickets", ticket_id))

    async def ticket_state(self, actor: Actor, ticket_id: int, state: str) -> bool:
        return await self._do(actor, "tickets", "ticket.close" if state == "closed" else "ticket.reopen",
                              f"ticket:{ticket_id}", "", lambda: self.tickets.set_state(ticket_id, state, None))

    async def ticket_assign(self, actor: Actor, ticket_id: int, to_me: bool) -> None:
        who = actor.member_id if to_me else None
        await self._do(actor, "tickets", "ticket.assign", f"ticket:{ticket_id}", f"to {actor.label if to_me else 'nobody'}",
                       lambda: self.tickets.assign(ticket_id, who))

    # -- pages ------------------------------------------------------------------------------------------------------
    async def cms_save(self, actor: Actor, slug: str, lang: str, title: str, body: str) -> None:
        await self._do(actor, "cms", "cms.save", f"page:{slug}:{lang}", title[:100],
                       lambda: cms.save(self.store, slug, lang, title, body, actor.label))

    # -- reads --------------------------------------------------------------------------------------------------
    async def search(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        """Members by e-mail, name (the account's or the identity's), phone, deposit address, number or id."""
        q = " ".join(str(query or "").split())[:200]
        if not q:
            rows = await self.store.fetch("SELECT * FROM members ORDER BY id DESC LIMIT ?", limit)
            return [dict(r) for r in rows if int(r["id"]) not in self.ex.house_members]
        like = "%" + q.lower().replace("\\", "").replace("%", "").replace("_", "\\_") + "%"
        phone = "".join(c for c in q if c.isdigit() or c == "+")
        ids: list[int] = []
        queries: list[tuple[str, tuple[Any, ...]]] = [
            ("SELECT id FROM members WHERE LOWER(email) LIKE ? ESCAPE '\\' OR LOWER(name) LIKE ? ESCAPE '\\' OR sn = ?",
             (like, like, q.upper())),
            ("SELECT member_id AS id FROM kyc_profiles WHERE LOWER(full_name) LIKE ? ESCAPE '\\'", (like,)),
            ("SELECT member_id AS id FROM deposit_addresses WHERE address = ? OR address = ?", (q, q.upper())),
        ]
        if len(phone) >= 5:
            queries.append(("SELECT member_id AS id FROM kyc_profiles WHERE phone LIKE ?", (f"%{phone.lstrip('+')}%",)))
            queries.extend(await self._security_phone_queries(phone))
        if q.isdigit() and len(q) < 19:
            queries.append(("SELECT id FROM members WHERE id = ?", (int(q),)))
        for sql, args in queries:
            for r in await self.store.fetch(sql + " LIMIT ?", *args, limit):
                if int(r["id"]) not in ids and int(r["id"]) not in self.ex.house_members:
                    ids.append(int(r["id"]))
        out = []
        for mid in ids[:limit]:
            row = await self.store.fetchrow("SELECT * FROM members WHERE id = ?", mid)
            if row is not None:
                out.append(dict(row))
        return out

    async def _security_phone_queries(self, phone: str) -> list[tuple[str, tuple[Any, ...]]]:
        """The security module keeps members' SMS phone numbers; search them too once its table exists."""
        for table in ("security_phones", "sms_phones", "member_phones"):
            if await self._table_exists(table):
                return [(f"SELECT member_id AS id FROM {table} WHERE phone LIKE ?", (f"%{phone.lstrip('+')}%",))]
        return []

    async def _table_exists(self, name: str) -> bool:
        if self.store.backend == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = "SELECT table_name FROM information_schema.tables WHERE table_name = ?"
        return await self.store.fetchval(sql, name) is not None

    async def member_detail(self, member_id: int, currency: str | None, page: int) -> dict[str, Any]:
        """Everything an admin looks at for one member (the caller logs the view)."""
        member = await self._member(member_id)
        accounts = await self.ex.accounts_of(member_id)
        sql = "SELECT * FROM ledger WHERE member_id = ?"
        args: list[Any] = [member_id]
        if currency:
            sql += " AND currency = ?"
            args.append(currency)
        ledger = await self.store.fetch(sql + " ORDER BY id DESC LIMIT ? OFFSET ?", *args, 51, (page - 1) * 50)
        deposit_addresses = await self.store.fetch(
            "SELECT currency, address, created_at FROM deposit_addresses WHERE member_id = ? ORDER BY id DESC LIMIT 20", member_id)
        orders = await self.store.fetch("SELECT * FROM orders WHERE member_id = ? ORDER BY id DESC LIMIT 20", member_id)
        deposits = await self.store.fetch("SELECT * FROM deposits WHERE member_id = ? ORDER BY id DESC LIMIT 20", member_id)
        withdraws = await self.store.fetch("SELECT * FROM withdraws WHERE member_id = ? ORDER BY id DESC LIMIT 20", member_id)
        logins = await self.store.fetch("SELECT * FROM login_history WHERE member_id = ? ORDER BY id DESC LIMIT 20", member_id)
        granted = await roles.roles_of(self.store, self.ex.config, member_id, str(member["email"]))
        return {
            "member": member, "accounts": accounts, "ledger": [dict(r) for r in ledger[:50]], "more": len(ledger) > 50,
            "addresses": [dict(r) for r in deposit_addresses], "orders": [dict(r) for r in orders],
            "deposits": [dict(r) for r in deposits], "withdraws": [dict(r) for r in withdraws],
            "logins": [dict(r) for r in logins], "roles": sorted(granted),
            "kyc": await self.kyc.profile(member_id), "kyc_files": await self.kyc.files(member_id),
            "tickets": await self.tickets.of_member(member_id, limit=20),
            "adjustments": await self.adjustments(None, member_id, 20),
            "audit": await audit.entries(self.store, member_id=member_id, limit=30),
            "house": member_id in self.ex.house_members,
        }

    async def withdraw_queue(self) -> list[dict[str, Any]]:
        rows = await self.ex.funds.withdraws_waiting()
        for w in rows:
            w["email"] = await self.store.fetchval("SELECT email FROM members WHERE id = ?", w["member_id"])
        return rows

    async def pending_deposits(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT d.*, m.email FROM deposits d JOIN members m ON m.id = d.member_id WHERE d.state = 'submitted' "
            "ORDER BY d.id LIMIT ?", limit)
        return [dict(r) for r in rows]

    async def recent_deposits(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT d.*, m.email FROM deposits d JOIN members m ON m.id = d.member_id ORDER BY d.id DESC LIMIT ?", limit)
        return [dict(r) for r in rows]

    async def recent_withdraws(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT w.*, m.email FROM withdraws w JOIN members m ON m.id = w.member_id ORDER BY w.id DESC LIMIT ?", limit)
        return [dict(r) for r in rows]


__all__ = ["Admin", "MemberNotFound", "reason_text"]
