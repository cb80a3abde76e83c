"""Proof of assets: the wallets that sign for a coin's reserves, the statement each address signs,
the fiat figures an admin declares, stored per snapshot (`AssetProofs`), and the ratio of assets to
liabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from node.clock import now_ms
from node.errors import InvalidParameter
from node.solvency.trees import iso_ms

if TYPE_CHECKING:
    from node.exchange import Exchange

log = logging.getLogger(__name__)


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


class AssetProofs:
    """The assets side of a snapshot, stored beside its liabilities: every coin's funded addresses
    sign the snapshot's statement (`collect`), and each fiat currency carries the latest figure an
    admin declared (`declare_fiat`, `carry_fiat`). The wallets are made from the configuration on
    first use unless given."""

    def __init__(self, ex: Exchange, reserves: Mapping[str, ReserveWallet] | None = None) -> None:
        self.ex = ex
        self._reserves = dict(reserves) if reserves is not None else None

    @property
    def reserves(self) -> dict[str, ReserveWallet]:
        if self._reserves is None:
            self._reserves = reserves_from_config(self.ex)
        return self._reserves

    async def close(self) -> None:
        for wallet in (self._reserves or {}).values():
            await wallet.close()

    async def collect(self, snap: Mapping[str, Any]) -> dict[str, str]:
        """Prove every coin's reserves for a published snapshot (again, replacing what was there):
        each funded address signs the snapshot's statement. A wallet that fails leaves its coin
        'failed' with the reason; the others are still proven. Returns currency -> status."""
        snapshot_id = int(snap["id"])
        out: dict[str, str] = {}
        for code, cur in self.ex.config.currencies.items():
            if cur.kind != "coin":
                continue
            wallet = self.reserves.get(code)
            if wallet is None:
                await self._set_assets(snapshot_id, code, "no_wallet", "no wallet that can sign messages is configured", [])
                out[code] = "no_wallet"
                continue
            try:
                rows = []
                for address, units in await wallet.holdings(self.ex.config.solvency.asset_confirmations):
                    msg = statement(self.ex.config.name, snap["name"], int(snap["taken_at"]), cur.symbol, address)
                    rows.append(("address", address, units, msg, await wallet.sign_message(address, msg), ""))
            except Exception as e:  # a wallet down must not lose the other coins' proofs
                log.warning("proof of assets for %s failed: %s", code, e)
                await self._set_assets(snapshot_id, code, "failed", str(e)[:500], [])
                out[code] = "failed"
                continue
            await self._set_assets(snapshot_id, code, "proven", f"{len(rows)} address(es)", rows)
            out[code] = "proven"
        return out

    async def _set_assets(self, sid: int, code: str, state: str, detail: str,
                          rows: list[tuple[str, str, int, str, str, str]]) -> None:
        ts = now_ms()
        async with self.ex.store.transaction() as tx:
            await tx.execute("DELETE FROM solvency_assets WHERE snapshot_id = ? AND currency = ?", sid, code)
            await tx.execute("DELETE FROM solvency_asset_status WHERE snapshot_id = ? AND currency = ?", sid, code)
            await tx.executemany(
                "INSERT INTO solvency_assets (snapshot_id, currency, kind, address, amount, message, signature, evidence, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(sid, code, kind, addr, str(units), msg, sig, ev, ts) for kind, addr, units, msg, sig, ev in rows])
            await tx.execute(
                "INSERT INTO solvency_asset_status (snapshot_id, currency, state, detail, updated_at) VALUES (?, ?, ?, ?, ?)",
                sid, code, state, detail, ts)

    async def declare_fiat(self, currency: str, amount: str, evidence: str, declared_by: str = "admin") -> int:
        """An admin's figure for a fiat currency's reserves, with the evidence (bank, statement, date).

        It applies to the latest published snapshot at once and is carried into every later one
        until declared again. Returns the declaration's id."""
        cur = self.ex.config.currencies.get(currency)
        if cur is None:
            raise InvalidParameter(f"currency {currency!r} does not exist", "currency")
        if cur.kind != "fiat":
            raise InvalidParameter(f"{currency} is a coin: its reserves are proven by signed addresses", "currency")
        from node.money import parse_units

        units = parse_units(amount, cur.precision, "amount", allow_zero=True)
        evidence = evidence.strip()
        if not evidence or len(evidence) > 2000:
            raise InvalidParameter("evidence must be 1 to 2000 characters (what backs the figure)", "evidence")
        async with self.ex.store.transaction() as tx:
            did = int(await tx.fetchval(
                "INSERT INTO solvency_fiat (currency, amount, evidence, declared_by, declared_at) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id", currency, str(units), evidence, declared_by[:100], now_ms()))
        latest = await self.ex.store.fetchval("SELECT MAX(id) FROM solvency_snapshots WHERE state = 'ready'")
        if latest is not None:
            await self.carry_fiat(int(latest))
        return did

    async def carry_fiat(self, sid: int) -> dict[str, str]:
        """Copy the latest fiat declarations into a snapshot's assets ('missing' where there is none)."""
        out: dict[str, str] = {}
        for code, cur in self.ex.config.currencies.items():
            if cur.kind != "fiat":
                continue
            row = await self.ex.store.fetchrow(
                "SELECT amount, evidence, declared_by, declared_at FROM solvency_fiat WHERE currency = ? "
                "ORDER BY id DESC LIMIT 1", code)
            if row is None:
                await self._set_assets(sid, code, "missing", "no reserves declared by an admin yet", [])
                out[code] = "missing"
                continue
            detail = f"declared by {row['declared_by']} at {iso_ms(int(row['declared_at']))}"
            await self._set_assets(sid, code, "declared", detail,
                                   [("fiat", "", int(row["amount"]), "", "", row["evidence"])])
            out[code] = "declared"
        return out
