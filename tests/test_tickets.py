"""Support tickets: opening with checks, HTML shown as text, comments from both sides with unread
markers, mails on replies, close and reopen, staff filters, attachments, and privacy between members."""

from __future__ import annotations

import re

from tests.test_admin_fixtures import BOSS, PDF, PNG, flash, post_files, staff
from tests.test_pages import Site, Visitor

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def open_ticket(v: Visitor, title: str = "Deposit missing", body: str = "My deposit of 1 BTC has not arrived.",
                      files: dict[str, tuple[str, bytes, str]] | None = None) -> tuple[int, str]:
    return await post_files(v, "/support/tickets", {"title": title, "body": body}, files or {})


def ticket_id(v: Visitor) -> int:
    m = re.search(r"<h1 class=\"page-title\">#(\d+) ", v.text)
    assert m, v.text[:2000]
    return int(m.group(1))


async def test_opening_a_ticket_checks_every_field(asite: Site) -> None:
    ann = await asite.member("ann@example.com")
    status, _ = await open_ticket(ann, title="", body="", files={"attachment": ("x.exe", b"MZ" + bytes(10), "application/x")})
    assert status == 400
    assert ann.error_of("title") == "Please give your ticket a title"
    assert ann.error_of("body") == "Please write your message"
    assert ann.error_of("attachment") == "This type of file is not accepted: only JPEG, PNG, PDF, TXT"
    status, _ = await open_ticket(ann, title="t" * 121, body="b" * 5001)
    assert status == 400 and ann.error_of("title") == "Too long: at most 120 characters"
    assert ann.error_of("body") == "Too long: at most 5000 characters"
    status, _ = await open_ticket(ann, files={"attachment": ("big.pdf", PDF + bytes(5 * 1024 * 1024), "application/pdf")})
    assert status == 400 and ann.error_of("attachment") == "The file is too large: at most 5 MB"
    assert ann.value_of("title") == "Deposit missing"
    assert await asite.ex.store.fetchval("SELECT COUNT(*) FROM tickets") == 0
    status, _ = await post_files(ann, "/support/tickets", {"title": "x", "body": "y"}, {}, csrf=False)
    assert status == 403 and await asite.ex.store.fetchval("SELECT COUNT(*) FROM tickets") == 0


async def test_html_in_a_ticket_is_shown_as_text_on_both_sides(asite: Site) -> None:
    ann = await asite.member("ann@example.com")
    status, _ = await open_ticket(ann, title=XSS, body=f"Hello\n{XSS}")
    assert status == 200
    tid = ticket_id(ann)
    sup = await staff(asite, "sup@example.com", "support")
    for v, path in ((ann, f"/support/tickets/{tid}"), (ann, "/support/tickets"), (sup, f"/admin/tickets/{tid}"),
                    (sup, "/admin/tickets")):
        assert await v.get(path) == 200
        assert "<script>alert" not in v.text and "<img src=x" not in v.text, path
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in v.text, path
    await sup.post(f"/admin/tickets/{tid}/reply", {"body": f"Answer {XSS}"})
    await ann.get(f"/support/tickets/{tid}")
    assert "Answer &lt;script&gt;" in ann.text and "<script>alert" not in ann.text


