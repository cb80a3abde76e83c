"""What clients send: auth, subscribe, unsubscribe, ping; and a key's rights changing under it."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from node.apikeys import Token
from node.clock import now_ms
from node.errors import SecretUnreadable
from node.marketdata import PERIODS
from node.web.signature import verify_ws_answer
from node.web.ws.client import Client, CommandError, Key
from node.web.ws.frames import (
    CLOSE_POLICY,
    frame,
    kline_row,
    public_trade,
    ticker_body,
)
from node.web.ws.streams import Streams

log = logging.getLogger(__name__)

MARKET_CHANNELS = ("ticker", "trades", "depth", "status")
PRIVATE_CHANNELS = ("order", "trade", "account", "orderbook", "notice")
KLINE_CHANNELS = tuple(f"kline_{p}" for p in PERIODS)
CHANNEL_SCOPES = {"order": ("history", "trade"), "trade": ("history", "trade"), "account": ("profile", "history"),
                  "notice": ("profile", "history"), "orderbook": ()}


class Commands(Streams):
    async def command(self, c: Client, text: str) -> None:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.error(c, "malformed JSON")
            return
        if not isinstance(obj, dict) or len(obj) != 1:
            self.error(c, "a frame must be a JSON object with exactly one key, the command")
            return
        ((cmd, arg),) = obj.items()
        try:
            if cmd == "auth":
                await self._auth(c, arg)
            elif cmd == "subscribe":
                await self._subscribe(c, arg)
            elif cmd == "unsubscribe":
                self._unsubscribe(c, arg)
            elif cmd == "ping":
                c.send(frame({"pong": arg}))
            else:
                raise CommandError(f"unknown command {str(cmd)[:40]!r} (auth, subscribe, unsubscribe, ping)")
        except CommandError as e:
            self.error(c, str(e))

    async def _auth(self, c: Client, arg: Any) -> None:
        if c.member_id is not None:
            raise CommandError("already authenticated")
        if arg == "session":
            # The page's own log in (its cookie came with the handshake, from a page of this site).
            if c.session_member is None:
                c.auth_failures += 1
                c.send(frame({"error": {"message": "No page session here: log in, or authenticate with an API key."}}))
                if c.auth_failures >= self.cfg.max_auth_failures:
                    self.close(c, CLOSE_POLICY, "too many failed authentications")
                return
            c.member_id = c.session_member
            c.send(frame({"success": {"message": "Authenticated."}}))
            return
        token: Token | None = None
        if isinstance(arg, dict):
            ak, answer = arg.get("access_key"), arg.get("answer")
            if isinstance(ak, str) and isinstance(answer, str) and 0 < len(ak) <= 64 and len(answer) <= 128:
                try:
                    found = await self.keys.find(ak)
                except SecretUnreadable as e:  # the operator's problem (logged by ApiKeys): say so
                    c.send(frame(e.to_dict()))
                    return
                now = now_ms()
                if (found is not None and not found.deleted and not found.disabled
                        and (found.expires_at is None or found.expires_at > now) and found.ip_allowed(c.remote)
                        and verify_ws_answer(found.secret_key, ak, c.challenge, answer)):
                    token = found
        if token is None:
            c.auth_failures += 1
            c.send(frame({"error": {"message": "Authentication failed."}}))
            if c.auth_failures >= self.cfg.max_auth_failures:
                self.close(c, CLOSE_POLICY, "too many failed authentications")
            return
        if c.closing:
            return
        c.token, c.member_id = token, token.member_id
        if not (isinstance(arg, dict) and arg.get("legacy") is False):
            # Peatio's streams for old clients: every market's book, and the member's own trades,
            # in place (their events coming here, the books mirrored) before the answer.
            self._sub(c, ("orderbook",))
            if _allowed(token, "trade"):
                self._sub(c, ("trade", token.member_id))
            for key in list(c.subs):
                await self._ready(key)
        c.send(frame({"success": {"message": "Authenticated."}}))

    def _keys(self, c: Client, arg: Any) -> tuple[str | None, list[str], list[Key]]:
        """Parse a (un)subscribe argument into subscription keys; all or nothing."""
        if not isinstance(arg, dict):
            raise CommandError('expected {"market": …, "channels": […]}')
        market = arg.get("market")
        channels = arg.get("channels")
        if isinstance(channels, str):
            channels = [channels]
        if not isinstance(channels, list) or not channels or len(channels) > 50 or not all(
                isinstance(ch, str) for ch in channels):
            raise CommandError("channels must be a list of channel names")
        if market is not None and (not isinstance(market, str) or market not in self.ex.config.markets):
            raise CommandError(f"unknown market {str(market)[:40]!r}")
        keys: list[Key] = []
        for ch in channels:
            if ch in MARKET_CHANNELS or ch in KLINE_CHANNELS:
                if market is None:
                    raise CommandError(f"channel {ch} needs a market")
                keys.append(("kline", market, int(ch[6:])) if ch.startswith("kline_") else (ch, market))
            elif ch in PRIVATE_CHANNELS:
                if c.member_id is None:
                    raise CommandError(f"channel {ch} needs authentication (send auth first)")
                if c.token is not None and not _allowed(c.token, ch):  # a page session may read all its own
                    raise CommandError(f"channel {ch} is out of the access key's scopes")
                keys.append(("orderbook",) if ch == "orderbook" else (ch, c.member_id))
            else:
                raise CommandError(f"unknown channel {ch[:40]!r} (ticker, trades, depth, status, kline_<minutes>, "
                                   "order, trade, account, notice, orderbook)")
        return market, channels, keys

    async def _subscribe(self, c: Client, arg: Any) -> None:
        market, channels, keys = self._keys(c, arg)
        if len(c.subs | set(keys)) > self.cfg.max_subscriptions:
            raise CommandError(f"too many subscriptions (at most {self.cfg.max_subscriptions})")
        c.send(frame({"subscribed": {"market": market, "channels": channels}}))
        for key in keys:
            if c.closing:
                return
            if key[0] == "depth":
                await self._depth_snapshot(c, key[1])
                continue
            if key[0] == "notice":
                after = arg.get("after") if isinstance(arg, dict) else None
                if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                    after = int(await self.ex.store.fetchval(
                        "SELECT COALESCE(MAX(id), 0) FROM notices WHERE member_id = ?", key[1]) or 0)
                c.notice_after = after  # older news is not replayed
            self._sub(c, key)
            await self._ready(key)  # its events come here from now on: what is sent next is not missed
            if c.closing:
                return
            if key not in c.subs:  # unsubscribed meanwhile
                continue
            m = self.ex.config.markets[key[1]] if key[0] in ("ticker", "trades", "kline") else None
            if key[0] == "ticker" and m is not None:
                t = self.md.ticker_now(m.id)
                if t is not None:
                    c.send(frame({"ticker": ticker_body(m, t)}))
            elif key[0] == "trades" and m is not None:
                recent = [public_trade(m, ev) for ev in self.md.recent_trades(m.id)]
                c.send(frame({"trades": {"market": m.id, "trades": recent, "snapshot": True}}))
            elif key[0] == "kline" and m is not None:
                row = self.md.current_candle(m.id, key[2])
                if row is not None:
                    c.send(frame({"kline": {"market": m.id, "period": key[2], "k": kline_row(m, row)}}))
            elif key[0] == "status" and self.status is not None:
                c.send(frame({"status": self.status.get(key[1]).json()}))
            elif key[0] == "account":
                await self._send_accounts(c)

    def _unsubscribe(self, c: Client, arg: Any) -> None:
        market, channels, keys = self._keys(c, arg)
        for key in keys:
            self._unsub(c, key)
        c.send(frame({"unsubscribed": {"market": market, "channels": channels}}))

    def on_rights_change(self, member_id: int, access_key: str | None) -> None:
        """A key deleted or disabled, or a member's API switched off (node/auth_changes.py, on any
        node): the connections it authenticated are checked again and closed if it no longer works,
        so a revocation ends private streams too, not only new requests."""
        hit = [c for c in self.clients if c.token is not None and not c.closing
               and (c.token.access_key == access_key if access_key is not None else c.member_id == member_id)]
        if hit:
            self._spawn(self._recheck(hit))

    async def _recheck(self, clients: list[Client]) -> None:
        now = now_ms()
        for c in clients:
            if c.token is None or c.closing:
                continue
            token = await self.keys.find(c.token.access_key)
            if token is None or token.deleted or token.disabled or token.expired(now):
                c.send(frame({"error": {"message": "The access key was revoked or disabled."}}))
                self.close(c, CLOSE_POLICY, "access key revoked")



def _allowed(token: Token, channel: str) -> bool:
    scopes = CHANNEL_SCOPES.get(channel, ())
    return not scopes or any(token.allows(s) for s in scopes)

