"""The wallet actor's deposit jobs (steps 1 and 2 of a cycle, node/actors/wallet.py).

**Discovery**: `scan` from the stored cursor finds new transfers; those to a member's address become
deposits (`skipped` below the currency's minimum), receives to wallet addresses no member owns become
`wallet_receipts` for reconciliation. The new cursor is stored in the same transaction, so nothing is
missed across restarts or downtime.

**Re-check**: every deposit not yet credited, and every credited one still inside the re-org watch,
is asked about by txid (`tx_state`), because a scan does not report a transfer that a double-spend
conflicted. A deposit is credited at the required confirmations (a block reward once mature too),
exactly once per (txid, vout); one double-spent before that is `failed`; a credited one that is
conflicted or vanished is taken back as far as the member's balance goes, and any shortfall freezes
the member's withdrawals until an admin resolves it.
"""

from __future__ import annotations

from typing import Any

from node.actors.wallet_base import WalletParts, log
from node.clock import now_ms
from node.wallet.channel import Transfer, TxState
from node.wallet.records import credit_deposit, freeze_withdrawals, raise_alert, revert_deposit

RECHECK_LIMIT = 5000  # deposits re-checked per cycle (oldest first); the rest at the next one


class Deposits(WalletParts):
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
