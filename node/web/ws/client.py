"""One websocket connection as the hub sees it, and the settings of the endpoint."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from node.apikeys import Token
from node.i18n import Translator
from node.web.signature import generate_challenge
from node.web.ws.frames import CLOSE_SLOW

if TYPE_CHECKING:
    from node.web.ws.core import HubCore


Key = tuple[Any, ...]
"""A subscription: ("ticker"|"trades"|"depth", market), ("kline", market, period), ("orderbook",),
or ("order"|"trade"|"account"|"notice", member_id)."""

Entries = list[tuple[bytes, dict["Client", None], str | None, int]]
"""Frames of one drain: (bytes, subscribers, depth market or None, depth sequence)."""


@dataclass
class WsConfig:
    max_frame: int = 4096
    """Largest frame a client may send (commands are small)."""
    max_pending: int = 1 << 20
    """Bytes waiting in user space for one client before it is dropped as too slow."""
    close_grace: float = 5.0
    ping_interval: float = 20.0
    idle_timeout: float = 60.0
    max_clients: int = 20_000
    max_per_ip: int = 64
    """Open connections per client address (`[http] ws_max_per_ip`); more are answered 503."""
    max_subscriptions: int = 200
    max_errors: int = 50
    max_auth_failures: int = 5
    tick: float = 1.0
    """How often tickers (24 h window) and k-lines (period boundaries) are checked for changes."""
    sndbuf: int | None = None
    """SO_SNDBUF of each connection; None leaves it to the kernel's autotuning (up to megabytes),
    a small value makes a stalled client show up in `max_pending` sooner and caps kernel memory."""


class Client:
    __slots__ = ("hub", "ws", "transport", "remote", "challenge", "token", "member_id", "subs", "depth_seq", "out",
                 "closing", "close_timer", "done", "last_seen", "unanswered", "errors", "auth_failures", "frames",
                 "session_member", "session_id", "translate", "notice_after")

    def __init__(self, hub: HubCore, ws: web.WebSocketResponse, transport: asyncio.Transport, remote: str | None) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.remote = remote
        self.challenge = generate_challenge()
        self.token: Token | None = None
        self.member_id: int | None = None
        self.subs: set[Key] = set()
        self.depth_seq: dict[str, int] = {}  # market -> sequence of the snapshot it got; older diffs skipped
        self.out: list[bytes] = []
        self.closing = False  # no more frames for it
        self.close_timer: asyncio.TimerHandle | None = None  # set once the hub has sent a close frame
        self.done = asyncio.Event()  # its handler has finished
        self.last_seen = time.monotonic()
        self.unanswered = 0  # pings sent since the client last sent anything
        self.errors = 0
        self.auth_failures = 0
        self.frames = 0
        self.session_member: int | None = None  # the page session's member, if its Origin is this site
        self.session_id: str | None = None  # that session's row, checked with every heartbeat
        self.translate: Translator | None = None  # the page's language, for notice texts
        self.notice_after = 0  # notices up to this id are old news to it

    def send(self, data: bytes) -> None:
        """Queue bytes on the socket, or drop the client if too much is already waiting."""
        if self.closing:
            return
        t = self.transport
        if t.is_closing():
            self.hub.forget(self)
            return
        if t.get_write_buffer_size() > self.hub.cfg.max_pending:
            self.hub.stats["dropped_slow"] += 1
            self.hub.close(self, CLOSE_SLOW, f"slow consumer: more than {self.hub.cfg.max_pending} bytes waiting")
            return
        t.write(data)


class CommandError(Exception):
    """A bad command: answered with an error frame, the connection stays open."""

