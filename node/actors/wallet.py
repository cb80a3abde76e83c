"""The wallet actor: one per currency with a wallet, driving that currency's payment channel.

Its mailbox receives ticks (every `poll_interval_ms`) and wake-ups (a withdrawal was requested or
approved); each batch runs one *cycle*:

1. **Deposits** (channels that scan): `scan` from the stored cursor finds new transfers; those to a
   member's address become deposits (`skipped` below the currency's minimum), receives to wallet
   addresses no member owns become `wallet_receipts` for reconciliation. The new cursor is stored
   in the same transaction, so nothing is missed across restarts or downtime.
2. **Re-check**: every deposit not yet credited, and every credited one still inside the re-org
   watch, is asked about by txid (`tx_state`), because a scan does not report a transfer that a
   double-spend conflicted. A deposit is credited at the required confirmations (a block reward
   once mature too), exactly once per (txid, vout); one double-spent before that is `failed`; a
   credited one that is conflicted or vanished is taken back as far as the member's balance goes,
   and any shortfall freezes the member's withdrawals until an admin resolves it.
3. **Withdrawals**: follow payments in flight (`processing`, `almost_done`) to their confirmations,
   broadcasting their stored bytes again when the network does not have them; audit `submitted`
   ones; then build, store and broadcast payments for `accepted` ones while the hot wallet covers
   them.
4. **Status**: height, hot wallet balance and health go to `wallet_cursors` for the admin.

Unlike market actors this one does not commit once per batch: paying is an external side effect,
so a payment's signed bytes are committed *before* they are broadcast, and nothing but those
bytes is ever broadcast for that withdrawal while they may still go out. A daemon that cannot be reached is not a crash: the cycle stops, the status says so, and
the next cycle comes after an exponential back-off (at most a minute).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

from node.actors.runtime import Actor
from node.clock import now_ms
from node.config import Currency, WalletConf
from node.errors import ExchangeError
from node.money import format_units
from node.store import Store
from node.wallet.channel import (
    Built,
    Channel,
    ChannelError,
    ChannelUnavailable,
    InsufficientFunds,
    PaymentRejected,
    SettingsError,
    Transfer,
    TxState,
)
from node.wallet.records import (
    IN_FLIGHT,
    credit_deposit,
    finish_withdraw,
    freeze_of,
    freeze_withdrawals,
    ledger_mismatch,
    raise_alert,
    revert_deposit,
    unlock_withdraw,
)

log = logging.getLogger(__name__)

TICK = "tick"
WAKE = "wake"
POLL = "poll"  # like a tick, but ignores the back-off: tests and admins ask for it to see a cycle done
MAX_BACKOFF = 60.0
# bitcoind error codes after which building a payment certainly cannot succeed for this withdrawal
NOT_SENT_FINAL = {-3, -5, -8}  # bad amount / address / parameter
FAULT_ENV = "EXCHANGE_WALLET_FAULT"
RECHECK_LIMIT = 5000  # deposits re-checked per cycle (oldest first); the rest at the next one
# What members read (`note`); details for staff go to `admin_note` and alerts, never to members.
NOTE_WAITING = "waiting to be sent"
NOTE_SENDING = "being sent"
NOTE_REVIEW = "the payment did not go through; held for review by support (the funds stay reserved)"


def fault(point: str) -> None:
    """Test-only crash point: with EXCHANGE_WALLET_FAULT=<point> the process dies here like kill -9
    (no clean-up, nothing flushed). Points: `after_build` (the payment's bytes are stored, not yet
    broadcast) and `after_send` (broadcast, not yet recorded). Unset in production, where this is a
    string comparison."""
    if os.environ.get(FAULT_ENV) == point:
        log.warning("fault injection %s: killing the process", point)
        os.kill(os.getpid(), signal.SIGKILL)


class WalletActor(Actor[str]):
    legacy_grace_ms = 60_000
    """A `processing` withdrawal left by a version that paid with one `sendtoaddress` (no stored
    bytes) and not found in the wallet after this long is held for an admin, never paid again."""

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
            self.health["headers"] = info.extra.get("headers")  # the chain's tip as the daemon knows it
            if self.channel.scans:
                await self._scan()
                await self._recheck()
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
        self.health["scanned_height"] = info.height  # deposits are seen up to here (/metrics: wallet lag)
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

    # -- deposits: discovery ----------------------------------------------------------------------
    async def _scan(self) -> None:
        code = self.currency.code
        cursor = await self.store.fetchval("SELECT block_cursor FROM wallet_cursors WHERE currency = ?", code)
        scan = await self.channel.scan(cursor, self.conf.confirmations + self.conf.reorg_watch)
        owners = await self._owners({t.address for t in scan.transfers})
        known: set[tuple[str, int]] = set()
        txids = sorted({t.txid for t in scan.transfers if t.address in owners})
        for i in range(0, len(txids), 500):
            chunk = txids[i:i + 500]
            rows = await self.store.fetch(
                f"SELECT txid, txout FROM deposits WHERE currency = ? AND txid IN ({','.join('?' * len(chunk))})", code, *chunk)
            known.update((r["txid"], int(r["txout"])) for r in rows)
        ts = now_ms()
        async with self.store.transaction() as tx:
            for t in scan.transfers:
                if t.amount is None or t.amount <= 0:
                    await raise_alert(tx, code, "bad_amount", f"{t.txid}:{t.vout}",
                                      f"transfer {t.txid}:{t.vout} to {t.address} has an amount that {code} (precision "
                                      f"{self.currency.precision}) cannot hold; not credited", ts)
                    continue
                if t.address not in owners:
                    if t.confirmations >= 1 and not t.coinbase:  # a top-up, a stray payment: for reconciliation
                        await tx.execute(
                            "INSERT INTO wallet_receipts (currency, txid, txout, address, amount, coinbase, created_at) "
                            "VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT (currency, txid, txout) DO NOTHING",
                            code, t.txid, t.vout, t.address, t.amount, ts)
                    continue
                if (t.txid, t.vout) in known or t.confirmations < 0:
                    continue  # known ones move in _recheck; one double-spent before we saw it: nothing to record
                await self._new_deposit(tx, t, owners[t.address], ts)
                await tx.execute("UPDATE deposit_addresses SET used_at = ? WHERE currency = ? AND address = ? "
                                 "AND used_at IS NULL", ts, code, t.address)
            await tx.execute("UPDATE wallet_cursors SET block_cursor = ?, updated_at = ? WHERE currency = ?",
                             scan.cursor, ts, code)

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

    def _fmt(self, units: int) -> str:
        return f"{format_units(units, self.currency.precision)} {self.currency.symbol}"

    async def _new_deposit(self, tx: Any, t: Transfer, member_id: int, ts: int) -> None:
        assert t.amount is not None
        state, note = "submitted", ""
        if t.amount < self.conf.min_deposit:
            state = "skipped"
            note = f"below the minimum deposit of {self._fmt(self.conf.min_deposit)}: not credited"
        elif t.coinbase:
            note = "block reward: credited once it is mature"
        await tx.execute(
            "INSERT INTO deposits (member_id, currency, amount, fee, txid, channel, state, confirmations, created_at, "
            "txout, address, block_hash, updated_at, coinbase, note) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            member_id, self.currency.code, t.amount, t.txid, self.conf.channel, state, max(t.confirmations, 0), ts, t.vout,
            t.address, t.block_hash, ts, int(t.coinbase), note)
        if state == "skipped":
            log.info("%s: deposit %s:%s of %s is below the minimum; recorded, not credited", self.name, t.txid, t.vout,
                     self._fmt(t.amount))

    # -- deposits: following each one by txid -----------------------------------------------------
    async def _recheck(self) -> None:
        """Credit, fail or take back deposits from what the wallet says of each transaction now."""
        watch = self.conf.confirmations + self.conf.reorg_watch
        rows = await self.store.fetch(
            "SELECT * FROM deposits WHERE currency = ? AND channel = ? AND (state = 'submitted' OR "
            "(state = 'accepted' AND confirmations < ?)) ORDER BY id LIMIT ?",
            self.currency.code, self.conf.channel, watch, RECHECK_LIMIT)
        if not rows:
            return
        states: dict[str, TxState] = {}
        for txid in dict.fromkeys(r["txid"] for r in rows):
            states[txid] = await self.channel.tx_state(txid)
        ts = now_ms()
        async with self.store.transaction() as tx:
            for d in rows:
                await self._move(tx, d, states[d["txid"]], ts)

    async def _move(self, tx: Any, d: Any, st: TxState, ts: int) -> None:
        code, ref, did = self.currency.code, f"{d['txid']}:{d['txout']}", int(d["id"])
        conf = st.confirmations if st.known else 0
        if (int(d["confirmations"]), d["block_hash"]) != (max(conf, 0), st.block_hash):
            await tx.execute("UPDATE deposits SET confirmations = ?, block_hash = ?, updated_at = ? WHERE id = ?",
                             max(conf, 0), st.block_hash, ts, did)
        gone = not st.known or conf < 0 or (conf == 0 and not st.in_mempool)
        if d["state"] == "submitted":
            if not st.known or conf < 0:
                n = await tx.execute(
                    "UPDATE deposits SET state = 'failed', note = ?, updated_at = ? WHERE id = ? AND state = 'submitted'",
                    "the transaction was replaced by a conflicting one (double-spent) before it was confirmed: "
                    "nothing was credited", ts, did)
                if n:
                    log.warning("%s: deposit %s was double-spent before it was credited: failed", self.name, ref)
                return
            if conf >= self.conf.confirmations and st.mature:
                if await credit_deposit(tx, d, ts):
                    await tx.execute("UPDATE deposits SET note = '' WHERE id = ?", did)
                    log.info("%s: deposit %s credited", self.name, ref)
            return
        # accepted: credited, still inside the re-org watch
        member, amount = int(d["member_id"]), int(d["amount"])
        if gone:
            what = "vanished from the wallet" if not st.known else "double-spent (conflicted)" if conf < 0 else \
                "dropped from the chain and the mempool"
            done = await revert_deposit(tx, d, f"reversed: the transaction was {what} after it was credited", ts)
            if done is None:
                return
            taken, short = done
            message = (f"credited deposit #{did} ({self._fmt(amount)} to member {member}, tx {ref}) was {what} by a re-org: "
                       f"{self._fmt(taken)} taken back from the member's balance")
            if short:
                message += f"; shortfall {self._fmt(short)} (no coins behind it): the member's withdrawals are frozen"
                await freeze_withdrawals(
                    tx, member, code, f"deposit:{did}", short,
                    f"deposit {ref} of {self._fmt(amount)} was reversed after its transaction was double-spent; "
                    f"{self._fmt(short)} of it could not be taken back from your balance. Withdrawals are on hold "
                    "until support resolves this.", ts)
                await tx.execute("UPDATE deposits SET note = ? WHERE id = ?",
                                 f"reversed: the transaction was double-spent after it was credited; {self._fmt(short)} "
                                 "is still owed (withdrawals on hold until support resolves it)", did)
            await raise_alert(tx, code, "reorg", ref, message, ts)
            log.error("%s: %s", self.name, message)
        elif conf == 0:  # back in the mempool: it may well confirm again; until then nothing leaves
            if await raise_alert(tx, code, "reorg", ref,
                                 f"credited deposit #{did} ({self._fmt(amount)} to member {member}, tx {ref}) was taken "
                                 "out of the chain by a re-org: back to unconfirmed; the member's withdrawals are frozen "
                                 "until it confirms again", ts):
                log.error("%s: re-org took credited deposit %s back to unconfirmed; alert raised", self.name, ref)
            await freeze_withdrawals(tx, member, code, f"deposit:{did}", 0,
                                     f"deposit {ref} is waiting to be confirmed again after a chain re-organisation; "
                                     "withdrawals resume when it is", ts)
        elif conf >= self.conf.confirmations:
            await tx.execute("UPDATE withdraw_freezes SET resolved_at = ?, resolved_by = 'wallet', resolution = ? "
                             "WHERE currency = ? AND ref = ? AND shortfall = 0 AND resolved_at IS NULL",
                             ts, "the deposit confirmed again", code, f"deposit:{did}")

    # -- withdrawals ------------------------------------------------------------------------------
    async def _rows(self, *states: str) -> list[Any]:
        marks = ",".join("?" * len(states))
        return list(await self.store.fetch(
            f"SELECT * FROM withdraws WHERE currency = ? AND state IN ({marks}) ORDER BY id LIMIT 200",
            self.currency.code, *states))

    async def _withdrawals(self) -> None:
        if self.channel.automatic:  # a bank transfer is completed by an admin, not followed here
            for w in await self._rows(*IN_FLIGHT):
                await self._follow_payment(w)
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
            hold = await freeze_of(self.store, int(w["member_id"]))
            if hold is not None:
                await self._note(w, "accepted", f"on hold: {hold}", "member's withdrawals are frozen")
                continue
            amount = int(w["amount"])
            if amount > available:
                await self._short(w, available)
                continue
            if await self._pay(w):
                available -= amount

    async def _short(self, w: Any, available: int | None) -> None:
        """The hot wallet cannot pay this one now: the member sees it waiting, the admin sees why."""
        has = f"has {self._fmt(available)}" if available is not None else "cannot cover it"
        why = f"hot wallet {has}, needs {self._fmt(int(w['amount']))} plus the network fee"
        await self._note(w, "accepted", NOTE_WAITING, why)
        async with self.store.transaction() as tx:
            await raise_alert(tx, self.currency.code, "hot_wallet_low", str(w["sn"]),
                              f"withdraw {w['sn']} waits: {why}; refill the hot wallet", now_ms())

    async def _audit(self, w: Any) -> None:
        """Peatio's audit before paying: a valid address, not ours, and a ledger that adds up."""
        check = await self.channel.validate_address(w["address"])
        ts = now_ms()
        async with self.store.transaction() as tx:
            if not check.valid or check.mine:
                why = "the address is not valid" if not check.valid else "the address belongs to this exchange"
                if await unlock_withdraw(tx, w, ("submitted",), "rejected", f"rejected: {why}; funds returned", ts):
                    log.warning("%s: withdraw %s rejected: %s", self.name, w["sn"], why)
                return
            problem = await ledger_mismatch(tx, int(w["member_id"]), self.currency.code)
            if problem is not None:
                n = await tx.execute("UPDATE withdraws SET state = 'suspect', audited_at = ?, note = ?, admin_note = ?, "
                                     "updated_at = ? WHERE id = ? AND state = 'submitted'",
                                     ts, "held for review by support", f"audit: {problem}", ts, int(w["id"]))
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

    async def _pay(self, w: Any) -> bool:
        """Build and sign the payment, store its bytes, then broadcast them (see the module doc)."""
        wid = int(w["id"])
        inputs: list[tuple[str, int]] = []
        if w["raw_tx"]:  # an earlier payment of this withdrawal conflicted and an admin approved paying again
            old = await self.channel.tx_state(str(w["txid"]))
            if old.known and old.confirmations >= 0 and (old.confirmations > 0 or old.in_mempool):
                await self.store.execute("UPDATE withdraws SET state = 'almost_done', updated_at = ? WHERE id = ? "
                                         "AND state = 'accepted'", now_ms(), wid)
                log.error("%s: withdraw %s: its earlier payment %s is alive again; following it, not paying again",
                          self.name, w["sn"], w["txid"])
                return False
            # spend whatever the old payment spent that is still unspent: at most one of the two can confirm
            inputs = await self.channel.unspent_inputs(str(w["raw_tx"]))
        try:
            built = await self.channel.build(w["address"], int(w["amount"]), inputs)
        except InsufficientFunds:
            await self._short(w, None)
            return False
        except ChannelError as e:
            if e.code not in NOT_SENT_FINAL:
                raise
            async with self.store.transaction() as tx:
                if await unlock_withdraw(tx, w, ("accepted",), "failed", "the network refused this payment; funds returned",
                                         now_ms()):
                    await raise_alert(tx, self.currency.code, "withdraw_failed", str(w["sn"]),
                                      f"withdraw {w['sn']} failed, funds returned to the member: {e.message}", now_ms())
            return False
        ts = now_ms()
        replaced = f"replaces payment {w['txid']}" if w["raw_tx"] else ""
        n = await self.store.execute(
            "UPDATE withdraws SET state = 'processing', raw_tx = ?, txid = ?, network_fee = ?, processing_at = ?, "
            "broadcast_at = NULL, confirmations = 0, attempts = attempts + 1, note = ?, admin_note = ?, updated_at = ? "
            "WHERE id = ? AND state = 'accepted'",
            built.raw, built.txid, built.network_fee, ts, NOTE_SENDING, replaced, ts, wid)
        if n != 1:  # canceled or rejected meanwhile: these bytes are dropped before anyone saw them
            await self._release(built)
            return False
        fault("after_build")
        await self._broadcast({**dict(w), "raw_tx": built.raw, "txid": built.txid, "state": "processing"})
        return True

    async def _release(self, built: Built) -> None:
        try:
            await self.channel.release(built)
        except (ChannelUnavailable, ChannelError) as e:
            log.warning("%s: could not release the coins of an unused payment (%s); the daemon frees them at restart",
                        self.name, e)

    async def _broadcast(self, w: Mapping[str, Any]) -> None:
        """Send the stored bytes (again): harmless if the network has them already."""
        wid = int(w["id"])
        try:
            await self.channel.broadcast(str(w["raw_tx"]))
        except ChannelUnavailable as e:
            await self._note(w, w["state"], None, f"broadcast outcome unknown ({e}); the same bytes are sent again")
            raise
        except PaymentRejected as e:
            if e.conflict:
                await self._conflicted(w, f"the daemon refused it: {e}")
            else:
                await self._note(w, w["state"], None, f"the daemon refused the broadcast ({e}); the same bytes are tried again")
                async with self.store.transaction() as tx:
                    await raise_alert(tx, self.currency.code, "payment_refused", str(w["sn"]),
                                      f"withdraw {w['sn']}: payment {w['txid']} refused by the daemon ({e}); retrying the "
                                      "same transaction at every poll", now_ms())
            return
        fault("after_send")
        ts = now_ms()
        n = await self.store.execute(
            "UPDATE withdraws SET state = 'almost_done', broadcast_at = COALESCE(broadcast_at, ?), note = ?, admin_note = '', "
            "updated_at = ? WHERE id = ? AND state = 'processing'", ts, self._progress(0), ts, wid)
        if n:
            log.info("%s: withdraw %s broadcast in %s", self.name, w["sn"], w["txid"])

    def _progress(self, conf: int) -> str:
        return f"sent; {max(conf, 0)} of {self.conf.confirmations} confirmations"

    async def _conflicted(self, w: Mapping[str, Any], why: str) -> None:
        """The payment can never confirm (an input went to another transaction): held for an admin."""
        ts = now_ms()
        marks = ",".join("?" * len(IN_FLIGHT))
        async with self.store.transaction() as tx:
            n = await tx.execute(
                f"UPDATE withdraws SET state = 'suspect', note = ?, admin_note = ?, updated_at = ? WHERE id = ? "
                f"AND state IN ({marks})", NOTE_REVIEW,
                f"payment {w['txid']} conflicted ({why}); it cannot confirm. Approve to pay again with a new "
                "transaction, or reject to return the funds", ts, int(w["id"]), *IN_FLIGHT)
            if n:
                await raise_alert(tx, self.currency.code, "payment_conflicted", f"{w['sn']}:{w['txid']}",
                                  f"withdraw {w['sn']}: payment {w['txid']} conflicted ({why}); held as suspect with the "
                                  "funds locked", ts)
                log.error("%s: withdraw %s: payment %s conflicted (%s)", self.name, w["sn"], w["txid"], why)

    async def _follow_payment(self, w: Any) -> None:
        """A payment in flight: broadcast again while the network does not have it, done when deep enough."""
        if not w["txid"]:
            await self._legacy(w)
            return
        st = await self.channel.tx_state(str(w["txid"]))
        if st.known and st.confirmations < 0:
            await self._conflicted(w, f"a conflicting transaction is {-st.confirmations} block(s) deep")
            return
        if not st.known or (st.confirmations == 0 and not st.in_mempool):
            if not w["raw_tx"]:
                await self._conflicted(w, "the network no longer has it and its bytes were never stored")
                return
            if w["state"] == "almost_done":
                async with self.store.transaction() as tx:
                    if await raise_alert(tx, self.currency.code, "payment_dropped", f"{w['sn']}:{w['txid']}",
                                         f"withdraw {w['sn']}: payment {w['txid']} left the mempool unconfirmed; "
                                         "broadcasting the same transaction again", now_ms()):
                        log.warning("%s: payment %s of withdraw %s was dropped; broadcasting it again", self.name,
                                    w["txid"], w["sn"])
            await self._broadcast(w)
            return
        ts = now_ms()
        if st.confirmations >= self.conf.confirmations:
            async with self.store.transaction() as tx:
                if await finish_withdraw(tx, w, IN_FLIGHT, str(w["txid"]), None, self.fee_member, ts):
                    await tx.execute("UPDATE withdraws SET confirmations = ? WHERE id = ?", st.confirmations, int(w["id"]))
                    log.info("%s: withdraw %s done (%s confirmations)", self.name, w["sn"], st.confirmations)
            return
        if (w["state"], int(w["confirmations"])) != ("almost_done", st.confirmations):
            marks = ",".join("?" * len(IN_FLIGHT))
            await self.store.execute(
                f"UPDATE withdraws SET state = 'almost_done', confirmations = ?, broadcast_at = COALESCE(broadcast_at, ?), "
                f"note = ?, admin_note = '', updated_at = ? WHERE id = ? AND state IN ({marks})",
                st.confirmations, ts, self._progress(st.confirmations), ts, int(w["id"]), *IN_FLIGHT)

    async def _legacy(self, w: Any) -> None:
        """`processing` with no stored payment: left by a version that paid with `sendtoaddress`.
        Found in the wallet: followed like any payment. Not found: held for an admin, never repaid."""
        found = await self.channel.find_sent(w["send_key"] or "", w["address"], int(w["amount"]), int(w["processing_at"] or 0))
        if found is not None:
            other = await self.store.fetchval("SELECT id FROM withdraws WHERE currency = ? AND txid = ? AND id != ?",
                                              self.currency.code, found.txid, int(w["id"]))
            if other is None:
                await self.store.execute("UPDATE withdraws SET txid = ?, network_fee = ?, updated_at = ? WHERE id = ? "
                                         "AND state = 'processing'", found.txid, found.network_fee, now_ms(), int(w["id"]))
                return
        if now_ms() - int(w["processing_at"] or 0) >= self.legacy_grace_ms:
            await self._conflicted(w, "its outcome is unknown: the wallet has no payment for it")

    async def _note(self, w: Mapping[str, Any], state: str, note: str | None, admin_note: str) -> None:
        """Set what the member reads (None: leave it) and what staff read, if they changed."""
        if (note is None or w["note"] == note) and w["admin_note"] == admin_note:
            return
        await self.store.execute("UPDATE withdraws SET note = COALESCE(?, note), admin_note = ?, updated_at = ? "
                                 "WHERE id = ? AND state = ?", note, admin_note[:500], now_ms(), int(w["id"]), state)
