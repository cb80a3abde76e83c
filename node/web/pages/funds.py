"""The funds page: balances, deposit addresses (or bank details), withdrawals (with the bank account
for fiat) and their cancellation, deposit and withdrawal history, the ledger.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from yarl import URL

from node.clock import now_ms
from node.errors import ExchangeError
from node.exchange import Exchange
from node.money import format_units
from node.wallet.records import freeze_of
from node.web.api import json_response
from node.web.forms import GENERAL, Form, amount, iso, parse_amount, qr_data_uri, utc
from node.web.i18n import N_, Translator
from node.web.pages.common import _exchange, _form, path_id, redirect, require_member
from node.web.session import SECOND_FACTOR, render, session_of, translator_of

LEDGER_PAGE = 50

BANK_FIELDS = {
    "bank_name": N_("Bank"), "account_holder": N_("Account holder"), "account_number": N_("Account number"),
    "swift": N_("SWIFT/BIC"), "bank_address": N_("Bank address"),
}
LEDGER_REASONS = {
    "order_submit": N_("Order placed (funds locked)"),
    "order_cancel": N_("Order cancelled (funds unlocked)"),
    "order_fullfilled": N_("Order filled (unused lock returned)"),
    "strike_add": N_("Trade: received"),
    "strike_sub": N_("Trade: paid"),
    "strike_fee": N_("Trade fee"),
    "deposit": N_("Deposit"),
    "withdraw": N_("Withdrawal"),
    "withdraw_lock": N_("Withdrawal (funds locked)"),
    "withdraw_unlock": N_("Withdrawal cancelled (funds unlocked)"),
    "withdraw_fee": N_("Withdrawal fee"),
    "fix": N_("Correction"),
    "deposit_revert": N_("Deposit reversed (its transaction was double-spent)"),
}


def _funds_api(ex: Exchange) -> Any:
    """The wallets' facade (deposits, addresses, withdrawals; node/wallet/funds.py)."""
    return ex.funds


async def _balances(ex: Exchange, member_id: int) -> list[dict[str, Any]]:
    out = []
    for a in await ex.accounts_of(member_id):
        cur = ex.config.currencies[a["currency"]]
        bal, locked = int(a["balance"]), int(a["locked"])
        out.append({"code": cur.code, "symbol": cur.symbol, "name": cur.name, "kind": cur.kind,
                    "available": amount(bal, cur), "locked": amount(locked, cur), "total": amount(bal + locked, cur),
                    "empty": bal + locked == 0})
    return out


async def funds(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "funds.html", await _funds_context(request, member_id))


async def _funds_context(request: web.Request, member_id: int, withdraw_form: Form | None = None,
                         code: str | None = None) -> dict[str, Any]:
    ex = _exchange(request)
    _ = translator_of(request)
    balances = await _balances(ex, member_id)
    code = code or request.query.get("currency") or next((b["code"] for b in balances if not b["empty"]), None) \
        or next(iter(ex.config.currencies))
    if code not in ex.config.currencies:
        raise web.HTTPNotFound()
    cur = ex.config.currencies[code]
    try:
        page = max(1, min(int(request.query.get("page", "1")), 10_000))
    except ValueError:
        page = 1
    facade = _funds_api(ex)
    second = request.app.get(SECOND_FACTOR)
    address, address_error, bank = None, None, None
    try:
        got = await facade.deposit_address(member_id, code)
        address = got.get("address") if isinstance(got, dict) else got
        bank = got.get("bank") if isinstance(got, dict) else None
    except ExchangeError as e:
        address_error = (_("The {cur} wallet cannot be reached right now; please try again in a few minutes.",
                           cur=cur.symbol) if e.status == 503 else
                         _("Deposits of {cur} are not open on this exchange yet.", cur=cur.symbol))
    deposits = await facade.deposits_of(member_id, code, limit=20)
    withdraws = await facade.withdraws_of(member_id, code, limit=20)
    holds = await _holds(ex, [int(w["id"]) for w in withdraws or () if w["state"] == "submitting"])
    w = cur.wallet
    ledger = await ex.store.fetch(
        "SELECT * FROM ledger WHERE member_id = ? AND currency = ? ORDER BY id DESC LIMIT ? OFFSET ?",
        member_id, code, LEDGER_PAGE + 1, (page - 1) * LEDGER_PAGE)
    return {
        "balances": balances,
        "cur": cur,
        "address": address,
        "address_error": address_error,
        "qr": qr_data_uri(address) if address and cur.kind == "coin" else None,
        "bank": [(_(BANK_FIELDS.get(k, k)), v) for k, v in bank.items()] if bank else None,
        "withdraw_fee": amount(w.withdraw_fee, cur) if w is not None else None,
        "withdraw_min": amount(w.min_withdraw, cur) if w is not None else None,
        "withdraw_code": facade is not None and (await second.required(member_id, "withdraw") if second is not None
                                                 else getattr(facade, "second_factor", None) is not None),
        "deposits": [_deposit_view(cur, d, _) for d in deposits],
        "withdraws": None if withdraws is None else [_withdraw_view(cur, w, _, holds) for w in withdraws],
        "hold": await freeze_of(ex.store, member_id),
        "withdraw_form": withdraw_form or Form(),
        "withdraw_open": facade is not None and cur.wallet is not None,
        "ledger": [_ledger_view(cur, dict(r), _) for r in ledger[:LEDGER_PAGE]],
        "page": page,
        "more": len(ledger) > LEDGER_PAGE,
    }


