"""Identity verification: the member's form with its checks (fields, file types and sizes), files kept
outside the web root, the admin's review (approve with a level, reject with a reason the member sees),
and the withdrawal limits the level sets, enforced for the pages and the API alike."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from node.admin import uploads
from node.kyc import FILES, check_identity
from node.web.app import STATIC
from node.web.i18n import FormErrors
from node.web.pages.admin import KYC, UPLOADS
from tests.test_admin_fixtures import BOSS, JPEG, PDF, PNG, audit_rows, flash, post_files, staff
from tests.test_pages import Site, Visitor

GOOD = {"full_name": "Ann Lee", "birth_date": "1990-04-25", "address": "1 Main Road\n10115 Berlin", "country": "de",
        "phone": "+49 176 1234 5678", "doc_type": "passport", "doc_number": "c01x00t47"}
DOCS = {"document": ("passport.jpg", JPEG, "image/jpeg"), "proof_of_address": ("bill.pdf", PDF, "application/pdf")}


async def submit(v: Visitor, fields: dict[str, str] | None = None,
                 files: dict[str, tuple[str, bytes, str]] | None = None) -> tuple[int, str]:
    return await post_files(v, "/kyc", GOOD if fields is None else fields, DOCS if files is None else files)


async def count_uploads(site: Site) -> int:
    return int(await site.ex.store.fetchval("SELECT COUNT(*) FROM uploads"))


def test_identity_fields_are_checked_all_at_once() -> None:
    today = dt.date(2026, 1, 1)
    assert check_identity(dict(GOOD), today).country == "DE"
    with pytest.raises(FormErrors) as info:
        check_identity({"full_name": "", "birth_date": "2010-01-01", "address": "x" * 301, "country": "XX",
                        "phone": "12345", "doc_type": "visa", "doc_number": "<b>"}, today)
    fields = {e.field: e.message for e in info.value.errors}
    assert fields == {
        "full_name": "This field is required", "birth_date": "You must be at least 18 years old",
        "address": "Too long: at most 300 characters", "country": "Enter your country's two-letter code, like DE, US or CN",
        "phone": "Enter the number with its country code, like +4917612345678", "doc_type": "Choose the type of document",
        "doc_number": "Only letters, digits, spaces and dashes"}
    with pytest.raises(FormErrors, match="YYYY-MM-DD"):
        check_identity(dict(GOOD, birth_date="25.04.1990"), today)
    with pytest.raises(FormErrors, match="check the year"):
        check_identity(dict(GOOD, birth_date="1850-01-01"), today)


def test_file_types_come_from_the_bytes_not_the_name() -> None:
    ok = uploads.Incoming("scan.png", PNG)
    assert uploads.check("document", ok, uploads.IMAGE_PDF) == "image/png"
    cases = [
        (uploads.Incoming("scan.png", b"<html><script>alert(1)</script>"), "This type of file is not accepted: only JPEG, PNG, PDF"),
        (uploads.Incoming("scan.exe", b"MZ\x90\x00" + bytes(100)), "This type of file is not accepted"),
        (uploads.Incoming("scan.html", PNG), "The file name does not match its content: a PNG file must end in .png"),
        (uploads.Incoming("scan.jpg", PDF), "a PDF file must end in .pdf"),
        (uploads.Incoming("scan.png", b""), "The file is empty"),
        (uploads.Incoming("big.png", PNG + bytes(uploads.MAX_BYTES)), "The file is too large: at most 5 MB"),
        (uploads.Incoming("notes.txt", b"plain text"), "only JPEG, PNG, PDF"),
    ]
    for f, message in cases:
        with pytest.raises(FormErrors.__mro__[1], match=message):
            uploads.check("document", f, uploads.IMAGE_PDF)
    assert uploads.check("attachment", uploads.Incoming("notes.txt", "日志\nline".encode()), uploads.WITH_TEXT) == "text/plain"
    assert uploads.clean_name('../../etc/pa"ss<wd>.png') == "passwd.png"


async def test_bad_submissions_are_refused_with_clear_messages_and_store_nothing(asite: Site) -> None:
    ann = await asite.member("ann@example.com")
    status, _ = await submit(ann, dict(GOOD, birth_date="tomorrow", doc_type=""),
                             {"document": ("id.gif", b"GIF89a" + bytes(50), "image/gif")})
    assert status == 400
    assert ann.error_of("birth_date") == "Enter the date as YYYY-MM-DD, like 1990-04-25"
    assert ann.error_of("doc_type") == "Choose the type of document"
    assert ann.error_of("document") == "This type of file is not accepted: only JPEG, PNG, PDF"
    assert ann.error_of("proof_of_address") == "Please choose a file"
    assert ann.value_of("full_name") == "Ann Lee"  # what was typed stays
    status, _ = await submit(ann, files={"document": ("id.jpg", JPEG + bytes(uploads.MAX_BYTES), "image/jpeg"),
                                         "proof_of_address": ("bill.pdf", PDF, "application/pdf")})
    assert status == 400 and ann.error_of("document") == "The file is too large: at most 5 MB"
    status, _ = await submit(ann, files={"document": ("id.pdf", PNG, "application/pdf"),
                                         "proof_of_address": ("bill.pdf", PDF, "application/pdf")})
    assert status == 400 and "must end in .png" in ann.error_of("document")
    assert await count_uploads(asite) == 0
    assert (await asite.server.app[KYC].profile(await asite.mid("ann@example.com")))["state"] == "unverified"
    # over the whole request's limit: refused before any handler reads it, with a page that says why
    status, _ = await submit(ann, files={"document": ("a.jpg", JPEG + bytes(6 * 1024 * 1024), "image/jpeg"),
                                         "proof_of_address": ("b.jpg", JPEG + bytes(6 * 1024 * 1024), "image/jpeg")})
    assert status == 413 and "Files may be at most 5 MB each" in ann.text
    # no CSRF token: refused, nothing stored
    status, _ = await post_files(ann, "/kyc", GOOD, DOCS, csrf=False)
    assert status == 403 and await count_uploads(asite) == 0


async def test_submit_review_and_the_limit_rises(any_asite: Site) -> None:
    site = any_asite
    ann = await site.member("ann@example.com", usd="5000", btc=None)
    mid = await site.mid("ann@example.com")
    assert await ann.get("/kyc") == 200 and "Not verified yet" in ann.text
    assert 'data-k="limit">1000.00<' in ann.text and 'data-k="next">100000.00<' in ann.text
    # over the level-0 limit: refused, with the limit and how to raise it (the page and the API get the same)
    status, _ = await ann.post("/funds/usd/withdraw", {"account_holder": "Ann Example", "account_number": "GB29 NWBK 6016 1331 9268 19", "bic": "DEUTDEFF", "reference": "kyc", "amount": "1500"})
    assert status == 400
    assert ann.error_of("amount") == ("This is over your withdrawal limit of 1000.0 USD per 24 hours (verification "
                                      "level 0); 1000.0 USD is left. Verify your identity to raise the limit.")
    status, _ = await submit(ann)
    assert status == 200 and "your documents are sent" in flash(ann)
    assert "being reviewed" in ann.text and 'id="kyc-form"' not in ann.text
    root: Path = site.server.app[UPLOADS]
    rows = await site.ex.store.fetch("SELECT * FROM uploads WHERE member_id = ? ORDER BY id", mid)
    assert [r["purpose"] for r in rows] == [f"kyc_{k}" for k in FILES] and [r["mime"] for r in rows] == [
        "image/jpeg", "application/pdf"]
    for r in rows:
        path = root / r["path"]
        assert path.read_bytes() in (JPEG, PDF) and not path.resolve().is_relative_to(STATIC.resolve())
        assert "passport" not in r["path"] and oct(path.stat().st_mode & 0o777) == "0o600"
    status, _ = await submit(ann)
    assert status == 400 and "being reviewed" in ann.general_error()

    sup = await staff(site, "sup@example.com", "support")
    await sup.get("/admin/kyc")
    assert f'data-member="{mid}"' in sup.text
    assert await sup.get(f"/admin/kyc/{mid}") == 200 and "C01X00T47" in sup.text and "DE" in sup.text
    r = await sup.c.get(f"/admin/kyc/files/{rows[0]['id']}")
    assert r.status == 200 and await r.read() == JPEG and r.headers["Content-Type"] == "image/jpeg"
    assert "sandbox" in r.headers["Content-Security-Policy"] and r.headers["X-Content-Type-Options"] == "nosniff"
    r = await sup.c.get(f"/admin/kyc/files/{rows[1]['id']}")
    assert r.headers["Content-Disposition"].startswith("attachment")  # a PDF is never shown inline
    status, _ = await sup.post(f"/admin/kyc/{mid}/approve", {"level": "1"})
    assert status == 200 and "verified (level 1)" in flash(sup)
    await ann.get("/kyc")
    assert "Your identity is verified (level 1)" in ann.text and 'data-k="limit">100000.00<' in ann.text
    status, _ = await ann.post("/funds/usd/withdraw", {"account_holder": "Ann Example", "account_number": "GB29 NWBK 6016 1331 9268 19", "bic": "DEUTDEFF", "reference": "kyc", "amount": "1500"})
    assert status == 200 and "requested" in flash(ann)
    await ann.get("/kyc")
    assert 'data-k="left">98500.00<' in ann.text
    actions = [r["action"] for r in await audit_rows(site.ex) if r["member_id"] == mid and r["action"].startswith("admin.kyc")]
    assert actions.count("admin.kyc.view") == 1 and actions.count("admin.kyc.file") == 2 and "admin.kyc.approve" in actions


async def test_a_rejection_shows_the_reason_and_the_member_may_send_again(asite: Site) -> None:
    ann = await asite.member("ann@example.com")
    mid = await asite.mid("ann@example.com")
    await submit(ann)
    boss = await staff(asite, BOSS)
    status, _ = await boss.post(f"/admin/kyc/{mid}/reject", {"reason": ""})
    assert status == 400 and boss.error_of("reason") == "Please give the reason: the member will see it"
    status, _ = await boss.post(f"/admin/kyc/{mid}/approve", {"level": "12"})
    assert status == 400 and "level must be between 1 and 9" in boss.text
    await boss.post(f"/admin/kyc/{mid}/reject", {"reason": "The photo of the passport is blurred <b>"})
    await ann.get("/kyc")
    assert "were not accepted" in ann.text and "The photo of the passport is blurred &lt;b&gt;" in ann.text
    assert ann.value_of("full_name") == "Ann Lee" and 'id="kyc-form"' in ann.text  # filled in again, to correct
    status, _ = await submit(ann, dict(GOOD, full_name="Ann B. Lee"))
    assert status == 200
    assert (await asite.server.app[KYC].profile(mid))["full_name"] == "Ann B. Lee"
    status, _ = await boss.post(f"/admin/kyc/{mid}/reject", {"reason": "still blurred"})
    assert status == 200
    status, _ = await boss.post(f"/admin/kyc/{mid}/reject", {"reason": "twice"})
    assert status == 400 and "this member has no submission waiting for review" in boss.general_error()


async def test_documents_are_for_their_member_and_the_kyc_staff_only(asite: Site) -> None:
    ann = await asite.member("ann@example.com")
    await submit(ann)
    file_id = int(await asite.ex.store.fetchval("SELECT MIN(id) FROM uploads"))
    bob = await asite.member("bob@example.com")
    assert (await bob.c.get(f"/admin/kyc/files/{file_id}", allow_redirects=False)).status == 403
    assert (await ann.c.get(f"/admin/kyc/files/{file_id}", allow_redirects=False)).status == 403
    assert (await bob.c.get(f"/support/files/{file_id}", allow_redirects=False)).status == 404
    fin = await staff(asite, "fin@example.com", "finance")
    assert (await fin.c.get(f"/admin/kyc/files/{file_id}", allow_redirects=False)).status == 403
    r = await (await asite.visitor()).c.get(f"/static/../uploads/kyc_document/{file_id}", allow_redirects=False)
    assert r.status in (403, 404)


async def test_withdrawals_at_once_cannot_pass_the_limit_together(any_asite: Site) -> None:
    """The limit is checked again inside the transaction that locks the funds, after the account row
    is locked: five withdrawals of 400 USD sent at once against the 1000 USD level-0 limit let two
    through, on both backends (checked only beforehand, all five could pass)."""
    import asyncio

    site = any_asite
    await site.member("bob@example.com", usd="5000", btc=None)
    mid = await site.mid("bob@example.com")
    results = await asyncio.gather(*(site.ex.funds.request_withdraw(mid, "usd", "400", "DE12 5001 0517 0648 4898 90")
                                     for _ in range(5)), return_exceptions=True)
    accepted = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(accepted) == 2 and len(refused) == 3, results
    assert all("withdrawal limit" in str(e) for e in refused), refused
    row = await site.ex.store.fetchrow("SELECT balance, locked FROM accounts WHERE member_id = ? AND currency = 'usd'", mid)
    one = 10 ** site.ex.config.currencies["usd"].precision
    locked = sum(int(w["total"]) for w in accepted)
    assert locked == 2 * (400 * one + int(accepted[0]["fee"]))
    assert (int(row["balance"]), int(row["locked"])) == (5000 * one - locked, locked)
