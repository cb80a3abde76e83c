"""The wallet actor: one per currency with a wallet, driving that currency's payment channel.

Its mailbox receives ticks (every `poll_interval_ms`) and wake-ups (a withdrawal was requested or
approved); each batch runs one *cycle*:

1. **Deposits** (channels that scan): discovery of new transfers from the stored cursor
   (node/actors/wallet_deposits.py).
2. **Re-check** of every deposit not yet credited or still inside the re-org watch, by txid: credits,
   double-spends, re-orgs (the same module).
3. **Withdrawals**: follow payments in flight, audit new ones, pay accepted ones
   (node/actors/wallet_withdrawals.py).
4. **Status**: height, hot wallet balance and health go to `wallet_cursors` for the admin.

Unlike market actors this one does not commit once per batch: paying is an external side effect,
so a payment's signed bytes are committed *before* they are broadcast, and nothing but those
bytes is ever broadcast for that withdrawal while they may still go out. A daemon that cannot be reached is not a crash: the cycle stops, the status says so, and
the next cycle comes after an exponential back-off (at most a minute).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from node.actors.runtime import Actor
from node.actors.wallet_deposits import Deposits
from node.actors.wallet_withdrawals import Withdrawals
from node.clock import now_ms
from node.config import Currency, WalletConf
from node.errors import ExchangeError
from node.store import Store
from node.wallet.channel import Channel, ChannelError, ChannelUnavailable, SettingsError

log = logging.getLogger(__name__)

TICK = "tick"
WAKE = "wake"
POLL = "poll"  # like a tick, but ignores the back-off: tests and admins ask for it to see a cycle done
MAX_BACKOFF = 60.0


class WalletActor(Deposits, Withdrawals, Actor[str]):
    def __init__(self, currency: Currency, channel: Channel, store: Store, fee_member: int, node: str, **kw: Any) -> None:
        super().__init__(**kw)
        assert currency.wallet is not None
        self.currency = currency
        self.conf: WalletConf = currency.wallet
        self.channel = channel
        self.store = store
        self.fee_member = fee_member
        self.node = node
        self.name = f"wallet:{currency.code}"
        self._ticker: asyncio.Task[None] | None = None
        self._failures = 0
        self._retry_at = 0.0
        self.health: dict[str, Any] = {"status": "starting", "since": now_ms(), "last_error": None, "height": None,
                                       "balance": None, "last_cycle": None, "retry_in": 0.0}

    # -- life cycle -------------------------------------------------------------------------------
    async def recover(self) -> None:
        await self.store.execute(
            "INSERT INTO wallet_cursors (currency, status, node, updated_at) VALUES (?, 'starting', ?, ?) "
            "ON CONFLICT (currency) DO UPDATE SET node = excluded.node, status = 'starting', updated_at = excluded.updated_at",
            self.currency.code, self.node, now_ms())

    async def start(self) -> None:
        await super().start()
        self.tell(POLL)
        self._ticker = asyncio.create_task(self._tick(), name=f"{self.name}:ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await super().stop()

    def fence(self, why: str = "another owner has taken over") -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        super().fence(why)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.conf.poll_interval_ms / 1000)
            if self.depth == 0:
                try:
                    self.tell(TICK)
                except ExchangeError:
                    return  # shutting down

    def wake(self) -> None:
        """Something to do now (a withdrawal was requested or approved): don't wait for the tick."""
        try:
            self.tell(WAKE)
        except ExchangeError:
            pass  # busy or stopping: the next tick will do it

    async def handle_batch(self, batch: Sequence[str]) -> list[Any]:
        await self.cycle(force=POLL in batch)
        return [dict(self.health)] * len(batch)

    # -- one cycle --------------------------------------------------------------------------------
    async def cycle(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._retry_at:
            return
        try:
            info = await self.channel.info()
            self.health["height"] = info.height
            self.health["headers"] = info.extra.get("headers")  # the chain's tip as the daemon knows it
            if self.channel.scans:
                await self._scan()
                await self._recheck()
            await self._withdrawals()
            if self.channel.automatic:
                self.health["balance"] = await self.channel.balance()
        except (ChannelUnavailable, ChannelError, SettingsError) as e:
            await self._trouble(e)
            return
        if self.health["status"] != "ok":
            log.info("%s: daemon reachable again", self.name)
        self._failures = 0
        self._retry_at = 0.0
        self.health["scanned_height"] = info.height  # deposits are seen up to here (/metrics: wallet lag)
        self.health.update(status="ok", since=self.health["since"] if self.health["status"] == "ok" else now_ms(),
                           last_error=None, last_cycle=now_ms(), retry_in=0.0)
        await self._save_status()

    async def _trouble(self, e: Exception) -> None:
        """Unreachable or refusing: no crash, a visible status, an exponential back-off."""
        self._failures += 1
        delay = min(self.conf.poll_interval_ms / 1000 * 2 ** min(self._failures, 16), MAX_BACKOFF)
        self._retry_at = time.monotonic() + delay
        status = "unreachable" if isinstance(e, ChannelUnavailable) else "error"
        if self.health["status"] != status or self._failures in (1, 10, 100):
            log.warning("%s: %s (%s); retrying in %.1f s", self.name, status, e, delay)
        self.health.update(status=status, since=now_ms() if self.health["status"] != status else self.health["since"],
                           last_error=str(e)[:500], last_cycle=now_ms(), retry_in=delay)
        try:
            await self._save_status()
        except Exception:
            log.exception("%s: could not store the wallet status", self.name)

    async def _save_status(self) -> None:
        h = self.health
        await self.store.execute(
            "UPDATE wallet_cursors SET status = ?, last_error = ?, height = ?, balance = ?, node = ?, checked_at = ?, "
            "updated_at = ? WHERE currency = ?",
            h["status"], h["last_error"], h["height"], h["balance"], self.node, h["last_cycle"], now_ms(), self.currency.code)
