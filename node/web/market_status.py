"""Which markets are halted, and why: for the pages (banner, home list, pair menu) and the websocket.

A market's halted flag lives in its actor and in `markets_state`; the admin's reason lives only in
the audit log (`admin.market.halt`, written after the actor has halted the market). So a trader
sees the reason too, this keeps both per market: flags from the store and from the markets' status
events (local, or bridged from the node that runs the market), reasons from the newest halt entry.
Listeners (the websocket hub) hear of every change; a reason that is not written yet when the event
arrives is looked up again a few times, and a second change is announced once it is found.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node.clock import now_ms
from node.exchange import Exchange

log = logging.getLogger(__name__)

HALT_ACTION = "admin.market.halt"
REFRESH_S = 10.0
"""How often the flags are read from the store as well (a status event lost in a cluster outage)."""
REASON_TRIES = 6
REASON_WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class Status:
    market: str
    halted: bool = False
    reason: str = ""
    since: int = 0

    def json(self) -> dict[str, Any]:
        return {"market": self.market, "halted": self.halted, "reason": self.reason, "since": self.since}


Listener = Callable[[Status], None]


class MarketStatus:
    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.states: dict[str, Status] = {mid: Status(mid) for mid in ex.config.markets}
        self.listeners: list[Listener] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def get(self, market: str) -> Status:
        return self.states.get(market) or Status(market)

    def all(self) -> dict[str, Status]:
        return dict(self.states)

    async def start(self) -> None:
        await self.refresh()
        self._unsubscribe = self.ex.bus.subscribe(self._on_event)
        self._loop_task = asyncio.create_task(self._refresh_loop(), name="market-status")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for t in [*self._tasks, *([self._loop_task] if self._loop_task else [])]:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def refresh(self) -> None:
        """Flags from the store (the truth every node shares), reasons for the halted ones."""
        rows = await self.ex.store.fetch("SELECT market, halted FROM markets_state")
        stored = {r["market"]: bool(r["halted"]) for r in rows}
        for mid in self.states:
            ref = self.ex.markets.get(mid)
            halted = bool(ref.halted) if ref is not None else stored.get(mid, False)
            await self._set(mid, halted, lookup=halted and not self.states[mid].reason)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.refresh()
            except Exception as e:  # the store is away for a moment: the events still come
                log.debug("market status refresh failed: %r", e)

    def _on_event(self, topic: str, event: dict[str, Any]) -> None:
        """Bus callback: only schedules (publishers never wait for us)."""
        if not topic.endswith(".status") or event.get("market") not in self.states:
            return
        task = asyncio.get_running_loop().create_task(self._changed(str(event["market"]), bool(event.get("halted"))))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _changed(self, mid: str, halted: bool) -> None:
        await self._set(mid, halted, lookup=False)
        if halted:
            since = self.states[mid].since
            for _ in range(REASON_TRIES):  # the audit entry is written just after the actor halted
                await asyncio.sleep(REASON_WAIT_S)
                if not self.states[mid].halted:
                    return
                reason, at = await self._reason(mid)
                if at >= since - 60_000 and (reason or at):
                    await self._set(mid, True, reason=reason, since=at)
                    return

    async def _set(self, mid: str, halted: bool, *, lookup: bool = False, reason: str | None = None,
                   since: int | None = None) -> None:
        old = self.states[mid]
        if lookup:
            reason, since = await self._reason(mid)
        if not halted:
            new = Status(mid)
        elif old.halted and reason is None:
            new = old
        else:
            new = Status(mid, True, reason if reason is not None else "",
                         since if since is not None else (old.since if old.halted else now_ms()))
        if new != old:
            self.states[mid] = new
            for fn in list(self.listeners):
                try:
                    fn(new)
                except Exception:
                    log.exception("market status listener failed")

    async def _reason(self, mid: str) -> tuple[str, int]:
        row = await self.ex.store.fetchrow(
            "SELECT detail, created_at FROM audit_log WHERE action = ? AND target = ? AND ok = 1 ORDER BY seq DESC LIMIT 1",
            HALT_ACTION, f"market:{mid}")
        if row is None:
            return "", 0
        try:
            detail = json.loads(row["detail"] or "{}")
        except ValueError:
            detail = {}
        return str(detail.get("detail", ""))[:300], int(row["created_at"])


MARKET_STATUS = web.AppKey("market_status", MarketStatus)

