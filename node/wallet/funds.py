"""Deposits and withdrawals as the web layer, the CLI and (later) the admin area see them.

`Exchange.funds` is one of these. Member requests (deposit address, withdraw, cancel) and admin
actions (approve, reject, confirm a bank deposit, complete a bank withdrawal, alerts, hot wallet
status, reconciliation) are store transactions guarded by conditional state changes, so any node of
a cluster can serve them; the currency's wallet actor (on the node its `wallet.node` names) does
the background work — scanning, crediting, auditing, paying — and is woken when there is some.

A withdrawal is checked completely before anything is locked: amount (precision, minimum, maximum),
member, second factor (hook below), address (`validateaddress` through the channel: valid, not
ours). Then, in one transaction, `total = amount + fee` moves from balance to locked with a ledger
row and the withdrawal is stored `submitted` (or `submitting`, held by the security policy until the
member confirms it by mail and its address hold is over: node/security/addresses.py). If the daemon
cannot be reached the request is refused with a clear error and nothing is locked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from node.actors.lease import LEASE_TTL_MS
from node.actors.wallet import POLL, WalletActor
from node.clock import now_ms
from node.config import ConfigError, Currency, WalletConf
from node.errors import InvalidParameter
from node.money import format_units, parse_units
from node.store import Store, Tx, ledger
from node.store.members import House, member_row
from node.wallet import FAMILIES
from node.wallet.bank import BankChannel
from node.wallet.channel import (
    AddressCheck,
    Channel,
    ChannelError,
    ChannelUnavailable,
    SettingsError,
    WalletUnavailable,
)
from node.wallet.reconcile import Reconciliation, reconcile
from node.wallet.records import (
    HOLDING,
    WITHDRAW_LOCK,
    WithdrawFailed,
    WithdrawNotFound,
    credit_deposit,
    finish_withdraw,
    freeze_of,
    unlock_withdraw,
    withdraw_sn,
)

if TYPE_CHECKING:
    from node.actors.lease import Leases
    from node.config import Config

log = logging.getLogger(__name__)

MAX_ADDRESS = 140
MAX_REFERENCE = 100

SecondFactor = Callable[[int, str | None], Awaitable[None]]


class WithdrawPolicy(Protocol):
    """Withdrawal protection (node/security/addresses.py): the address book, the hold on new
    addresses and the e-mail confirmation. `admit` runs inside the transaction that locked the funds
    and stored the withdrawal (raising undoes both) and may hold it (state `submitting`); `admitted`
    runs after the commit (audit, confirmation mail); `canceled` after a cancellation."""

    async def admit(self, tx: Tx, w: dict[str, Any]) -> dict[str, Any]: ...
    async def admitted(self, w: dict[str, Any]) -> None: ...
    async def canceled(self, w: dict[str, Any]) -> None: ...
WithdrawLimit = Callable[[int, str, int, Tx | None], Awaitable[None]]


@dataclass(frozen=True)
class WithdrawPolicies:
    """What protects a withdrawal beyond the funds and the address checks, given to `Funds` by the
    composition root (node/bootstrap.py) whatever serves the request: pages, API, or no web app at all.
    Without them (admin commands, tests of the wallets alone) none of these is asked."""

    second_factor: SecondFactor | None = None
    """Withdrawal 2FA (`node.security.service.Security.withdraw_code`): a coroutine `(member_id, otp)
    -> None` that raises (an ExchangeError) when the code is missing or wrong (a member with 2FA on
    must give a code with every withdrawal, page or API `otp`)."""

    address_book: WithdrawPolicy | None = None
    """Address book, hold and e-mail confirmation (node/security/addresses.py), see `WithdrawPolicy`."""

    limit: WithdrawLimit | None = None
    """KYC limits (node/kyc.py `Kyc.check_withdraw`): a coroutine `(member_id, currency, units, tx)
    -> None` that raises when the withdrawal would pass the member's limit for their KYC level.
    Called twice: before anything else (a quick answer), and again inside the transaction that locks
    the funds, after the member's account row is locked, with that transaction: two withdrawals at
    once cannot then both pass the limit (one waits for the other's commit)."""


class Funds:
    def __init__(self, config: Config, node_name: str, store: Store, leases: Leases, house: House) -> None:
        self.config = config
        self.policies = WithdrawPolicies()  # none until the composition root calls `protect`
        self.node_name = node_name
        self.store = store
        self.leases = leases
        self.house = house  # filled in when the node boots, before `start`
        self.actors: dict[str, WalletActor] = {}
        self._channels: dict[str, Channel] = {}
        self._renew_task: asyncio.Task[None] | None = None

    def protect(self, policies: WithdrawPolicies) -> None:
        """The composition root (node/bootstrap.py) gives the policies here once it has made the
        services they belong to: those hold the exchange whose funds these are, so they cannot exist
        before it. Whatever then serves a withdrawal (pages, API, a script) meets the same checks."""
        self.policies = policies

    # -- life cycle -------------------------------------------------------------------------------
    def wallets(self) -> dict[str, Currency]:
        return {c: cur for c, cur in self.config.currencies.items() if cur.wallet is not None}

    async def start(self) -> None:
        """Start the wallet actors this node runs (each under a lease: one live wallet per currency
        in the cluster). A node without wallet settings starts none and needs no daemon."""
        mine = {c: cur for c, cur in self.wallets().items() if cur.wallet is not None and cur.wallet.node == self.node_name}
        a = self.config.actors
        for code, cur in mine.items():
            channel = self.channel(code)
            try:
                await channel.open()
            except SettingsError as e:
                raise ConfigError(f"currencies.{code}.wallet.{e}") from None
            await self.leases.acquire(f"wallet:{code}")
            actor = WalletActor(cur, channel, self.store, self.house.fee_member, self.node_name,
                                mailbox_size=min(a.mailbox_size, 1000), max_batch=a.max_batch, ask_timeout=a.ask_timeout)
            self.actors[code] = actor
            await actor.start()
        if self.actors:
            self._renew_task = asyncio.create_task(self._renew(), name="wallet-leases")
            log.info("node %s: wallets %s", self.node_name, ", ".join(self.actors))

    async def stop(self) -> None:
        if self._renew_task is not None:
            self._renew_task.cancel()
        for code, actor in self.actors.items():
            await actor.stop()
            await self.leases.release(f"wallet:{code}")
        self.actors.clear()
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL_MS / 3000)
            for code, actor in list(self.actors.items()):
                try:
                    if not await self.leases.renew(f"wallet:{code}"):
                        log.error("lost the lease of wallet %s: stopping its actor", code)
                        actor.fence()
                except Exception:
                    log.exception("could not renew the lease of wallet %s; retrying", code)

    def conf(self, currency: object) -> tuple[Currency, WalletConf]:
        cur = self.config.currencies.get(currency) if isinstance(currency, str) else None
        if cur is None:
            raise InvalidParameter("currency does not have a valid value", "currency")
        if cur.wallet is None:
            raise InvalidParameter(f"currency {cur.code} has no wallet: deposits and withdrawals are not enabled", "currency")
        return cur, cur.wallet

    def channel(self, currency: str) -> Channel:
        """The currency's channel adapter (stateless calls work from any node that has the settings)."""
        ch = self._channels.get(currency)
        if ch is None:
            cur, w = self.conf(currency)
            ch = FAMILIES[w.channel](cur.code, cur.precision, w.options)
            self._channels[currency] = ch
        return ch

    async def _ask(self, currency: str, call: Callable[[Channel], Awaitable[Any]]) -> Any:
        """A call to the daemon for a member's request: its details (URLs, daemon errors) go to the
        log for staff; the member is told only that the wallet is unavailable."""
        try:
            return await call(self.channel(currency))
        except (ChannelUnavailable, SettingsError, ChannelError) as e:
            log.warning("%s wallet: a member request failed: %s", currency, e)
            raise WalletUnavailable(f"the {currency.upper()} wallet is unavailable right now, try again later") from None

    def wake(self, currency: str) -> None:
        actor = self.actors.get(currency)
        if actor is not None:
            actor.wake()

    async def poll(self, currency: str) -> dict[str, Any]:
        """Run one full wallet cycle now, ignoring any back-off; answers the wallet's health."""
        actor = self.actors.get(currency)
        if actor is None:
            raise InvalidParameter(f"the {currency} wallet does not run on this node", "currency")
        health: dict[str, Any] = await actor.ask(POLL, timeout=120)
        return health

    # -- deposits ---------------------------------------------------------------------------------
    async def deposit_address(self, member_id: int, currency: str) -> dict[str, Any]:
        """The member's current deposit address, and a new one once the current has received funds
        (coins); for fiat the member's permanent reference code with the exchange's bank account."""
        cur, w = self.conf(currency)
        await member_row(self.store, member_id)
        ch = self.channel(cur.code)
        row = await self.store.fetchrow(
            "SELECT address, used_at FROM deposit_addresses WHERE member_id = ? AND currency = ? ORDER BY id DESC LIMIT 1",
            member_id, cur.code)
        out: dict[str, Any] = {"currency": cur.code}
        if isinstance(ch, BankChannel):
            out["bank"] = ch.details()
        if row is not None and (row["used_at"] is None or not ch.scans):
            out["address"] = row["address"]
            return out
        address = await self._ask(cur.code, lambda c: c.new_address(member_id))
        await self.store.execute(
            "INSERT INTO deposit_addresses (member_id, currency, address, created_at) VALUES (?, ?, ?, ?)",
            member_id, cur.code, address, now_ms())
        out["address"] = address
        return out

    async def _rows_of(self, table: Literal["deposits", "withdraws"], member_id: int, currency: str | None,
                       state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """A member's deposits or withdrawals, newest first: both lists filter and page the same way.
        `table` is one of the two names, never input."""
        sql = f"SELECT * FROM {table} WHERE member_id = ?"
        args: list[Any] = [member_id]
        if currency is not None:
            sql += " AND currency = ?"
            args.append(currency)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        rows = await self.store.fetch(sql + " ORDER BY id DESC LIMIT ? OFFSET ?", *args, limit, offset)
        return [dict(r) for r in rows]

    async def deposits_of(self, member_id: int, currency: str | None = None, state: str | None = None,
                          limit: int = 3, offset: int = 0) -> list[dict[str, Any]]:
        return await self._rows_of("deposits", member_id, currency, state, limit, offset)

    async def deposit_by_txid(self, member_id: int, txid: str) -> dict[str, Any] | None:
        row = await self.store.fetchrow(
            "SELECT * FROM deposits WHERE member_id = ? AND txid = ? ORDER BY id DESC LIMIT 1", member_id, txid)
        return None if row is None else dict(row)

    async def confirm_bank_deposit(self, currency: str, reference: str, amount: str, bank_ref: str) -> dict[str, Any]:
        """Admin: money with the member's `reference` arrived at the bank; credit it, exactly once per
        bank reference (asking again with the same one answers the same deposit)."""
        cur, w = self.conf(currency)
        if not isinstance(self.channel(cur.code), BankChannel):
            raise InvalidParameter(f"currency {cur.code} is not a bank currency", "currency")
        units = parse_units(amount, cur.precision, "amount")
        bank_ref = _line(bank_ref, "bank_ref", MAX_REFERENCE)
        reference = _line(reference, "reference", MAX_REFERENCE).upper()
        row = await self.store.fetchrow("SELECT member_id FROM deposit_addresses WHERE currency = ? AND address = ?",
                                           cur.code, reference)
        if row is None:
            raise InvalidParameter(f"reference {reference} does not belong to any member", "reference")
        member_id, ts = int(row["member_id"]), now_ms()
        async with self.store.transaction() as tx:
            old = await tx.fetchrow("SELECT * FROM deposits WHERE currency = ? AND txid = ? AND txout = 0", cur.code, bank_ref)
            if old is not None:
                if int(old["member_id"]) != member_id or int(old["amount"]) != units:
                    raise InvalidParameter(f"bank reference {bank_ref} was already used for deposit #{old['id']}", "bank_ref")
                return dict(old)
            did = await tx.fetchval(
                "INSERT INTO deposits (member_id, currency, amount, fee, txid, channel, state, confirmations, created_at, "
                "txout, memo, updated_at) VALUES (?, ?, ?, 0, ?, ?, 'submitted', 0, ?, 0, ?, ?) RETURNING id",
                member_id, cur.code, units, bank_ref, w.channel, ts, reference, ts)
            d = {"id": int(did), "member_id": member_id, "currency": cur.code, "amount": units}
            await credit_deposit(tx, d, ts)
            row = await tx.fetchrow("SELECT * FROM deposits WHERE id = ?", int(did))
        assert row is not None
        return dict(row)

    # -- withdrawals ------------------------------------------------------------------------------
    async def request_withdraw(self, member_id: int, currency: str, amount: object, address: object,
                               *, otp: str | None = None) -> dict[str, Any]:
        """Check, lock `amount + fee` and store the withdrawal `submitted`; the wallet actor takes it
        from there. `otp`: the member's second-factor code, see `WithdrawPolicies.second_factor`."""
        cur, w = self.conf(currency)
        units = parse_units(amount, cur.precision, "amount")
        fmt = lambda v: f"{format_units(v, cur.precision)} {cur.symbol}"  # noqa: E731
        if units < w.min_withdraw:
            raise InvalidParameter(f"amount is below the minimum withdrawal of {fmt(w.min_withdraw)}", "amount")
        if w.max_withdraw and units > w.max_withdraw:
            raise InvalidParameter(f"amount is above the maximum withdrawal of {fmt(w.max_withdraw)}", "amount")
        addr = _line(address, "address", MAX_ADDRESS)
        member = await member_row(self.store, member_id)
        if member["disabled"]:
            raise WithdrawFailed("this member may not withdraw (account disabled)")
        if not member["activated"]:
            raise WithdrawFailed("this member may not withdraw until the account is activated")
        hold = await freeze_of(self.store, member_id)
        if hold is not None:
            raise WithdrawFailed(f"withdrawals are on hold: {hold}")
        if self.policies.second_factor is not None:
            await self.policies.second_factor(member_id, otp)
        if self.policies.limit is not None:
            await self.policies.limit(member_id, cur.code, units, None)
        check: AddressCheck = await self._ask(cur.code, lambda c: c.validate_address(addr))
        if not check.valid:
            raise InvalidParameter(f"address is not a valid {cur.symbol} address", "address")
        if check.mine:
            raise InvalidParameter("address belongs to this exchange; withdraw to an address of your own", "address")
        total, ts = units + w.withdraw_fee, now_ms()
        async with self.store.transaction() as tx:
            # The account row is ours from this read on (row-locked on PostgreSQL, the whole store
            # on SQLite); the lock itself is posted once the withdrawal has the id it names.
            low = WithdrawFailed(f"cannot lock funds (amount: {format_units(units, cur.precision)}, fee: "
                                 f"{format_units(w.withdraw_fee, cur.precision)}): balance too low")
            balance = await tx.fetchval("SELECT balance FROM accounts WHERE member_id = ? AND currency = ?"
                                        + self.store.for_update, member_id, cur.code)
            if balance is None or int(balance) < total:
                raise low
            if self.policies.limit is not None:  # again, now that the account row is ours: no race
                await self.policies.limit(member_id, cur.code, units, tx)
            wid = int(await tx.fetchval(
                "INSERT INTO withdraws (member_id, currency, amount, fee, total, address, state, note, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'submitted', 'waiting for audit', ?, ?) RETURNING id",
                member_id, cur.code, units, w.withdraw_fee, total, addr, ts, ts))
            await tx.execute("UPDATE withdraws SET sn = ? WHERE id = ?", withdraw_sn(wid, ts), wid)
            await ledger.entry(tx, member_id, cur.code, -total, total, WITHDRAW_LOCK, "withdraw", wid, ts, low)
            row = await tx.fetchrow("SELECT * FROM withdraws WHERE id = ?", wid)
            assert row is not None
            out = dict(row)
            if self.policies.address_book is not None:
                out = await self.policies.address_book.admit(tx, out)
        if self.policies.address_book is not None:
            await self.policies.address_book.admitted(out)
        self.wake(cur.code)
        return out

    async def check_address(self, currency: str, address: object) -> str:
        """The address checks of `request_withdraw` alone (read-only), so a page can answer a bad
        address before the member's one-time code is spent on the request."""
        cur, _ = self.conf(currency)
        addr = _line(address, "address", MAX_ADDRESS)
        check: AddressCheck = await self._ask(cur.code, lambda c: c.validate_address(addr))
        if not check.valid:
            raise InvalidParameter(f"address is not a valid {cur.symbol} address", "address")
        if check.mine:
            raise InvalidParameter("address belongs to this exchange; withdraw to an address of your own", "address")
        return addr

    async def withdraws_of(self, member_id: int, currency: str | None = None, state: str | None = None,
                           limit: int = 3, offset: int = 0) -> list[dict[str, Any]]:
        return await self._rows_of("withdraws", member_id, currency, state, limit, offset)

    async def withdraw(self, withdraw_id: int, member_id: int | None = None) -> dict[str, Any]:
        row = await self.store.fetchrow("SELECT * FROM withdraws WHERE id = ?", withdraw_id)
        if row is None or (member_id is not None and int(row["member_id"]) != member_id):
            raise WithdrawNotFound(f"Withdraw#{withdraw_id} doesn't exist.")
        return dict(row)

    async def cancel_withdraw(self, member_id: int | None, withdraw_id: int) -> dict[str, Any]:
        """The member (or an admin) takes back a withdrawal not yet being paid: funds unlocked."""
        w = await self.withdraw(withdraw_id, member_id)
        async with self.store.transaction() as tx:
            ok = await unlock_withdraw(tx, w, ("submitting", "submitted", "accepted"), "canceled",
                                       "canceled by the member", now_ms())
        if not ok:
            raise WithdrawFailed(f"withdraw {w['sn']} can no longer be canceled (state {w['state']})")
        done = await self.withdraw(withdraw_id)
        if self.policies.address_book is not None:
            await self.policies.address_book.canceled(done)
        return done

    # -- admin ------------------------------------------------------------------------------------
    async def withdraws_waiting(self, currency: str | None = None) -> list[dict[str, Any]]:
        """What needs an admin: awaiting approval, suspect, bank transfers to make, stuck payments."""
        sql = ("SELECT * FROM withdraws WHERE (state IN ('suspect', 'processing') OR (state = 'submitted' AND audited_at "
               "IS NOT NULL) OR (state = 'accepted' AND note != ''))")
        args: list[Any] = []
        if currency is not None:
            sql += " AND currency = ?"
            args.append(currency)
        return [dict(r) for r in await self.store.fetch(sql + " ORDER BY id LIMIT 500", *args)]

    async def approve_withdraw(self, withdraw_id: int, admin: str = "admin") -> dict[str, Any]:
        """Admin approval of a withdrawal above the auto-approve threshold, or of a suspect one after
        review. Paid by the wallet actor at its next cycle (woken now if it runs here)."""
        w = await self.withdraw(withdraw_id)
        ts = now_ms()
        n = await self.store.execute(
            "UPDATE withdraws SET approved_at = ?, approved_by = ?, note = '', admin_note = '', updated_at = ?, "
            "state = CASE WHEN audited_at IS NOT NULL THEN 'accepted' ELSE state END "
            "WHERE id = ? AND state IN ('submitted', 'suspect')", ts, _line(admin, "admin", 100), ts, withdraw_id)
        if n != 1:
            raise WithdrawFailed(f"withdraw {w['sn']} is {w['state']}: nothing to approve")
        self.wake(w["currency"])
        return await self.withdraw(withdraw_id)

    async def reject_withdraw(self, withdraw_id: int, reason: str) -> dict[str, Any]:
        w = await self.withdraw(withdraw_id)
        async with self.store.transaction() as tx:
            ok = await unlock_withdraw(tx, w, ("submitting", "submitted", "accepted", "suspect"), "rejected",
                                       f"rejected by an admin: {_line(reason, 'reason', 300)}", now_ms())
        if not ok:
            raise WithdrawFailed(f"withdraw {w['sn']} is {w['state']}: it can no longer be rejected")
        return await self.withdraw(withdraw_id)

    async def complete_bank_withdraw(self, withdraw_id: int, bank_ref: str) -> dict[str, Any]:
        """Admin: the bank transfer to the member's account is made; record it with the bank's reference."""
        w = await self.withdraw(withdraw_id)
        if not isinstance(self.channel(w["currency"]), BankChannel):
            raise WithdrawFailed(f"withdraw {w['sn']} is paid by the {w['currency']} wallet, not by an admin")
        async with self.store.transaction() as tx:
            ok = await finish_withdraw(tx, w, ("accepted", "processing"), _line(bank_ref, "bank_ref", MAX_REFERENCE),
                                       None, self.house.fee_member, now_ms())
        if not ok:
            raise WithdrawFailed(f"withdraw {w['sn']} is {w['state']}: only an accepted withdrawal can be completed")
        return await self.withdraw(withdraw_id)

    async def alerts(self, include_resolved: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        """Wallet alerts for the admin (re-orgs that took out a credited deposit, suspect or failed
        withdrawals, odd amounts), newest first."""
        where = "" if include_resolved else " WHERE resolved_at IS NULL"
        rows = await self.store.fetch(f"SELECT * FROM wallet_alerts{where} ORDER BY id DESC LIMIT ?", limit)
        return [dict(r) for r in rows]

    async def resolve_alert(self, alert_id: int, resolution: str) -> None:
        n = await self.store.execute("UPDATE wallet_alerts SET resolved_at = ?, resolution = ? WHERE id = ? "
                                        "AND resolved_at IS NULL", now_ms(), _line(resolution, "resolution", 500), alert_id)
        if n != 1:
            raise InvalidParameter(f"alert {alert_id} does not exist or is already resolved", "id")

    async def freezes(self, include_resolved: bool = False) -> list[dict[str, Any]]:
        """Members whose withdrawals are on hold (a re-org took back a deposit they had been credited)."""
        where = "" if include_resolved else " WHERE resolved_at IS NULL"
        return [dict(r) for r in await self.store.fetch(f"SELECT * FROM withdraw_freezes{where} ORDER BY id DESC LIMIT 500")]

    async def release_freeze(self, freeze_id: int, resolution: str, admin: str = "admin") -> dict[str, Any]:
        """An admin has settled a shortfall (a balance correction, a repayment, a write-off) and lets
        the member withdraw again. The books stay as they are: settling is a ledger entry of its own."""
        n = await self.store.execute(
            "UPDATE withdraw_freezes SET resolved_at = ?, resolved_by = ?, resolution = ? WHERE id = ? AND resolved_at IS NULL",
            now_ms(), _line(admin, "admin", 100), _line(resolution, "resolution", 500), freeze_id)
        if n != 1:
            raise InvalidParameter(f"hold {freeze_id} does not exist or is already released", "id")
        row = await self.store.fetchrow("SELECT * FROM withdraw_freezes WHERE id = ?", freeze_id)
        assert row is not None
        self.wake(str(row["currency"]))
        return dict(row)

    async def hot_wallets(self) -> list[dict[str, Any]]:
        """Per wallet currency: the node running it, its health, height and hot wallet balance as of
        its last cycle, what members hold and what pending withdrawals have locked."""
        out = []
        for code, cur in self.wallets().items():
            row = await self.store.fetchrow("SELECT * FROM wallet_cursors WHERE currency = ?", code)
            held = await self.store.fetchval("SELECT COALESCE(SUM(balance + locked), 0) FROM accounts WHERE currency = ?", code)
            marks = ",".join("?" * len(HOLDING))
            pending = await self.store.fetchval(
                f"SELECT COALESCE(SUM(amount), 0) FROM withdraws WHERE currency = ? AND state IN ({marks})", code, *HOLDING)
            actor = self.actors.get(code)
            assert cur.wallet is not None
            out.append({
                "currency": code, "channel": cur.wallet.channel, "node": cur.wallet.node,
                "status": (actor.health["status"] if actor else row["status"] if row else "unknown"),
                "last_error": (actor.health["last_error"] if actor else row["last_error"] if row else None),
                "height": row["height"] if row else None, "balance": row["balance"] if row else None,
                "checked_at": row["checked_at"] if row else None, "liabilities": int(held), "pending_withdrawals": int(pending),
            })
        return out

    async def reconciliation(self, currency: str) -> Reconciliation:
        """The itemised reconciliation of one coin currency (node/wallet/reconcile.py): the daemon's
        hot balance, the cold wallet (watched addresses through the daemon, and declared holdings)
        against the books, every known difference on a line of its own."""
        cur, w = self.conf(currency)
        hot = await self._ask(cur.code, lambda c: c.balance())
        if hot is None:
            raise InvalidParameter(f"currency {cur.code} has no hot wallet", "currency")
        cold = await self._ask(cur.code, lambda c: c.watched_balance(list(w.cold_addresses))) if w.cold_addresses else 0
        return await reconcile(self.store, cur.code, cur.precision, w.channel, int(hot), int(cold), w.cold_balance)

    async def reconcile(self, currency: str) -> dict[str, Any]:
        """`reconciliation` as a dict: every line by its key, `difference` and `ok`."""
        return (await self.reconciliation(currency)).as_dict()

    def status(self) -> dict[str, Any]:
        """In-memory health of the wallet actors of this node (for the ops status endpoint)."""
        return {code: dict(a.health, running=a.running, restarts=a.restarts) for code, a in self.actors.items()}


def _line(value: object, field: str, max_len: int) -> str:
    """One line of printable text, trimmed; refused (naming the field) otherwise."""
    if not isinstance(value, str):
        raise InvalidParameter(f"{field} is missing", field)
    text = value.strip()
    if not text:
        raise InvalidParameter(f"{field} is missing", field)
    if len(text) > max_len or not text.isprintable():
        raise InvalidParameter(f"{field} must be at most {max_len} printable characters", field)
    return text


__all__ = ["Funds", "WalletUnavailable", "WithdrawFailed", "WithdrawNotFound"]
