"""The wallet actor: one per currency with a wallet, driving that currency's payment channel.

Its mailbox receives ticks (every `poll_interval_ms`) and wake-ups (a withdrawal was requested or
approved); each batch runs one *cycle*:

1. **Deposits** (channels that scan): `scan` from the stored cursor, deep enough that every transfer
   is reported again until it is `confirmations + reorg_watch_blocks` deep. New transfers to a
   member's address become `submitted` deposits; at the required confirmations they are credited,
   exactly once per (txid, vout) (a unique index and a conditional state change); a credited deposit
   that a re-org takes out of the chain raises an alert for the admin. The new cursor is stored in
   the same transaction as the deposits, so nothing is missed across restarts or downtime.
2. **Withdrawals**: reconcile `processing` ones against the wallet (a crash may have come between
   paying and recording), audit `submitted` ones (address valid and not ours, the member's ledger
   adds up), then pay `accepted` ones while the hot wallet covers them; the rest wait.
3. **Status**: height, hot wallet balance and health go to `wallet_cursors` for the admin.

Unlike market actors this one does not commit once per batch: paying is an external side effect,
so its idempotency record must be committed *before* the daemon is asked to pay, and the result
after. A daemon that cannot be reached is not a crash: the cycle stops, the status says so, and
the next cycle comes after an exponential back-off (at most a minute).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from collections.abc import Sequence
from typing import Any

from node.actors.market import now_ms
from node.actors.runtime import Actor
from node.config import Currency, WalletConf
from node.errors import ExchangeError
from node.money import format_units
from node.store import Store
from node.wallet.channel import Channel, ChannelError, ChannelUnavailable, SettingsError, Transfer
from node.wallet.records import credit_deposit, finish_withdraw, ledger_mismatch, raise_alert, unlock_withdraw

log = logging.getLogger(__name__)

TICK = "tick"
WAKE = "wake"
POLL = "poll"  # like a tick, but ignores the back-off: tests and admins ask for it to see a cycle done
MAX_BACKOFF = 60.0
MAX_SEND_ATTEMPTS = 5
# bitcoind error codes after which sendtoaddress certainly created no transaction
NOT_SENT_RETRY = {-6, -13, -14}  # insufficient funds, wallet locked, wrong passphrase: retry later
NOT_SENT_FINAL = {-3, -5, -8}  # bad amount / address / parameter: this withdrawal cannot be paid
FAULT_ENV = "EXCHANGE_WALLET_FAULT"


def fault(point: str) -> None:
    """Test-only crash point: with EXCHANGE_WALLET_FAULT=<point> the process dies here like kill -9
    (no clean-up, nothing flushed). The one point is `after_send`: the daemon has paid, the exchange
    has not recorded it. Unset in production, where this is a string comparison."""
    if os.environ.get(FAULT_ENV) == point:
        log.warning("fault injection %s: killing the process", point)
        os.kill(os.getpid(), signal.SIGKILL)


class WalletActor(Actor[str]):
    send_grace_ms = 60_000
    """A `processing` withdrawal that the wallet does not know is retried only after this long: a
    request that reached the daemon just before our crash has surely been executed (or dropped) by
    then, so a retry can never pay twice."""

    def __init__(self, currency: Currency, channel: Channel, store: Store, fee_member: int, node: str, **kw: Any) -> None:
        super().__init__(**kw)
        assert currency.wallet is not None
        self.currency = currency
        self.conf: WalletConf = currency.wallet
        self.channel = channel
        self.store = store
        self.fee_member = fee_member
        self.node = node
        self.name = f"wallet:{currency.code}"
        self._ticker: asyncio.Task[None] | None = None
        self._failures = 0
        self._retry_at = 0.0
        self.health: dict[str, Any] = {"status": "starting", "since": now_ms(), "last_error": None, "height": None,
                                       "balance": None, "last_cycle": None, "retry_in": 0.0}

    # -- life cycle -------------------------------------------------------------------------------
    async def recover(self) -> None:
        await self.store.execute(
            "INSERT INTO wallet_cursors (currency, status, node, updated_at) VALUES (?, 'starting', ?, ?) "
            "ON CONFLICT (currency) DO UPDATE SET node = excluded.node, status = 'starting', updated_at = excluded.updated_at",
            self.currency.code, self.node, now_ms())

    async def start(self) -> None:
        await super().start()
        self.tell(POLL)
        self._ticker = asyncio.create_task(self._tick(), name=f"{self.name}:ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await super().stop()

    def fence(self, why: str = "another owner has taken over") -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        super().fence(why)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.conf.poll_interval_ms / 1000)
            if self.depth == 0:
                try:
                    self.tell(TICK)
                except ExchangeError:
                    return  # shutting down

    def wake(self) -> None:
        """Something to do now (a withdrawal was requested or approved): don't wait for the tick."""
        try:
            self.tell(WAKE)
        except ExchangeError:
            pass  # busy or stopping: the next tick will do it

    async def handle_batch(self, batch: Sequence[str]) -> list[Any]:
        await self.cycle(force=POLL in batch)
        return [dict(self.health)] * len(batch)

    # -- one cycle --------------------------------------------------------------------------------
    async def cycle(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._retry_at:
            return
        try:
            info = await self.channel.info()
            self.health["height"] = info.height
            if self.channel.scans:
                await self._scan()
            await self._withdrawals()
            if self.channel.automatic:
                self.health["balance"] = await self.channel.balance()
        except (ChannelUnavailable, ChannelError, SettingsError) as e:
            await self._trouble(e)
            return
        if self.health["status"] != "ok":
            log.info("%s: daemon reachable again", self.name)
        self._failures = 0
        self._retry_at = 0.0
        self.health.update(status="ok", since=self.health["since"] if self.health["status"] == "ok" else now_ms(),
                           last_error=None, last_cycle=now_ms(), retry_in=0.0)
        await self._save_status()

    async def _trouble(self, e: Exception) -> None:
        """Unreachable or refusing: no crash, a visible status, an exponential back-off."""
        self._failures += 1
        delay = min(self.conf.poll_interval_ms / 1000 * 2 ** min(self._failures, 16), MAX_BACKOFF)
        self._retry_at = time.monotonic() + delay
        status = "unreachable" if isinstance(e, ChannelUnavailable) else "error"
        if self.health["status"] != status or self._failures in (1, 10, 100):
            log.warning("%s: %s (%s); retrying in %.1f s", self.name, status, e, delay)
        self.health.update(status=status, since=now_ms() if self.health["status"] != status else self.health["since"],
                           last_error=str(e)[:500], last_cycle=now_ms(), retry_in=delay)
        try:
            await self._save_status()
        except Exception:
            log.exception("%s: could not store the wallet status", self.name)

    async def _save_status(self) -> None:
        h = self.health
        await self.store.execute(
            "UPDATE wallet_cursors SET status = ?, last_error = ?, height = ?, balance = ?, node = ?, checked_at = ?, "
            "updated_at = ? WHERE currency = ?",
            h["status"], h["last_error"], h["height"], h["balance"], self.node, h["last_cycle"], now_ms(), self.currency.code)

    # -- deposits ---------------------------------------------------------------------------------
    async def _scan(self) -> None:
        code = self.currency.code
        cursor = await self.store.fetchval("SELECT block_cursor FROM wallet_cursors WHERE currency = ?", code)
        scan = await self.channel.scan(cursor, self.conf.confirmations + self.conf.reorg_watch)
        owners = await self._owners({t.address for t in scan.transfers})
        ours = [t for t in scan.transfers if t.address in owners]
        known: dict[tuple[str, int], Any] = {}
        txids = sorted({t.txid for t in ours})
        for i in range(0, len(txids), 500):
            chunk = txids[i:i + 500]
            rows = await self.store.fetch(
                f"SELECT * FROM deposits WHERE currency = ? AND txid IN ({','.join('?' * len(chunk))})", code, *chunk)
            known.update({(r["txid"], int(r["txout"])): r for r in rows})
        ts = now_ms()
        credited: list[str] = []
        async with self.store.transaction() as tx:
            for t in ours:
                d = known.get((t.txid, t.vout))
                if t.amount is None or t.amount <= 0:
                    await raise_alert(tx, code, "bad_amount", f"{t.txid}:{t.vout}",
                                      f"transfer {t.txid}:{t.vout} to {t.address} has an amount that {code} (precision "
                                      f"{self.currency.precision}) cannot hold; not credited", ts)
                    continue
                if d is None:
                    if t.confirmations < 0:
                        continue  # double-spent before we ever saw it confirm: nothing to credit
                    d = await self._new_deposit(tx, t, owners[t.address], ts)
                    await tx.execute("UPDATE deposit_addresses SET used_at = ? WHERE currency = ? AND address = ? "
                                     "AND used_at IS NULL", ts, code, t.address)
                await self._follow(tx, d, t, ts, credited)
            await tx.execute("UPDATE wallet_cursors SET block_cursor = ?, updated_at = ? WHERE currency = ?",
                             scan.cursor, ts, code)
        for ref in credited:
            log.info("%s: deposit %s credited", self.name, ref)

    async def _owners(self, addresses: set[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        addrs = sorted(addresses)
        for i in range(0, len(addrs), 500):
            chunk = addrs[i:i + 500]
            rows = await self.store.fetch(
                f"SELECT address, member_id FROM deposit_addresses WHERE currency = ? AND address IN ({','.join('?' * len(chunk))})",
                self.currency.code, *chunk)
            out.update({r["address"]: int(r["member_id"]) for r in rows})
        return out

    async def _new_deposit(self, tx: Any, t: Transfer, member_id: int, ts: int) -> dict[str, Any]:
        did = await tx.fetchval(
            "INSERT INTO deposits (member_id, currency, amount, fee, txid, channel, state, confirmations, created_at, "
            "txout, address, block_hash, updated_at) VALUES (?, ?, ?, 0, ?, ?, 'submitted', ?, ?, ?, ?, ?, ?) RETURNING id",
            member_id, self.currency.code, t.amount, t.txid, self.conf.channel, max(t.confirmations, 0), ts, t.vout,
            t.address, t.block_hash, ts)
        return {"id": int(did), "member_id": member_id, "currency": self.currency.code, "amount": t.amount,
                "state": "submitted", "confirmations": 0, "block_hash": None, "txid": t.txid, "txout": t.vout}

    async def _follow(self, tx: Any, d: Any, t: Transfer, ts: int, credited: list[str]) -> None:
        """Move one known deposit along with what the chain now says about it."""
        code, ref = self.currency.code, f"{t.txid}:{t.vout}"
        conf = t.confirmations
        if d["state"] == "submitted":
            if conf < 0:
                await tx.execute("UPDATE deposits SET state = 'rejected', confirmations = 0, updated_at = ? WHERE id = ? "
                                 "AND state = 'submitted'", ts, int(d["id"]))
                log.warning("%s: deposit %s was double-spent before it was credited; rejected", self.name, ref)
                return
            if (int(d["confirmations"]), d["block_hash"]) != (conf, t.block_hash):
                await tx.execute("UPDATE deposits SET confirmations = ?, block_hash = ?, updated_at = ? WHERE id = ?",
                                 conf, t.block_hash, ts, int(d["id"]))
            if conf >= self.conf.confirmations and await credit_deposit(tx, d, ts):
                credited.append(ref)
        elif d["state"] == "accepted":
            if conf <= 0:
                what = "double-spent (conflicted)" if conf < 0 else "back to unconfirmed"
                if await raise_alert(
                        tx, code, "reorg", ref,
                        f"credited deposit #{d['id']} ({format_units(int(d['amount']), self.currency.precision)} {code} "
                        f"to member {d['member_id']}, tx {ref}) was taken out of the chain by a re-org: {what}", ts):
                    log.error("%s: re-org took credited deposit %s out of the chain (%s); alert raised", self.name, ref, what)
            if (int(d["confirmations"]), d["block_hash"]) != (max(conf, 0), t.block_hash):
                await tx.execute("UPDATE deposits SET confirmations = ?, block_hash = ?, updated_at = ? WHERE id = ?",
                                 max(conf, 0), t.block_hash, ts, int(d["id"]))

    # -- withdrawals ------------------------------------------------------------------------------
    async def _rows(self, state: str) -> list[Any]:
        return list(await self.store.fetch("SELECT * FROM withdraws WHERE currency = ? AND state = ? ORDER BY id LIMIT 200",
                                           self.currency.code, state))

    async def _withdrawals(self) -> None:
        for w in await self._rows("processing"):
            await self._reconcile(w)
        for w in await self._rows("submitted"):
            if w["audited_at"] is None:
                await self._audit(w)
        if not self.channel.automatic:
            return
        pending = await self._rows("accepted")
        if not pending:
            return
        available = await self.channel.balance()
        assert available is not None
        for w in pending:
            amount = int(w["amount"])
            if amount > available:
                note = (f"waiting for hot wallet funds (has {format_units(available, self.currency.precision)}, "
                        f"needs {format_units(amount, self.currency.precision)})")
                if w["note"] != note:
                    await self.store.execute("UPDATE withdraws SET note = ?, updated_at = ? WHERE id = ? AND state = 'accepted'",
                                             note, now_ms(), int(w["id"]))
                continue
            if await self._send(w):
                available -= amount

    async def _audit(self, w: Any) -> None:
        """Peatio's audit before paying: a valid address, not ours, and a ledger that adds up."""
        check = await self.channel.validate_address(w["address"])
        ts = now_ms()
        async with self.store.transaction() as tx:
            if not check.valid or check.mine:
                why = "the address is not valid" if not check.valid else "the address belongs to this exchange"
                if await unlock_withdraw(tx, w, ("submitted",), "rejected", f"rejected at audit: {why}", ts):
                    log.warning("%s: withdraw %s rejected: %s", self.name, w["sn"], why)
                return
            problem = await ledger_mismatch(tx, int(w["member_id"]), self.currency.code)
            if problem is not None:
                n = await tx.execute("UPDATE withdraws SET state = 'suspect', audited_at = ?, note = ?, updated_at = ? "
                                     "WHERE id = ? AND state = 'submitted'", ts, f"audit: {problem}", ts, int(w["id"]))
                if n:
                    await raise_alert(tx, self.currency.code, "suspect_withdraw", str(w["sn"]),
                                      f"withdraw {w['sn']} of member {w['member_id']} held: {problem}", ts)
                    log.error("%s: withdraw %s suspect: %s", self.name, w["sn"], problem)
                return
            automatic = self.channel.automatic and int(w["amount"]) <= self.conf.auto_approve
            if w["approved_at"] is not None or automatic or not self.channel.automatic:
                note = "" if self.channel.automatic else "awaiting the bank transfer by an admin"
                await tx.execute("UPDATE withdraws SET state = 'accepted', audited_at = ?, approved_at = COALESCE(approved_at, ?), "
                                 "approved_by = COALESCE(approved_by, ?), note = ?, updated_at = ? WHERE id = ? AND state = 'submitted'",
                                 ts, ts if automatic else None, "auto" if automatic else None, note, ts, int(w["id"]))
            else:
                await tx.execute("UPDATE withdraws SET audited_at = ?, note = 'awaiting admin approval', updated_at = ? "
                                 "WHERE id = ? AND state = 'submitted'", ts, ts, int(w["id"]))

    async def _send(self, w: Any) -> bool:
        """Pay one accepted withdrawal: the idempotency record first, then the daemon, then the result."""
        wid, ts = int(w["id"]), now_ms()
        key = w["send_key"] or f"withdraw {w['sn']} {secrets.token_hex(6)}"
        n = await self.store.execute(
            "UPDATE withdraws SET state = 'processing', send_key = ?, processing_at = ?, attempts = attempts + 1, "
            "note = 'sending', updated_at = ? WHERE id = ? AND state = 'accepted'", key, ts, ts, wid)
        if n != 1:
            return False  # canceled or rejected meanwhile
        try:
            txid = await self.channel.send(w["address"], int(w["amount"]), key)
        except ChannelUnavailable as e:
            if e.maybe_done:
                await self._note(wid, "processing", f"outcome of the payment unknown ({e}); checking the wallet")
            else:
                await self._back_to_accepted(wid, f"daemon unreachable, will retry: {e}")
            raise
        except ChannelError as e:
            if e.code in NOT_SENT_RETRY:
                await self._back_to_accepted(wid, f"daemon refused for now ({e.message}); will retry")
                return False
            if e.code in NOT_SENT_FINAL:
                async with self.store.transaction() as tx:
                    await unlock_withdraw(tx, w, ("processing",), "failed", f"daemon refused: {e.message}", now_ms())
                    await raise_alert(tx, self.currency.code, "withdraw_failed", str(w["sn"]),
                                      f"withdraw {w['sn']} failed, funds returned to the member: {e.message}", now_ms())
                return False
            await self._note(wid, "processing", f"daemon error ({e}); checking the wallet before any retry")
            return False
        fault("after_send")
        await self._record_sent(w, txid)
        return True

    async def _record_sent(self, w: Any, txid: str) -> None:
        try:
            sent = await self.channel.sent(txid)
            network_fee = sent.network_fee if sent else None
        except (ChannelUnavailable, ChannelError):
            network_fee = None  # the payment is made either way; the fee is only informative
        async with self.store.transaction() as tx:
            if await finish_withdraw(tx, w, ("processing",), txid, network_fee, self.fee_member, now_ms()):
                log.info("%s: withdraw %s sent in %s", self.name, w["sn"], txid)

    async def _note(self, wid: int, state: str, note: str) -> None:
        await self.store.execute("UPDATE withdraws SET note = ?, updated_at = ? WHERE id = ? AND state = ?",
                                 note[:500], now_ms(), wid, state)

    async def _back_to_accepted(self, wid: int, note: str) -> None:
        await self.store.execute("UPDATE withdraws SET state = 'accepted', note = ?, updated_at = ? "
                                 "WHERE id = ? AND state = 'processing'", note[:500], now_ms(), wid)

    async def _reconcile(self, w: Any) -> None:
        """A `processing` withdrawal: find its payment in the wallet before anything else happens."""
        wid = int(w["id"])
        found = await self.channel.find_sent(w["send_key"], w["address"], int(w["amount"]), int(w["processing_at"]))
        if found is not None:
            other = await self.store.fetchval("SELECT id FROM withdraws WHERE currency = ? AND txid = ? AND id != ?",
                                              self.currency.code, found.txid, wid)
            if other is None:
                log.warning("%s: withdraw %s was paid in %s before a crash; recording it", self.name, w["sn"], found.txid)
                await self._record_sent(w, found.txid)
                return
        if now_ms() - int(w["processing_at"]) < self.send_grace_ms:
            return  # a request still on its way to the daemon could yet be executed: wait
        if int(w["attempts"]) >= MAX_SEND_ATTEMPTS:
            async with self.store.transaction() as tx:
                if await unlock_withdraw(tx, w, ("processing",), "failed",
                                         f"no payment after {w['attempts']} attempts; funds returned", now_ms()):
                    await raise_alert(tx, self.currency.code, "withdraw_failed", str(w["sn"]),
                                      f"withdraw {w['sn']} failed after {w['attempts']} attempts; funds returned", now_ms())
            return
        await self._back_to_accepted(wid, "the wallet never made the previous attempt; retrying")
