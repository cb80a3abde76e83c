"""Payment channels: how money enters and leaves the exchange (see `node.wallet.channel`).

`FAMILIES` maps the `channel = "…"` of a currency's `[currencies.<code>.wallet]` table to its
adapter class. A new family is one `Channel` subclass added here.
"""

from __future__ import annotations

from node.config import Config, ConfigError
from node.wallet.bank import BankChannel
from node.wallet.bitcoind import BitcoindChannel
from node.wallet.channel import Channel, SettingsError

FAMILIES: dict[str, type[Channel]] = {
    BitcoindChannel.family: BitcoindChannel,
    BankChannel.family: BankChannel,
}



def check_wallets(config: Config) -> None:
    """Each wallet table's channel family: known, made for the currency's kind and precision, and
    given the settings it needs (its own keys, which the configuration parser keeps for it without
    knowing them). A node checks this before it opens anything (node/bootstrap.py), so a wrong
    table stops start-up with the field's name, as every other table does."""
    for code, cur in config.currencies.items():
        w = cur.wallet
        if w is None:
            continue
        path = f"currencies.{code}.wallet"
        cls = FAMILIES.get(w.channel)
        if cls is None:
            raise ConfigError(f"{path}.channel: unknown channel {w.channel!r} (known: {', '.join(sorted(FAMILIES))})")
        if cur.kind not in cls.kinds:
            raise ConfigError(f"{path}.channel: channel {w.channel!r} is for {' or '.join(cls.kinds)} currencies, "
                              f"not {cur.kind}")
        if cls.max_precision is not None and cur.precision > cls.max_precision:
            raise ConfigError(f"{path}.channel: channel {w.channel!r} moves at most {cls.max_precision} decimal "
                              f"places, but the currency's precision is {cur.precision}")
        try:
            cls.check_settings(w.options)
        except SettingsError as e:
            raise ConfigError(f"{path}.{e}") from None


__all__ = ["FAMILIES", "BankChannel", "BitcoindChannel", "Channel", "check_wallets"]
