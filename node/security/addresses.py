"""Withdrawal protection: the address book with its hold, and a mailed confirmation of each withdrawal.

A thief with a member's password and even their second factor wants the money out before the owner
notices. These brakes are enforced in `Funds.request_withdraw` (through `WithdrawPolicies.address_book`), so the pages
and API v2 (`POST /withdraws`) get exactly the same rules:

- **Address book with a hold.** Every destination is an entry of the member's address book. A new
  address (added on the address book page, or by a first withdrawal to it) can be paid to only
  `withdraw_hold_hours` (24 h) after it was added; a withdrawal to it before then is accepted and
  its funds locked, but it waits (state `submitting`) until the hold has passed. Adding an address
  asks for the second factor and is in the audit log, and the member is told by mail.
- **E-mail confirmation.** Each withdrawal waits until the member opens the link mailed to them and
  confirms (a POST from that page: mail scanners that open links confirm nothing); the same page can
  cancel it. Unconfirmed after `withdraw_confirm_hours`, it is cancelled and the funds unlocked.
- **Daily limits per KYC level** are the KYC module's (node/kyc.py, `WithdrawPolicies.limit`, with the
  table in `[admin.withdraw_limits]`): one place knows levels and limits.

A held withdrawal is released (`submitting` → `submitted`, where the wallet actor takes over) as
soon as it is confirmed and its address hold is over: at the confirmation itself, else by `sweep`,
which every node runs every few seconds (conditional UPDATEs: two nodes never release twice).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node.config.security import SecurityConf
from node.errors import N_, ExchangeError, FormError
from node.i18n import translator
from node.mail import Mail, MailError
from node.money import format_units
from node.security import audit
from node.store import Tx
from node.wallet.records import unlock_withdraw

if TYPE_CHECKING:
    from node.exchange import Exchange
    from node.members import Members

log = logging.getLogger(__name__)

MAX_ADDRESSES = 50  # per member and currency
LABEL_MAX = 64
ADDRESS_MAX = 140
HELD = "submitting"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Addresses:
    def __init__(self, ex: Exchange, conf: SecurityConf, members: Members | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ex = ex
        self.store = ex.store
        self.conf = conf
        self.members = members
        self.clock = clock
        self._tokens: dict[int, str] = {}  # withdraw id -> confirmation token, from admit to admitted

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def hold_ms(self) -> int:
        return self.conf.withdraw_hold_hours * 3_600_000

    # -- the address book ---------------------------------------------------------------------------
    async def list(self, member_id: int, currency: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM withdraw_addresses WHERE member_id = ? AND deleted_at IS NULL"
        args: list[Any] = [member_id]
        if currency is not None:
            sql += " AND currency = ?"
            args.append(currency)
        now = self.now_ms()
        return [dict(r) | {"usable": int(r["usable_at"]) <= now}
                for r in await self.store.fetch(sql + " ORDER BY currency, id", *args)]

    async def check_new(self, member_id: int, currency: str, address: str, label: str = "") -> tuple[str, str, str]:
        """Everything about a new entry checked (the wallet says the address is valid and not ours)
        before any second factor is asked for, so a typo does not burn a code."""
        cur = self.ex.config.currencies.get(currency)
        if cur is None or cur.wallet is None:
            raise FormError("currency", N_("Withdrawals of this currency are not open"))
        address = address.strip()
        if not address:
            raise FormError("address", N_("Please enter the address"))
        if len(address) > ADDRESS_MAX or not address.isprintable():
            raise FormError("address", N_("Too long: at most {n} characters"), n=ADDRESS_MAX)
        label = label.strip()
        if len(label) > LABEL_MAX or not label.isprintable():
            raise FormError("label", N_("Too long: at most {n} characters"), n=LABEL_MAX)
        live = await self.list(member_id, currency)
        if any(a["address"] == address for a in live):
            raise FormError("address", N_("This address is already in your address book"))
        if len(live) >= MAX_ADDRESSES:
            raise FormError("address", N_("You have {n} addresses for this currency, the most allowed: remove one first"),
                            n=MAX_ADDRESSES)
        try:
            check = await self.ex.funds.channel(currency).validate_address(address)
        except ExchangeError:
            raise
        except Exception:  # the daemon is down: say so rather than accept an unchecked address
            raise FormError("address", N_("The wallet cannot check addresses right now; please try again later")) from None
        if not check.valid:
            raise FormError("address", N_("This is not a valid {cur} address"), cur=cur.symbol)
        if check.mine:
            raise FormError("address", N_("This address belongs to this exchange; enter an address of your own"))
        return currency, address, label

    async def add(self, member_id: int, currency: str, address: str, label: str = "") -> dict[str, Any]:
        """Add an address (after `check_new` and the second factor); usable once its hold is over."""
        currency, address, label = await self.check_new(member_id, currency, address, label)
        async with self.store.transaction() as tx:
            row = await self._insert(tx, member_id, currency, address, label, "book")
        await self._notify_added(member_id, row)
        return row

    async def _insert(self, tx: Tx, member_id: int, currency: str, address: str, label: str, source: str) -> dict[str, Any]:
        now = self.now_ms()
        aid = await tx.fetchval(
            "INSERT INTO withdraw_addresses (member_id, currency, address, label, created_at, usable_at) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id", member_id, currency, address, label, now, now + self.hold_ms)
        await audit.record_in(tx, audit.ADDRESS_ADD, member_id, {"currency": currency, "address": address,
                                                               "label": label, "via": source,
                                                               "usable_at": now + self.hold_ms})
        return {"id": int(aid), "member_id": member_id, "currency": currency, "address": address, "label": label,
                "created_at": now, "usable_at": now + self.hold_ms}

    async def delete(self, member_id: int, address_id: int) -> bool:
        """Remove an entry of the member's own book (another member's id is simply not found)."""
        async with self.store.transaction() as tx:
            row = await tx.fetchrow("SELECT * FROM withdraw_addresses WHERE id = ? AND member_id = ? AND deleted_at IS NULL",
                                    address_id, member_id)
            if row is None:
                return False
            await tx.execute("UPDATE withdraw_addresses SET deleted_at = ? WHERE id = ?", self.now_ms(), address_id)
            await audit.record_in(tx, audit.ADDRESS_DELETE, member_id, {"currency": row["currency"],
                                                                      "address": row["address"]})
        return True

    async def _notify_added(self, member_id: int, row: dict[str, Any]) -> None:
        member = await self.ex.member(member_id)
        hours = self.conf.withdraw_hold_hours
        await self._mail(member["email"], N_("A withdrawal address was added to your {site} account"), N_(
            "Hello,\n\nThe {cur} address {address} was just added to the withdrawal address book of your {site} "
            "account. It can be used for withdrawals in {hours} hours.\n\nIf this was not you, log in at once, "
            "remove the address, change your password and contact support:\n\n{link}\n"),
            cur=row["currency"].upper(), address=row["address"], hours=hours, link=self._link("/security/addresses"))

    # -- WithdrawPolicies.address_book -------------------------------------------------------------------------------------
    async def admit(self, tx: Tx, w: dict[str, Any]) -> dict[str, Any]:
        """Called by `Funds.request_withdraw` inside the transaction that locked the funds and stored
        the withdrawal `w` (raising rolls all of it back): the address book entry (added now if new:
        its hold starts) and the hold on the withdrawal until it is confirmed by mail and its address
        may be paid to."""
        member_id, currency = int(w["member_id"]), str(w["currency"])
        now = self.now_ms()
        entry = await tx.fetchrow(
            "SELECT usable_at FROM withdraw_addresses WHERE member_id = ? AND currency = ? AND address = ? "
            "AND deleted_at IS NULL ORDER BY id LIMIT 1", member_id, currency, w["address"])
        usable_at = int(entry["usable_at"]) if entry is not None else \
            (await self._insert(tx, member_id, currency, str(w["address"]), "", "withdrawal"))["usable_at"]
        confirm = self.conf.withdraw_confirmation
        if usable_at <= now and not confirm:
            return w
        token = secrets.token_urlsafe(32)
        await tx.execute(
            "INSERT INTO withdraw_holds (withdraw_id, member_id, token_hash, release_at, confirm_by, confirmed_at, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", int(w["id"]), member_id, token_hash(token), max(usable_at, now),
            now + self.conf.withdraw_confirm_hours * 3_600_000, None if confirm else now, now)
        note = self._note(confirm, usable_at, now)
        await tx.execute("UPDATE withdraws SET state = ?, note = ? WHERE id = ?", HELD, note, int(w["id"]))
        if confirm:
            self._tokens[int(w["id"])] = token
        return dict(w, state=HELD, note=note)

    @staticmethod
    def _note(confirm: bool, usable_at: int, now: int) -> str:
        parts = ["waiting for the e-mail confirmation"] if confirm else []
        if usable_at > now:
            until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(usable_at // 1000))  # as the pages show times
            parts.append(f"new address on hold until {until} UTC")
        return "; ".join(parts)

    async def admitted(self, w: dict[str, Any]) -> None:
        """After the withdrawal is committed: the audit entry, and the confirmation mail."""
        cur = self.ex.config.currencies[str(w["currency"])]
        amount = format_units(int(w["amount"]), cur.precision)
        await audit.record(self.store, audit.WITHDRAW_REQUEST, int(w["member_id"]), {
            "id": int(w["id"]), "sn": w.get("sn"), "currency": cur.code, "amount": amount, "address": w["address"],
            "state": w["state"]})
        token = self._tokens.pop(int(w["id"]), None)
        if token is None:
            return
        member = await self.ex.member(int(w["member_id"]))
        await self._mail(member["email"], N_("Confirm your {site} withdrawal of {amount} {cur}"), N_(
            "Hello,\n\nA withdrawal of {amount} {cur} (fee {fee} {cur}) to\n\n    {address}\n\nwas requested from "
            "your {site} account. It is sent only after you confirm it here:\n\n{link}\n\nThe link is valid for "
            "{hours} hours. If you did not ask for this withdrawal, open the link and cancel it, then change "
            "your password.\n"), amount=amount, cur=cur.symbol, fee=format_units(int(w["fee"]), cur.precision),
            address=w["address"], link=self._link(f"/withdraws/confirm/{token}"), hours=self.conf.withdraw_confirm_hours)

    async def canceled(self, w: dict[str, Any]) -> None:
        """A cancellation (by the member, page, API or mailed link; or by an admin) is audited."""
        await audit.record(self.store, audit.WITHDRAW_CANCEL, int(w["member_id"]), {"id": int(w["id"]), "sn": w["sn"]})

    # -- confirmation link ----------------------------------------------------------------------------------
    async def held(self, token: str) -> dict[str, Any]:
        """The withdrawal behind a confirmation link, with its hold; a FormError when the link is bad."""
        if not token or len(token) > 100:
            raise FormError(None, N_("This link is not valid."))
        row = await self.store.fetchrow(
            "SELECT h.release_at, h.confirm_by, h.confirmed_at, h.released_at, w.* FROM withdraw_holds h "
            "JOIN withdraws w ON w.id = h.withdraw_id WHERE h.token_hash = ?", token_hash(token))
        if row is None:
            raise FormError(None, N_("This link is not valid."))
        return dict(row)

    async def confirm(self, token: str) -> dict[str, Any]:
        """The member confirmed by the mailed link: released now if its address may be paid to."""
        w = await self.held(token)
        if w["state"] != HELD:
            raise FormError(None, N_("This withdrawal can no longer be confirmed (it is {state})."), state=w["state"])
        now = self.now_ms()
        if w["confirmed_at"] is None:
            if int(w["confirm_by"]) <= now:
                raise FormError(None, N_("This link has expired; the withdrawal will be cancelled."))
            async with self.store.transaction() as tx:
                n = await tx.execute("UPDATE withdraw_holds SET confirmed_at = ? WHERE withdraw_id = ? AND confirmed_at IS NULL",
                                     now, int(w["id"]))
                if n == 1:
                    await audit.record_in(tx, audit.WITHDRAW_CONFIRM, int(w["member_id"]), {"id": int(w["id"]),
                                                                                          "sn": w["sn"]})
                    await tx.execute("UPDATE withdraws SET note = ? WHERE id = ? AND state = ?",
                                     self._note(False, int(w["release_at"]), now), int(w["id"]), HELD)
        await self.sweep()
        return await self.held(token)

    async def cancel(self, token: str) -> dict[str, Any]:
        """The member refused by the mailed link: the withdrawal is cancelled, the funds unlocked."""
        w = await self.held(token)
        try:
            await self.ex.funds.cancel_withdraw(int(w["member_id"]), int(w["id"]))
        except ExchangeError as e:
            raise FormError(None, N_("This withdrawal can no longer be cancelled (it is {state})."), state=w["state"]) from e
        return await self.held(token)

    async def sweep(self) -> tuple[int, int]:
        """Release confirmed withdrawals whose hold is over; cancel those never confirmed in time.
        Returns (released, expired)."""
        now = self.now_ms()
        rows = await self.store.fetch(
            "SELECT h.release_at, h.confirm_by, h.confirmed_at, w.* FROM withdraw_holds h JOIN withdraws w "
            "ON w.id = h.withdraw_id WHERE h.released_at IS NULL ORDER BY h.withdraw_id LIMIT 500")
        released = expired = 0
        woken: set[str] = set()
        for r in rows:
            w = dict(r)
            wid = int(w["id"])
            async with self.store.transaction() as tx:
                if w["state"] != HELD:  # cancelled meanwhile: nothing more to watch
                    await tx.execute("UPDATE withdraw_holds SET released_at = ? WHERE withdraw_id = ?", now, wid)
                elif w["confirmed_at"] is not None and int(w["release_at"]) <= now:
                    n = await tx.execute("UPDATE withdraws SET state = 'submitted', note = 'waiting for audit', "
                                         "updated_at = ? WHERE id = ? AND state = ?", now, wid, HELD)
                    await tx.execute("UPDATE withdraw_holds SET released_at = ? WHERE withdraw_id = ?", now, wid)
                    released += n
                    if n:
                        woken.add(str(w["currency"]))
                elif w["confirmed_at"] is None and int(w["confirm_by"]) <= now:
                    if await unlock_withdraw(tx, w, (HELD,), "canceled", "not confirmed by e-mail in time", now):
                        await audit.record_in(tx, audit.WITHDRAW_EXPIRED, int(w["member_id"]), {"id": wid, "sn": w["sn"]},
                                              source=audit.SYSTEM)
                        expired += 1
                    await tx.execute("UPDATE withdraw_holds SET released_at = ? WHERE withdraw_id = ?", now, wid)
        for currency in woken:
            self.ex.funds.wake(currency)
        return released, expired

    # -- mail -------------------------------------------------------------------------------------------------
    def _link(self, path: str) -> str:
        if self.members is not None:
            return self.members.link(path)
        return path

    async def _mail(self, to: str, subject: str, body: str, **params: Any) -> None:
        if self.members is None:
            return
        _ = translator(audit.origin().lang)
        site = self.members.site
        try:
            await self.members.mailer.send(Mail(to, _(subject, site=site, **params), _(body, site=site, **params)))
        except MailError:
            log.warning("a security mail could not be sent (the member can ask again)")

