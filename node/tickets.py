"""Support tickets: a member opens one (title, text, optional attachment), both sides comment, either
side closes or reopens, and each side sees what it has not read yet.

Unread markers are ids, not times: a ticket keeps the id of the last comment from each side and the
last comment id each side has seen, so "unread" is `last_staff_comment > member_seen_id` (for the
member) and `last_member_comment > staff_seen_id` (for staff, shared by the whole support team). A
ticket is *unanswered* while the member spoke last. Staff filters: open, unanswered, mine (assigned
to me; a ticket is assigned to whoever answers it first, or takes it).

Text is stored as typed and only ever rendered through the templates' autoescaping, so HTML or
script in a ticket shows as text and never runs. Attachments go through node/admin/uploads (type and
size checked, outside the web root), and only the ticket's member and support staff may fetch them.

A reply mails the other side: staff replies go to the member, member replies to the assigned staff
member (nobody is mailed for an unassigned ticket: the admin list shows it as unanswered).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.admin import uploads
from node.clock import now_ms
from node.errors import N_, FormError, FormErrors, InvalidParameter
from node.mail import Mail, Mailer, MailError
from node.store import Store

log = logging.getLogger(__name__)

OPEN, CLOSED = "open", "closed"
TITLE_MAX = 120
BODY_MAX = 5000
FILTERS = ("open", "unanswered", "mine", "closed", "all")
PAGE = 100


class TicketNotFound(InvalidParameter):
    """No such ticket, or not one of the asking member's (the answer is the same)."""

    status = 404


def _check_body(body: str, errors: list[FormError], field: str = "body") -> str:
    body = body.replace("\r\n", "\n").strip()
    if not body:
        errors.append(FormError(field, N_("Please write your message")))
    elif len(body) > BODY_MAX:
        errors.append(FormError(field, N_("Too long: at most {n} characters"), n=BODY_MAX))
    elif any(not c.isprintable() and c not in "\n\t" for c in body):
        errors.append(FormError(field, N_("Only printable characters, please")))
    return body


