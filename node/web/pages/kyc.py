"""The member's side of identity verification (`/kyc`): the verification state (with the reason of a
rejection), the withdrawal limits it sets now and after verification, and the form (identity data
and two documents, multipart) while one may be sent.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.admin import uploads
from node.errors import ExchangeError
from node.exchange import Exchange
from node.kyc import COUNTRIES, DOC_TYPES, FILES, REJECTED, UNVERIFIED
from node.web.api import EXCHANGE
from node.web.edge import takes_files
from node.web.forms import Form, amount, utc
from node.web.pages.admin import KYC
from node.web.pages.common import redirect, require_member
from node.web.session import render, session_of, translator_of


async def _kyc_context(request: web.Request, member_id: int, form: Form | None = None) -> dict[str, Any]:
    kyc = request.app[KYC]
    ex: Exchange = request.app[EXCHANGE]
    p = await kyc.profile(member_id)
    limits = []
    for x in await kyc.limits(member_id):
        cur = ex.config.currencies[x["currency"]]
        limits.append({"symbol": x["symbol"], "code": x["currency"],
                       "limit": None if x["limit"] is None else amount(x["limit"], cur),
                       "left": None if x["left"] is None else amount(x["left"], cur),
                       "next": None if x["next"] is None else amount(x["next"], cur)})
    if form is None:
        form = Form({k: str(p.get(k) or "") for k in ("full_name", "birth_date", "address", "country", "phone",
                                                       "doc_type", "doc_number")} if p["state"] == REJECTED else {})
    return {"p": p, "level": await kyc.level(member_id), "limits": limits, "form": form, "doc_types": DOC_TYPES, "countries": sorted(COUNTRIES),
            "file_kinds": FILES, "can_submit": p["state"] in (UNVERIFIED, REJECTED),
            "submitted": utc(p["submitted_at"]) if p["submitted_at"] else "",
            "max_mb": uploads.MAX_BYTES // (1024 * 1024)}


async def kyc_page(request: web.Request) -> web.Response:
    member_id = require_member(request)
    return render(request, "kyc.html", await _kyc_context(request, member_id))


@takes_files
async def kyc_submit(request: web.Request) -> web.Response:
    member_id = require_member(request)
    _ = translator_of(request)
    data = await request.post()
    form = Form(data)
    files = {name: uploads.from_field(data.get(name)) for name in FILES}
    try:
        await request.app[KYC].submit(member_id, {k: v for k, v in form.data.items()}, files)
    except ExchangeError as e:
        form.add(e, _)
        return render(request, "kyc.html", await _kyc_context(request, member_id, form), status=400)
    session_of(request).flash(_("Thank you: your documents are sent and will be reviewed soon"), "success")
    return redirect("/kyc")
