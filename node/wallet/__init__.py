"""Payment channels: how money enters and leaves the exchange (see `node.wallet.channel`).

`FAMILIES` maps the `channel = "…"` of a currency's `[currencies.<code>.wallet]` table to its
adapter class. A new family is one `Channel` subclass added here.
"""

from __future__ import annotations

from node.wallet.bank import BankChannel
from node.wallet.bitcoind import BitcoindChannel
from node.wallet.channel import Channel

FAMILIES: dict[str, type[Channel]] = {
    BitcoindChannel.family: BitcoindChannel,
    BankChannel.family: BankChannel,
}

__all__ = ["FAMILIES", "BankChannel", "BitcoindChannel", "Channel"]