class Tickets:
    def __init__(self, store: Store, root: Path, mailer: Callable[[], Mailer], base_url: str, site: str) -> None:
        self.store = store
        self.root = root
        self.mailer = mailer
        self.base_url = base_url.rstrip("/")
        self.site = site

    # -- writing --------------------------------------------------------------------------------------
    async def open(self, member_id: int, title: str, body: str, file: uploads.Incoming | None) -> int:
        errors: list[FormError] = []
        title = " ".join(title.split())
        if not title:
            errors.append(FormError("title", N_("Please give your ticket a title")))
        elif len(title) > TITLE_MAX:
            errors.append(FormError("title", N_("Too long: at most {n} characters"), n=TITLE_MAX))
        body = _check_body(body, errors)
        mime = self._check_file(file, errors)
        if errors:
            raise FormErrors(errors)
        rel = await self._write(member_id, file, mime)
        ts = now_ms()
        async with self.store.transaction() as tx:
            tid = int(await tx.fetchval(
                "INSERT INTO tickets (member_id, title, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                member_id, title, OPEN, ts, ts))
            await self._add_comment(tx, tid, member_id, member_id, False, body, file, mime, rel, ts)
        return tid

    async def _write(self, owner: int, file: uploads.Incoming | None, mime: str | None) -> str | None:
        """An attachment goes to disk before the transaction that records it."""
        if file is None or mime is None:
            return None
        return await uploads.write_file(self.root, owner, "ticket", file, mime)

    def _check_file(self, file: uploads.Incoming | None, errors: list[FormError]) -> str | None:
        if file is None:
            return None
        try:
            return uploads.check("attachment", file, uploads.WITH_TEXT)
        except FormError as e:
            errors.append(e)
            return None

    async def _add_comment(self, tx: Any, tid: int, owner: int, author: int, staff: bool, body: str,
                           file: uploads.Incoming | None, mime: str | None, rel: str | None, ts: int) -> int:
        upload_id = None
        if file is not None and mime is not None and rel is not None:
            upload_id = await uploads.add_row(tx, owner, "ticket", tid, file, mime, rel,
                                                  keep_data=uploads.shared(self.store))
        cid = int(await tx.fetchval(
            "INSERT INTO ticket_comments (ticket_id, author_id, staff, body, upload_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id", tid, author, int(staff), body, upload_id, ts))
        if staff:
            await tx.execute("UPDATE tickets SET last_staff_comment = ?, staff_seen_id = ?, updated_at = ?, "
                             "assignee_id = COALESCE(assignee_id, ?) WHERE id = ?", cid, cid, ts, author, tid)
        else:
            await tx.execute("UPDATE tickets SET last_member_comment = ?, member_seen_id = ?, updated_at = ? WHERE id = ?",
                             cid, cid, ts, tid)
        return cid

    async def comment(self, tid: int, author: int, staff: bool, body: str, file: uploads.Incoming | None) -> int:
        """A comment from the member (`staff=False`, only on their own ticket) or from support; the
        other side is mailed. A closed ticket takes no comments: reopen it first."""
        t = await self.ticket(tid, None if staff else author)
        if t["state"] != OPEN:
            raise FormError(None, N_("This ticket is closed: reopen it to write again"))
        errors: list[FormError] = []
        body = _check_body(body, errors)
        mime = self._check_file(file, errors)
        if errors:
            raise FormErrors(errors)
        owner = int(t["member_id"])
        rel = await self._write(owner, file, mime)
        ts = now_ms()
        async with self.store.transaction() as tx:
            cid = await self._add_comment(tx, tid, owner, author, staff, body, file, mime, rel, ts)
        await self._notify(t, staff, body, await self.store.fetchval("SELECT assignee_id FROM tickets WHERE id = ?", tid))
        return cid

    async def _notify(self, t: dict[str, Any], staff: bool, body: str, assignee: int | None) -> None:
        """Mail the other side about a reply; a mail server failure is logged, the reply stays."""
        if staff:
            to = await self.store.fetchval("SELECT email FROM members WHERE id = ?", t["member_id"])
            link = f"{self.base_url}/support/tickets/{t['id']}"
            subject = f"[{self.site}] New reply to your ticket #{t['id']}: {t['title']}"
            text = (f"Hello,\n\nSupport answered your ticket #{t['id']} \"{t['title']}\":\n\n{body}\n\n"
                    f"Read it and answer here:\n\n{link}\n")
        else:
            if assignee is None:
                return
            to = await self.store.fetchval("SELECT email FROM members WHERE id = ?", assignee)
            link = f"{self.base_url}/admin/tickets/{t['id']}"
            subject = f"[{self.site}] Ticket #{t['id']} has a new message from the member"
            text = f"Hello,\n\nThe member wrote on ticket #{t['id']} \"{t['title']}\":\n\n{body}\n\n{link}\n"
        if not to:
            return
        try:
            await self.mailer().send(Mail(str(to), subject, text))
        except MailError:
            log.warning("ticket %s: the reply notice could not be mailed", t["id"])

    async def set_state(self, tid: int, state: str, member_id: int | None) -> bool:
        """Close or reopen (the member only their own ticket); False when it already was so."""
        if state not in (OPEN, CLOSED):
            raise InvalidParameter("state must be open or closed", "state")
        await self.ticket(tid, member_id)
        ts = now_ms()
        n = await self.store.execute(
            "UPDATE tickets SET state = ?, closed_at = ?, updated_at = ? WHERE id = ? AND state <> ?",
            state, ts if state == CLOSED else None, ts, tid, state)
        return n == 1

    async def assign(self, tid: int, staff_id: int | None) -> None:
        await self.ticket(tid, None)
        await self.store.execute("UPDATE tickets SET assignee_id = ?, updated_at = ? WHERE id = ?", staff_id, now_ms(), tid)

    async def mark_seen(self, tid: int, staff: bool) -> None:
        """The side has read everything up to the last comment (only ever moves forward)."""
        if staff:
            await self.store.execute("UPDATE tickets SET staff_seen_id = last_member_comment WHERE id = ? "
                                     "AND staff_seen_id < last_member_comment", tid)
        else:
            await self.store.execute("UPDATE tickets SET member_seen_id = last_staff_comment WHERE id = ? "
                                     "AND member_seen_id < last_staff_comment", tid)

    # -- reading --------------------------------------------------------------------------------------
    async def ticket(self, tid: int, member_id: int | None) -> dict[str, Any]:
        """A ticket; with `member_id`, only that member's (another member's ticket does not exist)."""
        row = await self.store.fetchrow(
            "SELECT t.*, m.email AS member_email, a.email AS assignee_email FROM tickets t "
            "JOIN members m ON m.id = t.member_id LEFT JOIN members a ON a.id = t.assignee_id WHERE t.id = ?", tid)
        if row is None or (member_id is not None and int(row["member_id"]) != member_id):
            raise TicketNotFound(f"ticket {tid} does not exist", "ticket")
        t = dict(row)
        t["member_unread"] = int(t["last_staff_comment"]) > int(t["member_seen_id"])
        t["staff_unread"] = int(t["last_member_comment"]) > int(t["staff_seen_id"])
        t["unanswered"] = t["state"] == OPEN and int(t["last_member_comment"]) > int(t["last_staff_comment"])
        return t

    async def comments(self, tid: int) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT c.*, m.email AS author_email, u.name AS file_name, u.size AS file_size, u.mime AS file_mime "
            "FROM ticket_comments c JOIN members m ON m.id = c.author_id LEFT JOIN uploads u ON u.id = c.upload_id "
            "WHERE c.ticket_id = ? ORDER BY c.id", tid)
        return [dict(r) for r in rows]

    async def of_member(self, member_id: int, limit: int = PAGE) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT * FROM tickets WHERE member_id = ? ORDER BY (CASE WHEN state = 'open' THEN 0 ELSE 1 END), "
            "updated_at DESC, id DESC LIMIT ?", member_id, limit)
        out = []
        for r in rows:
            t = dict(r)
            t["member_unread"] = int(t["last_staff_comment"]) > int(t["member_seen_id"])
            out.append(t)
        return out

    async def unread_for_member(self, member_id: int) -> int:
        return int(await self.store.fetchval(
            "SELECT COUNT(*) FROM tickets WHERE member_id = ? AND last_staff_comment > member_seen_id", member_id) or 0)

    async def staff_list(self, which: str, staff_id: int | None, limit: int = PAGE, offset: int = 0) -> list[dict[str, Any]]:
        """The support team's list: `open`, `unanswered` (the member spoke last), `mine`, `closed`, `all`."""
        where = {
            "open": "t.state = 'open'",
            "unanswered": "t.state = 'open' AND t.last_member_comment > t.last_staff_comment",
            "mine": "t.state = 'open' AND t.assignee_id = ?",
            "closed": "t.state = 'closed'",
            "all": "1 = 1",
        }.get(which)
        if where is None:
            raise InvalidParameter(f"filter must be one of {', '.join(FILTERS)}", "filter")
        args: list[Any] = [staff_id] if which == "mine" else []
        rows = await self.store.fetch(
            "SELECT t.*, m.email AS member_email, a.email AS assignee_email FROM tickets t JOIN members m ON "
            f"m.id = t.member_id LEFT JOIN members a ON a.id = t.assignee_id WHERE {where} "
            "ORDER BY t.updated_at DESC, t.id DESC LIMIT ? OFFSET ?", *args, limit, offset)
        out = []
        for r in rows:
            t = dict(r)
            t["staff_unread"] = int(t["last_member_comment"]) > int(t["staff_seen_id"])
            t["unanswered"] = t["state"] == OPEN and int(t["last_member_comment"]) > int(t["last_staff_comment"])
            out.append(t)
        return out

    async def counts(self, staff_id: int | None) -> dict[str, int]:
        async def n(sql: str, *args: Any) -> int:
            return int(await self.store.fetchval(sql, *args) or 0)

        return {
            "open": await n("SELECT COUNT(*) FROM tickets WHERE state = 'open'"),
            "unanswered": await n("SELECT COUNT(*) FROM tickets WHERE state = 'open' AND last_member_comment > last_staff_comment"),
            "mine": await n("SELECT COUNT(*) FROM tickets WHERE state = 'open' AND assignee_id = ?", staff_id),
            "unread": await n("SELECT COUNT(*) FROM tickets WHERE last_member_comment > staff_seen_id"),
        }

    async def attachment(self, upload_id: int, member_id: int | None) -> tuple[dict[str, Any], bytes] | None:
        """A ticket attachment for its member (`member_id`) or for staff (None)."""
        got = await uploads.load(self.store, self.root, upload_id)
        if got is None or got[0]["purpose"] != "ticket":
            return None
        if member_id is not None and int(got[0]["member_id"]) != member_id:
            return None
        return got
