"""Notices to members about their money and their identity check: a toast on the pages and, for the
events that matter, a mail in the member's language.

Deposits are credited by the wallet actors, withdrawals change state in the wallet actors, the
security module and the admin area, KYC decisions in the admin area: rather than asking each of them
to remember to tell the member, this reads what they stored. Every node scans the rows changed since
its last look (indexed timestamps, a few seconds of overlap) and writes one `notices` row per event;
the unique key (kind, row, state) lets exactly one node win the insert, and that node sends the mail
once the insert is committed. The events of the overlap were mostly seen at the last look: one read
of the unique index leaves them out, and what is new is inserted in one transaction.
A node that was down catches up on the last `CATCH_UP_MS` when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node.clock import now_ms
from node.errors import N_
from node.i18n import Translator, translator
from node.mail import Mail, Mailer, MailError
from node.money import format_units

if TYPE_CHECKING:
    from node.exchange import Exchange

log = logging.getLogger(__name__)

POLL_S = 2.0
OVERLAP_MS = 10_000  # rows committed a little out of timestamp order are still seen
CATCH_UP_MS = 3_600_000
KNOWN_CHUNK = 500  # ref ids per look-up of the notices already written

DEPOSIT, WITHDRAW, KYC = "deposit", "withdraw", "kyc"
MAILED = {(DEPOSIT, "accepted"), (WITHDRAW, "done"), (WITHDRAW, "rejected"), (WITHDRAW, "canceled"), (WITHDRAW, "failed"),
          (KYC, "verified"), (KYC, "rejected")}

TEXTS: dict[tuple[str, str], tuple[str, str]] = {
    # (kind, state): (one line for a toast and a subject, the body of the mail)
    (DEPOSIT, "accepted"): (N_("Deposit of {amount} {cur} credited"), N_(
        "Hello,\n\nYour deposit of {amount} {cur} is credited to your {site} account and can be traded now.\n\n"
        "Transaction: {txid}\n")),
    (WITHDRAW, "submitted"): (N_("Withdrawal {sn} of {amount} {cur} confirmed: waiting to be checked and sent"), ""),
    (WITHDRAW, "accepted"): (N_("Withdrawal {sn} of {amount} {cur} approved: it will be sent shortly"), ""),
    (WITHDRAW, "processing"): (N_("Withdrawal {sn} of {amount} {cur} is being sent"), ""),
    (WITHDRAW, "almost_done"): (N_("Withdrawal {sn} of {amount} {cur} sent: waiting for confirmations"), ""),
    (WITHDRAW, "suspect"): (N_("Withdrawal {sn} of {amount} {cur} is held for a review by our staff"), ""),
    (WITHDRAW, "done"): (N_("Withdrawal {sn} of {amount} {cur} sent"), N_(
        "Hello,\n\nYour withdrawal {sn} of {amount} {cur} from your {site} account was sent to {address}.\n\n"
        "Transaction: {txid}\n")),
    (WITHDRAW, "rejected"): (N_("Withdrawal {sn} of {amount} {cur} rejected"), N_(
        "Hello,\n\nYour withdrawal {sn} of {amount} {cur} from your {site} account was rejected by our staff. "
        "The funds are available in your account again.\n\nReason: {reason}\n")),
    (WITHDRAW, "canceled"): (N_("Withdrawal {sn} of {amount} {cur} cancelled"), N_(
        "Hello,\n\nYour withdrawal {sn} of {amount} {cur} from your {site} account was cancelled "
        "({reason}). The funds are available in your account again.\n")),
    (WITHDRAW, "failed"): (N_("Withdrawal {sn} of {amount} {cur} failed"), N_(
        "Hello,\n\nYour withdrawal {sn} of {amount} {cur} from your {site} account could not be sent. "
        "The funds are available in your account again.\n\nReason: {reason}\n")),
    (KYC, "verified"): (N_("Your identity is verified (level {level})"), N_(
        "Hello,\n\nYour identity documents at {site} are checked and accepted: your account is verified "
        "at level {level}, with the limits of that level.\n")),
    (KYC, "rejected"): (N_("Your identity check was not accepted"), N_(
        "Hello,\n\nYour identity documents at {site} could not be accepted.\n\nReason: {reason}\n\n"
        "You can send them again from the identity verification page.\n")),
}


# What changed since a time, of the three kinds, in one statement: every node polls it every POLL_S.
# The first part's casts type the columns the other parts leave empty.
_CHANGED = (
    "SELECT 'deposit' AS kind, id, member_id, currency, amount, state, txid, CAST(NULL AS TEXT) AS sn, "
    "CAST(NULL AS TEXT) AS address, CAST(NULL AS TEXT) AS note, CAST(NULL AS INTEGER) AS level, "
    "CAST(NULL AS TEXT) AS reason, CAST(NULL AS BIGINT) AS updated_at "
    "FROM deposits WHERE done_at >= ? AND state = 'accepted' UNION ALL "
    "SELECT 'withdraw', id, member_id, currency, amount, state, txid, sn, address, note, NULL, NULL, NULL "
    "FROM withdraws WHERE updated_at >= ? UNION ALL "
    "SELECT 'kyc', NULL, member_id, NULL, NULL, state, NULL, NULL, NULL, NULL, level, reason, updated_at "
    "FROM kyc_profiles WHERE updated_at >= ? AND state IN ('verified', 'rejected')")


def text(n: dict[str, Any], _: Translator) -> str:
    """The notice's one line in the language of `_`."""
    line = TEXTS.get((n["kind"], n["state"].split(":")[0]))
    detail = n["detail"] if isinstance(n["detail"], dict) else json.loads(n["detail"] or "{}")
    return _(line[0], **detail) if line else ""


