"""What the wallet actor's parts share (node/actors/wallet.py): its currency, channel and store, and
the test-only crash points. The deposit and withdrawal jobs are mixins of the actor, one module each."""

from __future__ import annotations

import logging
import os
import signal

from node.config import Currency, WalletConf
from node.money import format_units
from node.store import Store
from node.wallet.channel import Channel

log = logging.getLogger("node.actors.wallet")

FAULT_ENV = "EXCHANGE_WALLET_FAULT"


def fault(point: str) -> None:
    """Test-only crash point: with EXCHANGE_WALLET_FAULT=<point> the process dies here like kill -9
    (no clean-up, nothing flushed). Points: `after_build` (the payment's bytes are stored, not yet
    broadcast) and `after_send` (broadcast, not yet recorded). Unset in production, where this is a
    string comparison."""
    if os.environ.get(FAULT_ENV) == point:
        log.warning("fault injection %s: killing the process", point)
        os.kill(os.getpid(), signal.SIGKILL)


class WalletParts:
    """The state every job of a wallet actor works with (set by WalletActor.__init__)."""

    currency: Currency
    conf: WalletConf
    channel: Channel
    store: Store
    fee_member: int
    name: str

    def _fmt(self, units: int) -> str:
        return f"{format_units(units, self.currency.precision)} {self.currency.symbol}"
