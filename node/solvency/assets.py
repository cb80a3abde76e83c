"""Proof of assets: the wallets that sign for a coin's reserves, the statement each address signs,
and the ratio of assets to liabilities. The service stores the signatures per snapshot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from node.solvency.trees import iso_ms

if TYPE_CHECKING:
    from node.exchange import Exchange


def ratio_str(assets: int, liabilities: int, places: int = 8) -> str | None:
    """assets / liabilities, rounded **down** to `places` decimals with integer arithmetic only,
    so 0.999999999 never shows as 1; None when nothing is owed (the ratio is unbounded)."""
    if liabilities <= 0:
        return None
    scale = 10**places
    q = assets * scale // liabilities
    return f"{q // scale}.{q % scale:0{places}d}"


class ReserveWallet(Protocol):
    """What proving a coin's reserves needs from a wallet: its funded addresses, and a signature by
    each. Any bitcoind-compatible daemon does it (``listunspent`` / ``signmessage``)."""

    async def holdings(self, min_confirmations: int) -> list[tuple[str, int]]:
        """(address, amount in smallest units) for every address holding confirmed funds."""
        ...

    async def sign_message(self, address: str, message: str) -> str:
        """The address's signature of `message` (base64, as ``signmessage`` gives it)."""
        ...

    async def close(self) -> None: ...


class ChannelReserves:
    """A :class:`ReserveWallet` over a bitcoind-family wallet channel (``node/wallet/bitcoind``):
    its JSON-RPC client, its exact amount conversion, its credentials from the environment."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    async def holdings(self, min_confirmations: int) -> list[tuple[str, int]]:
        utxos = await self.channel.call("listunspent", min_confirmations, 999_999_999)
        per: dict[str, int] = {}
        for u in utxos:
            if u.get("spendable") is False:  # watch-only: the exchange cannot sign for it, so not proven
                continue
            address = u.get("address")
            if not isinstance(address, str) or not address:
                continue
            per[address] = per.get(address, 0) + self.channel.units(u["amount"])
        return sorted((a, v) for a, v in per.items() if v > 0)

    async def sign_message(self, address: str, message: str) -> str:
        return str(await self.channel.call("signmessage", address, message))

    async def close(self) -> None:
        await self.channel.close()


def reserves_from_config(ex: Exchange) -> dict[str, ReserveWallet]:
    """A reserve wallet for every coin whose wallet channel can sign messages (bitcoind family)."""
    out: dict[str, ReserveWallet] = {}
    for code, cur in ex.config.currencies.items():
        w = getattr(cur, "wallet", None)
        if cur.kind != "coin" or w is None or w.channel != "bitcoind":
            continue
        from node.wallet import FAMILIES

        channel = FAMILIES[w.channel](code, cur.precision, w.options)
        out[code] = ChannelReserves(channel)
    return out


def statement(exchange: str, snapshot: str, taken_at: int, symbol: str, address: str) -> str:
    """The message each address signs: it names the snapshot, so an old signature cannot be replayed
    as proof for a later snapshot, and names the exchange, so another cannot borrow it."""
    return f"{exchange} proof of reserves: snapshot {snapshot} taken {iso_ms(taken_at)}, {symbol} address {address}"