async def _holds(ex: Exchange, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The confirmation and address holds of withdrawals waiting in `submitting` (node/security/addresses.py)."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = await ex.store.fetch(f"SELECT * FROM withdraw_holds WHERE withdraw_id IN ({marks})", *ids)
    return {int(r["withdraw_id"]): dict(r) for r in rows}


def explorer_link(cur: Any, txid: str | None) -> str:
    """The block explorer page of a transaction, from the currency's `explorer_tx` template."""
    if not txid or not cur.explorer_tx or cur.kind != "coin":
        return ""
    return cur.explorer_tx.replace("{txid}", str(URL.build(path=txid)).lstrip("/"))


def _withdraw_view(cur: Any, w: dict[str, Any], _: Translator, holds: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A withdrawal in words: its state, what it waits for, its transaction or the reason it stopped."""
    state, note, now = str(w["state"]), str(w.get("note") or ""), now_ms()
    hold = (holds or {}).get(int(w["id"]))
    waiting = ""
    if state == "submitting":
        parts = []
        if hold is not None and hold.get("confirmed_at") is None:
            parts.append(_("waiting for your confirmation by the link we mailed you (until {time} UTC)",
                           time=utc(int(hold["confirm_by"]))[:16]))
        if hold is not None and int(hold["release_at"]) > now:
            parts.append(_("new address on hold until {time} UTC", time=utc(int(hold["release_at"]))[:16]))
        waiting = "; ".join(parts) or _("about to be checked")
    elif state == "submitted":
        waiting = (_("waiting for an admin's approval") if w.get("audited_at") and not w.get("approved_at")
                   else _("being checked"))
    elif state == "accepted":
        waiting = _("approved; our staff makes the bank transfer") if cur.kind == "fiat" else _("approved; it will be sent shortly")
        if note.startswith("on hold: ") or note == "waiting to be sent":
            waiting = note  # the wallet's own words for the member (never hot wallet figures)
    elif state == "processing":
        waiting = _("being sent")
    elif state == "almost_done":
        waiting = note
    elif state == "suspect":
        waiting = _("held for a review by our staff")
    reason = ""
    if state in ("rejected", "canceled", "failed"):
        reason = note.removeprefix("rejected by an admin: ")
    label = {"submitting": _("Waiting"), "submitted": _("Checking"), "accepted": _("Approved"), "processing": _("Sending"),
             "almost_done": _("Confirming"), "done": _("Sent"), "rejected": _("Rejected"), "canceled": _("Cancelled"), "failed": _("Failed"),
             "suspect": _("On review")}.get(state, _(state))
    return {"id": int(w["id"]), "sn": w.get("sn") or "", "time": utc(int(w["created_at"])), "at": iso(int(w["created_at"])),
            "amount": amount(int(w["amount"]), cur), "fee": amount(int(w["fee"]), cur), "address": w["address"],
            "state": state, "state_label": label, "waiting": waiting, "reason": reason, "txid": w.get("txid") or "",
            "explorer": explorer_link(cur, w.get("txid")),
            "cancellable": state in ("submitting", "submitted", "accepted")}


def _deposit_view(cur: Any, d: dict[str, Any], _: Translator) -> dict[str, Any]:
    state = str(d["state"])
    need = cur.wallet.confirmations if cur.wallet is not None else 0
    if state == "submitted":
        waiting = (_("waiting for the bank transfer to be matched") if cur.kind == "fiat" or d.get("channel") == "bank"
                   else _("confirmations {n}/{need}", n=int(d.get("confirmations") or 0), need=need))
        label = _("Pending")
        if d.get("note"):  # a block reward waiting to mature
            waiting = f"{waiting}; {d['note']}"
    elif state == "accepted":
        waiting, label = "", _("Credited")
    else:  # failed, skipped, reverted: the reason is the wallet's note
        waiting, label = str(d.get("note") or ""), _(state)
    return {"time": utc(int(d["created_at"])), "at": iso(int(d["created_at"])), "amount": amount(int(d["amount"]), cur),
            "txid": d["txid"], "explorer": explorer_link(cur, d["txid"]), "state": state, "state_label": label,
            "waiting": waiting, "confirmations": d.get("confirmations", 0)}


def _ledger_view(cur: Any, r: dict[str, Any], _: Translator) -> dict[str, Any]:
    reason = LEDGER_REASONS.get(r["reason"])
    return {"time": utc(int(r["created_at"])), "at": iso(int(r["created_at"])),
            "reason": _(reason) if reason else r["reason"],
            "d_balance": _signed(int(r["d_balance"]), cur), "d_locked": _signed(int(r["d_locked"]), cur),
            "fee": amount(int(r["fee"]), cur) if int(r["fee"]) else "",
            "ref": f"{r['ref_type']} #{r['ref_id']}", "up": int(r["d_balance"]) > 0, "down": int(r["d_balance"]) < 0}


def _signed(units: int, cur: Any) -> str:
    if units == 0:
        return "0"
    return ("+" if units > 0 else "−") + amount(abs(units), cur)


async def funds_balances(request: web.Request) -> web.Response:
    """Balances for the funds page to refresh itself."""
    member_id = require_member(request)
    return json_response(await _balances(_exchange(request), member_id), headers={"Cache-Control": "no-store"})


IBAN_RE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}")
BIC_RE = re.compile(r"[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?")


def _iban_ok(iban: str) -> bool:
    """ISO 13616 check digits (mod 97): catches a mistyped IBAN before money leaves."""
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _bank_account(form: Form, _: Translator) -> str:
    """A bank withdrawal's destination from its fields, as one line for the admin who pays it:
    "holder | IBAN or account number | BIC | reference"."""
    holder = form.text("account_holder", 70, required=True)
    number = "".join(form.text("account_number", 40, required=True).split()).upper()
    bic = "".join(form.text("bic", 11).split()).upper()
    ref = form.text("reference", 35)
    if number[:2].isalpha() and IBAN_RE.fullmatch(number) and not _iban_ok(number):
        form.error("account_number", _("This IBAN is not valid: please check it (its check digits do not match)"))
    elif not number.isalnum() or len(number) < 5:
        form.error("account_number", _("Enter an IBAN or an account number (letters and digits)"))
    if bic and not BIC_RE.fullmatch(bic):
        form.error("bic", _("A BIC has 8 or 11 letters and digits, like DEUTDEFF"))
    return " | ".join(p for p in (holder, number, bic, ref) if p)


async def withdraw(request: web.Request) -> web.Response:
    """A withdrawal request through the wallets' facade, checked there completely."""
    member_id = require_member(request)
    ex = _exchange(request)
    _ = translator_of(request)
    code = request.match_info["currency"]
    if code not in ex.config.currencies:
        raise web.HTTPNotFound()
    cur = ex.config.currencies[code]
    form = await _form(request)
    facade = _funds_api(ex)
    if facade is None or cur.wallet is None:
        form.error(GENERAL, _("Withdrawals of {cur} are not open on this exchange yet", cur=cur.symbol))
    else:
        try:
            address = _bank_account(form, _) if cur.kind == "fiat" else form.text("address", 200, required=True)
            units = parse_amount(form.value("amount"), cur.precision, "amount")
            if form.ok:
                await facade.check_address(code, address)  # before the one-time code is spent
            otp = form.text("otp_code", 16) or None
            if form.ok:
                w = await facade.request_withdraw(member_id, code, format_units(units, cur.precision), address, otp=otp)
        except ExchangeError as e:
            form.add(e, _)
    if not form.ok:
        return render(request, "funds.html", await _funds_context(request, member_id, form, code), status=400)
    view = _withdraw_view(cur, w, _, await _holds(ex, [int(w["id"])]))
    session_of(request).flash(_("Withdrawal {sn} requested: {waiting}", sn=view["sn"], waiting=view["waiting"]), "success")
    return redirect(f"/funds?currency={code}#withdraw")


async def withdraw_cancel(request: web.Request) -> web.Response:
    """Take back a withdrawal that is not being paid yet (the wallets' facade unlocks the funds)."""
    member_id = require_member(request)
    ex = _exchange(request)
    _ = translator_of(request)
    facade = _funds_api(ex)
    wid = path_id(request)
    if facade is None:
        raise web.HTTPNotFound()
    s = session_of(request)
    try:
        w = await facade.cancel_withdraw(member_id, wid)
        s.flash(_("Withdrawal cancelled, the funds are available again"), "success")
        return redirect(f"/funds?currency={w['currency']}#withdraw")
    except ExchangeError as e:
        s.flash(_.error(e), "error")
        return redirect("/funds")
