"""The editable pages (`/pages/fees|terms|api`) in the visitor's language; the fees page adds the
live fee table of every market.
"""

from __future__ import annotations

from aiohttp import web

from node import cms
from node.exchange import Exchange
from node.fees import rates_in_force
from node.money import format_units
from node.web.api import EXCHANGE
from node.web.forms import fee_percent
from node.web.session import render, translator_of


async def cms_page(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    if slug not in cms.SLUGS:
        raise web.HTTPNotFound()
    _ = translator_of(request)
    ex: Exchange = request.app[EXCHANGE]
    page = await cms.get(ex.store, slug, _.lang)
    fees: list[dict[str, str]] = []
    withdraw_fees: list[dict[str, str]] = []
    if slug == "fees":
        rates = await rates_in_force(ex.store, ex.config.markets)
        for mid, m in ex.config.markets.items():
            maker, taker = rates[mid]
            fees.append({"market": m.name, "id": mid, "maker": fee_percent(maker), "taker": fee_percent(taker)})
        for cur in ex.config.currencies.values():
            if cur.wallet is not None:
                withdraw_fees.append({"symbol": cur.symbol, "fee": format_units(cur.wallet.withdraw_fee, cur.precision),
                                      "min": format_units(cur.wallet.min_withdraw, cur.precision)})
    return render(request, "cms_page.html", {"page": page, "html": cms.render(page["body"]), "fees": fees,
                                             "withdraw_fees": withdraw_fees, "slugs": cms.SLUGS})
