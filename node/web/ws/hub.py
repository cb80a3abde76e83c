"""The websocket hub: every stream put together, with its life cycle, heartbeats and pushes.

Protocol (docs/websocket.md has the full description): every frame is a JSON object with one key.
On open the server sends `{"challenge": …}`; `{"auth": {"access_key", "answer"}}` authenticates as
in Peatio and, as Peatio did, starts the `orderbook` stream of every market and the member's own
`trade` frames. `subscribe` / `unsubscribe` add public channels per market (ticker, trades, depth
with a snapshot and sequenced diffs, k-lines) and private ones after auth (order, trade, account,
notice). The site's own pages authenticate with `{"auth": "session"}`: their log-in cookie, honoured
only when the handshake's Origin is this site (see `same_origin`).

How it stays fast and fair:

* The hub never sits in the matching path: it listens to the market data service, whose bus callback
  only enqueues. Each drain turns a batch of events into frames, **encodes each frame once** (JSON and
  the websocket header: server frames are unmasked, so the bytes are the same for every client) and
  writes, per client, the frames of that drain in one `transport.write` of shared bytes.
* Back-pressure is per client and bounded: what the kernel does not take stays in the transport's
  buffer; a client with more than `max_pending` bytes waiting is dropped with close code 4001 (the
  close frame is queued behind its data, and the connection is cut after `close_grace` seconds if it
  does not read that far). Nothing ever waits for a client, so a slow one cannot slow the others.
* Heartbeats: a ping every `ping_interval`; a client silent (no frame, no pong) for `idle_timeout`
  is closed with 4002. Frames above `max_frame` bytes are refused (1009) with a reason, and so is a
  client sending too many bad frames (1008). An unmasked client frame closes the connection with
  1002 (RFC 6455 §5.1; node/web/edge.py checks, aiohttp does not).
* Limits at the door: at most `max_per_ip` connections per client address (503 beyond); the
  handshake is an HTTP request, so the edge's header time limit and connection caps apply to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web

from node.apikeys import ApiKeys
from node.clock import now_ms
from node.exchange import Exchange
from node.i18n import translator
from node.marketdata import MarketData
from node.notices import Notices
from node.notices import text as notice_text
from node.web.market_status import MarketStatus, Status
from node.web.ws.client import Entries, WsConfig
from node.web.ws.commands import Commands
from node.web.ws.frames import CLOSE_GOING_AWAY, CLOSE_IDLE, CLOSE_POLICY, PING, frame

log = logging.getLogger(__name__)

NOTICE_MARGIN = 200  # the newest notice ids read at each look: ids of other nodes may commit out of order


class Hub(Commands):
    def __init__(self, ex: Exchange, md: MarketData, keys: ApiKeys, cfg: WsConfig | None = None) -> None:
        super().__init__(ex, md, keys, cfg)
        md.listeners.append(self.on_events)

    def follow_status(self, status: MarketStatus) -> None:
        """Halts and resumptions (with the admin's reason) go to the market's `status` subscribers."""
        self.status = status
        status.listeners.append(self._on_status)

    def follow_notices(self, notices: Notices) -> None:
        """After each look of the notices service, the new notices (credited deposits, withdrawal
        states, KYC decisions, written by whichever node saw them first) go to their members'
        `notice` subscribers here."""
        self.notices = notices
        notices.listeners.append(self._on_notices)

    def _on_notices(self) -> None:
        if any(k[0] == "notice" for k in self.subs) and (self._notice_task is None or self._notice_task.done()):
            self._notice_task = self._spawn(self._push_notices())

    async def _push_notices(self) -> None:
        """The newest notices of every member; each goes once to the member's subscribers that had not
        seen it yet (`notice_after`: what the page knew when it subscribed)."""
        rows = await self.ex.store.fetch(
            "SELECT * FROM notices WHERE id > (SELECT COALESCE(MAX(id), 0) FROM notices) - ? ORDER BY id", NOTICE_MARGIN)
        seen = self._notice_seen
        for n in rows:
            nid = int(n["id"])
            if nid in seen:
                continue
            seen.add(nid)
            subs = self.subs.get(("notice", int(n["member_id"])))
            for c in list(subs or ()):
                if nid > c.notice_after:
                    _ = c.translate or translator("en")
                    c.send(frame({"notice": {"id": nid, "kind": n["kind"], "state": str(n["state"]).split(":")[0],
                                             "text": notice_text(dict(n), _)}}))
        if rows:
            floor = int(rows[0]["id"])
            self._notice_seen = {i for i in seen if i >= floor}

    def _on_status(self, st: Status) -> None:
        subs = self.subs.get(("status", st.market))
        if subs:
            data = frame({"status": st.json()})
            for c in list(subs):
                c.send(data)

    # -- life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        for mid, actor in self.ex.markets.items():
            self.book_seq[mid] = actor.book_seq
            self.book_ids[mid] = actor.book_id
        self._task = asyncio.create_task(self._ticker_loop(), name="ws-tick")

    async def shutdown(self, app: web.Application | None = None) -> None:
        """Close every client with 1001 (aiohttp waits for open handlers at shutdown otherwise)."""
        clients = list(self.clients)
        for c in clients:
            self.close(c, CLOSE_GOING_AWAY, "server shutting down")
        waits = [asyncio.ensure_future(c.done.wait()) for c in clients]
        if waits:
            await asyncio.wait(waits, timeout=self.cfg.close_grace + 1)
            for w in waits:
                w.cancel()

    async def stop(self) -> None:
        task: asyncio.Task[None] | None
        for task in list(self._watch_tasks):  # mirrors being asked for, bindings being changed
            task.cancel()
        for task in (self._task, self._accounts_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(ValueError):
            self.md.listeners.remove(self.on_events)

    # -- periodic: tickers, k-line boundaries, heartbeats ------------------------------------------
    async def _ticker_loop(self) -> None:
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(self.cfg.tick)
            try:
                entries: Entries = []
                for key in list(self.subs):
                    if key[0] == "ticker":
                        self._ticker(key[1], entries)
                    elif key[0] == "kline":
                        self._kline(key[1], key[2], entries)
                if entries:
                    self._fanout(entries)
                now = time.monotonic()
                if now - last_ping >= self.cfg.ping_interval:
                    last_ping = now
                    self._heartbeat(now)
                    if self._sessions_task is None or self._sessions_task.done():
                        self._sessions_task = self._spawn(self._check_sessions())
            except Exception:
                log.exception("websocket periodic work failed")

    async def _check_sessions(self) -> None:
        """A page session that ended (log out, a password change that logs out everywhere, expiry)
        ends the private streams it opened: one query per `ping_interval` for all such clients."""
        clients = [c for c in self.clients if c.session_id is not None and c.member_id is not None and not c.closing]
        ids = sorted({c.session_id for c in clients if c.session_id is not None})
        live: set[str] = set()
        try:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                rows = await self.ex.store.fetch(
                    f"SELECT id FROM web_sessions WHERE expires_at > ? AND id IN ({', '.join('?' * len(chunk))})",
                    now_ms(), *chunk)
                live.update(str(r["id"]) for r in rows)
        except Exception as e:  # the store is away for a moment: next round
            log.warning("could not check the page sessions of websocket clients: %r", e)
            return
        for c in clients:
            if c.session_id not in live and not c.closing:
                c.send(frame({"error": {"message": "The page session has ended: log in again."}}))
                self.close(c, CLOSE_POLICY, "session ended")

    def _heartbeat(self, now: float) -> None:
        """Ping everyone; close those that were pinged and stayed silent for `idle_timeout`."""
        for c in list(self.clients):
            if c.unanswered and now - c.last_seen > self.cfg.idle_timeout:
                self.stats["idle"] += 1
                self.close(c, CLOSE_IDLE, f"idle timeout: nothing received for {self.cfg.idle_timeout:g} s")
            else:
                c.unanswered += 1
                c.send(PING)