async def test_a_conversation_with_unread_markers_mails_and_close(asite: Site) -> None:
    ann = await asite.member("ann@example.com")
    await open_ticket(ann, files={"attachment": ("screenshot.png", PNG, "image/png")})
    tid = ticket_id(ann)
    assert "Your ticket is open" in flash(ann) and "screenshot.png" in ann.text
    sup = await staff(asite, "sup@example.com", "support")
    boss = await staff(asite, BOSS)

    # staff see it as open, unanswered and unread; nobody's yet
    await sup.get("/admin/tickets?filter=unanswered")
    row = re.search(rf'<tr data-ticket="{tid}" class="unread">', sup.text)
    assert row is not None and 'data-unread="1"' in sup.text
    await sup.get("/admin/tickets?filter=mine")
    assert f'data-ticket="{tid}"' not in sup.text
    assert await sup.get(f"/admin/tickets/{tid}") == 200
    r = await sup.c.get(re.search(r'href="(/admin/tickets/files/\d+)"', sup.text).group(1))  # type: ignore[union-attr]
    assert r.status == 200 and await r.read() == PNG
    await sup.get("/admin/tickets")
    assert f'<tr data-ticket="{tid}" class="">' in sup.text  # read now (by the whole support team)

    # support answers: the member is mailed and sees an unread marker until they open it
    before = len(asite.outbox.mails)
    status, _ = await sup.post(f"/admin/tickets/{tid}/reply", {"body": ""})
    assert status == 400 and sup.error_of("body") == "Please write your message"
    status, _ = await sup.post(f"/admin/tickets/{tid}/reply", {"body": "We found it: it needs 2 more confirmations."})
    assert "the member is notified by e-mail" in flash(sup)
    mail = asite.outbox.mails[before]
    assert mail.to == "ann@example.com" and f"ticket #{tid}" in mail.subject
    assert "2 more confirmations" in mail.text and f"/support/tickets/{tid}" in mail.text
    await ann.get("/support/tickets")
    assert f'<tr data-ticket="{tid}" class="unread">' in ann.text and "new answer" in ann.text
    await ann.get(f"/support/tickets/{tid}")
    assert "2 more confirmations" in ann.text
    await ann.get("/support/tickets")
    assert f'<tr data-ticket="{tid}" class="">' in ann.text

    # the ticket is the answerer's now; the member's reply mails them and shows as unread again
    await sup.get("/admin/tickets?filter=mine")
    assert f'data-ticket="{tid}"' in sup.text
    await boss.get("/admin/tickets?filter=mine")
    assert f'data-ticket="{tid}"' not in boss.text
    await post_files(ann, f"/support/tickets/{tid}/comments", {"body": "Thanks! It arrived."},
                     {"attachment": ("log.txt", b"tx 1234 confirmed\n", "text/plain")})
    assert asite.outbox.mails[-1].to == "sup@example.com" and "It arrived" in asite.outbox.mails[-1].text
    await sup.get("/admin/tickets?filter=unanswered")
    assert f'<tr data-ticket="{tid}" class="unread">' in sup.text

    # closed by the member: no comment until reopened; support can reopen too
    await ann.post(f"/support/tickets/{tid}/close", {})
    assert "The ticket is closed" in flash(ann) and 'id="ticket-reopen"' in ann.text
    status, _ = await post_files(ann, f"/support/tickets/{tid}/comments", {"body": "one more"}, {})
    assert status == 400 and "This ticket is closed" in ann.general_error()
    await sup.get("/admin/tickets?filter=closed")
    assert f'data-ticket="{tid}"' in sup.text
    await sup.post(f"/admin/tickets/{tid}/reopen", {})
    assert "open again" in flash(sup)
    await ann.get(f"/support/tickets/{tid}")
    assert 'id="comment-form"' in ann.text
    await sup.post(f"/admin/tickets/{tid}/close", {})
    rows = await asite.ex.store.fetch("SELECT action, ok, member_id FROM audit_log WHERE action LIKE 'admin.ticket.%' ORDER BY seq")
    assert [(r["action"], r["ok"]) for r in rows] == [("admin.ticket.reply", 0), ("admin.ticket.reply", 1),
                                                      ("admin.ticket.reopen", 1), ("admin.ticket.close", 1)]
    assert rows[1]["member_id"] == await asite.mid("ann@example.com")  # in the member's own security log too


async def test_another_members_ticket_and_files_do_not_exist_for_you(asite: Site) -> None:
    ann = await asite.member("ann@example.com")
    await open_ticket(ann, files={"attachment": ("a.png", PNG, "image/png")})
    tid = ticket_id(ann)
    upload = int(await asite.ex.store.fetchval("SELECT MAX(id) FROM uploads"))
    bob = await asite.member("bob@example.com")
    assert await bob.get(f"/support/tickets/{tid}") == 404
    assert (await bob.c.get(f"/support/files/{upload}")).status == 404
    for path in (f"/support/tickets/{tid}/comments", f"/support/tickets/{tid}/close", f"/support/tickets/{tid}/reopen"):
        status, _ = await bob.post(path, {"body": "hi"})
        assert status == 404, path
    assert await asite.ex.store.fetchval("SELECT COUNT(*) FROM ticket_comments") == 1
    assert await asite.ex.store.fetchval("SELECT state FROM tickets WHERE id = ?", tid) == "open"
    await bob.get("/support/tickets")
    assert f'data-ticket="{tid}"' not in bob.text
    assert (await ann.c.get(f"/support/files/{upload}")).status == 200
    anon = await asite.visitor()
    r = await anon.c.get("/support/tickets", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/login")