class Notices:
    def __init__(self, ex: Exchange, mailer: Callable[[], Mailer], site: str) -> None:
        self.ex = ex
        self.mailer = mailer
        self.site = site
        self.since = now_ms() - CATCH_UP_MS
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[], None]] = []
        """Called after every look (the websocket hub reads the new rows, of any node, for its subscribers)."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="notices")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception as e:  # the store is away for a moment: next round
                log.warning("notices: scan failed: %r", e)
            for listener in self.listeners:
                try:
                    listener()
                except Exception:
                    log.exception("notices: a listener failed")
            await asyncio.sleep(POLL_S)

    async def scan(self) -> int:
        """One look at what changed; returns how many new notices were written."""
        start = now_ms()
        since = self.since - OVERLAP_MS
        cur = self.ex.config.currencies
        found: list[tuple[int, str, int, str, dict[str, Any]]] = []
        rows = await self.ex.store.fetch(_CHANGED, since, since, since)
        for d in (r for r in rows if r["kind"] == DEPOSIT):
            c = cur.get(d["currency"])
            if c is not None:
                found.append((int(d["member_id"]), DEPOSIT, int(d["id"]), "accepted", {
                    "amount": format_units(int(d["amount"]), c.precision), "cur": c.symbol, "txid": d["txid"] or "—",
                    "currency": c.code}))
        for w in (r for r in rows if r["kind"] == WITHDRAW):
            c = cur.get(w["currency"])
            if c is None or w["state"] in ("submitting",):
                continue
            found.append((int(w["member_id"]), WITHDRAW, int(w["id"]), str(w["state"]), {
                "sn": w["sn"], "amount": format_units(int(w["amount"]), c.precision), "cur": c.symbol,
                "address": w["address"], "txid": w["txid"] or "—", "reason": w["note"] or "—", "currency": c.code}))
        for k in (r for r in rows if r["kind"] == KYC):
            found.append((int(k["member_id"]), KYC, int(k["member_id"]), f"{k['state']}:{int(k['updated_at'])}",
                          {"level": int(k["level"]), "reason": k["reason"] or "—"}))
        known = await self._known(found)
        new = [f for f in found if (f[1], f[2], f[3]) not in known]
        won = await self._record(new) if new else []
        for member_id, kind, _ref, state, detail in won:
            if (kind, state.split(":")[0]) in MAILED:
                await self._mail(member_id, kind, state.split(":")[0], detail)
        self.since = start
        return len(won)

    async def _known(self, found: list[tuple[int, str, int, str, dict[str, Any]]]) -> set[tuple[str, int, str]]:
        """Which of the events found already have their notice (by the unique index)."""
        known: set[tuple[str, int, str]] = set()
        for kind in {f[1] for f in found}:
            refs = sorted({f[2] for f in found if f[1] == kind})
            for i in range(0, len(refs), KNOWN_CHUNK):
                chunk = refs[i:i + KNOWN_CHUNK]
                rows = await self.ex.store.fetch(
                    f"SELECT ref_id, state FROM notices WHERE kind = ? AND ref_id IN ({', '.join('?' * len(chunk))})",
                    kind, *chunk)
                known.update((kind, int(r["ref_id"]), str(r["state"])) for r in rows)
        return known

    async def _record(self, new: list[tuple[int, str, int, str, dict[str, Any]]]
                      ) -> list[tuple[int, str, int, str, dict[str, Any]]]:
        """Insert the new notices in one transaction; those this node won (another node may have
        written some since the look-up: the unique key decides)."""
        won = []
        now = now_ms()
        async with self.ex.store.transaction() as tx:
            for member_id, kind, ref, state, detail in new:
                n = await tx.execute(
                    "INSERT INTO notices (member_id, kind, ref_id, state, detail, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (kind, ref_id, state) DO NOTHING",
                    member_id, kind, ref, state, json.dumps(detail, ensure_ascii=False), now)
                if n == 1:
                    won.append((member_id, kind, ref, state, detail))
        return won

    async def _mail(self, member_id: int, kind: str, state: str, detail: dict[str, Any]) -> None:
        row = await self.ex.store.fetchrow("SELECT email, lang FROM members WHERE id = ?", member_id)
        if row is None:
            return
        _ = translator(str(row["lang"] or "en"))
        subject, body = TEXTS[(kind, state)]
        params = {**detail, "site": self.site}
        try:
            await self.mailer().send(Mail(row["email"], f"{self.site}: {_(subject, **params)}", _(body, **params)))
        except MailError as e:
            log.warning("notices: mail to member %s about %s %s not sent: %s", member_id, kind, state, e)

    async def of_member(self, member_id: int, after: int, limit: int = 20) -> list[dict[str, Any]]:
        rows = await self.ex.store.fetch(
            "SELECT * FROM notices WHERE member_id = ? AND id > ? ORDER BY id LIMIT ?", member_id, after, limit)
        return [dict(r) for r in rows]

    async def last_id(self, member_id: int) -> int:
        v = await self.ex.store.fetchval("SELECT MAX(id) FROM notices WHERE member_id = ?", member_id)
        return int(v or 0)
