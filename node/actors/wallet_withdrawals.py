"""The wallet actor's withdrawal jobs (step 3 of a cycle, node/actors/wallet.py): follow payments in
flight (`processing`, `almost_done`) to their confirmations, broadcasting their stored bytes again
when the network does not have them; audit `submitted` ones; then build, store and broadcast
payments for `accepted` ones while the hot wallet covers them.

Paying is an external side effect, so a payment's signed bytes are committed *before* they are
broadcast, and nothing but those bytes is ever broadcast for that withdrawal while they may still
go out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from node.actors.wallet_base import WalletParts, fault, log
from node.clock import now_ms
from node.wallet.channel import Built, ChannelError, ChannelUnavailable, InsufficientFunds, PaymentRejected
from node.wallet.records import (
    IN_FLIGHT,
    finish_withdraw,
    freeze_of,
    ledger_mismatch,
    raise_alert,
    unlock_withdraw,
)

# bitcoind error codes after which building a payment certainly cannot succeed for this withdrawal
NOT_SENT_FINAL = {-3, -5, -8}  # bad amount / address / parameter
# What members read (`note`); details for staff go to `admin_note` and alerts, never to members.
NOTE_WAITING = "waiting to be sent"
NOTE_SENDING = "being sent"
NOTE_REVIEW = "the payment did not go through; held for review by support (the funds stay reserved)"


class Withdrawals(WalletParts):
    legacy_grace_ms = 60_000
    """A `processing` withdrawal left by a version that paid with one `sendtoaddress` (no stored
    bytes) and not found in the wallet after this long is held for an admin, never paid again."""

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
                # `w` was read before the audit: an admin may have approved it since. Decided on the
                # row as it is now, in this one statement (approve_withdraw's update is its mirror):
                # whichever of the two comes second sees the other, and an approval is never lost.
                await tx.execute("UPDATE withdraws SET audited_at = ?, updated_at = ?, "
                                 "state = CASE WHEN approved_at IS NOT NULL THEN 'accepted' ELSE state END, "
                                 "note = CASE WHEN approved_at IS NOT NULL THEN '' ELSE 'awaiting admin approval' END "
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
