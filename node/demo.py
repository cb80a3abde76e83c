"""Demo data: a few members with funds and a live-looking book, so a newcomer sees a market at once.

Seeding is idempotent (skipped when the demo members exist). The optional demo trader keeps placing
small orders around the mid so the page moves; it trades with demo money only.
"""

from __future__ import annotations

import asyncio
import logging
import random

from node.errors import ExchangeError
from node.exchange import Exchange, OrderInput
from node.money import format_units

log = logging.getLogger(__name__)

DEMO_MEMBERS = ("alice@demo.exchange", "bob@demo.exchange", "carol@demo.exchange")
MIDS = {"btcusd": "30000", "ltcbtc": "0.0025", "dogebtc": "0.0000025"}
FUNDS = {"btc": "100", "ltc": "20000", "doge": "50000000", "usd": "5000000"}


def _mid_ticks(ex: Exchange, market: str) -> int:
    m = ex.config.markets[market]
    mid = MIDS.get(market)
    if mid is None:
        return 100 * 10**m.price_precision
    whole, _, frac = mid.partition(".")
    return int(whole) * 10**m.price_precision + int((frac or "0").ljust(m.price_precision, "0")[: m.price_precision])


def _order(ex: Exchange, market: str, side: str, price: int, lots: int) -> OrderInput:
    m = ex.config.markets[market]
    return OrderInput(market, side, format_units(lots, m.volume_precision), format_units(price, m.price_precision))


async def seed(ex: Exchange) -> list[int]:
    """Create the demo members (once), fund them, and rest a ladder of orders on each market."""
    members: list[int] = []
    for email in DEMO_MEMBERS:
        try:
            members.append(int((await ex.member_by_email(email))["id"]))
        except ExchangeError:
            mid = await ex.create_member(email, name=email.split("@")[0].title())
            for code in ex.config.currencies:
                if code in FUNDS:
                    await ex.deposit(mid, code, FUNDS[code], txid=f"demo:{email}:{code}", channel="demo")
            members.append(mid)
    rng = random.Random(7)
    for market, actor in ex.markets.items():
        if len(actor.engine):
            continue
        m = ex.config.markets[market]
        mid = _mid_ticks(ex, market)
        step = max(1, mid // 500)
        for i in range(1, 13):
            lots = max(m.min_volume, rng.randint(1, 40) * max(m.min_volume, 10 ** m.volume_precision // 10))
            await ex.submit_order(members[0], _order(ex, market, "sell", mid + i * step, lots))
            await ex.submit_order(members[1], _order(ex, market, "buy", mid - i * step, lots))
        # a few trades, so the market has a history and a last price
        for _ in range(5):
            await ex.submit_order(members[2], _order(ex, market, "buy", mid + 2 * step, m.min_volume * 3))
    await asyncio.sleep(0.2)
    return members


async def trade_forever(ex: Exchange, members: list[int], every: float = 2.0) -> None:
    """Place a small random order now and then, so the demo book and trades move."""
    rng = random.Random()
    while True:
        await asyncio.sleep(every)
        for market, actor in ex.markets.items():
            m = ex.config.markets[market]
            bid, ask = actor.engine.best_bid(), actor.engine.best_ask()
            mid = (bid + ask) // 2 if bid and ask else _mid_ticks(ex, market)
            step = max(1, mid // 1000)
            side = rng.choice(("buy", "sell"))
            price = mid + rng.randint(-5, 5) * step
            lots = m.min_volume * rng.randint(1, 20)
            who = members[0] if side == "sell" else members[1]
            try:
                await ex.submit_order(who, _order(ex, market, side, max(1, price), lots))
            except ExchangeError as e:
                log.debug("demo order refused: %s", e.message)
