"""The bitcoind family: any daemon speaking Bitcoin Core's wallet JSON-RPC (Bitcoin, Litecoin,
Dogecoin, Bitcoin SV …). One class, one configuration block per coin.

Deposits are found by polling `listsinceblock` from a stored cursor with `target_confirmations`
set deep enough that every transfer is reported again until it is past the re-org watch window: no
walletnotify plumbing to lose, nothing missed while the exchange was down. Each deposit is then
followed by txid (`gettransaction`) until it is past the re-org watch: `listsinceblock` leaves out
receives that a double-spend conflicted, so only asking about each one shows that.

A withdrawal is built and signed first (`createrawtransaction`, `fundrawtransaction`,
`signrawtransactionwithwallet` or, on older daemons, `signrawtransaction`); the exchange stores the
bytes and their txid, and only then are they broadcast (`sendrawtransaction`). Broadcasting the same
bytes again is harmless, so a lost answer is answered by sending them again, never by paying anew.

Credentials never live in cluster.toml: the settings name environment variables that hold them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

from node.wallet.channel import (
    AddressCheck,
    Built,
    Channel,
    ChannelError,
    ChannelInfo,
    InsufficientFunds,
    PaymentRejected,
    Scan,
    SentTx,
    SettingsError,
    Transfer,
    TxState,
    decimal_from_units,
    units_from_decimal,
)
from node.wallet.jsonrpc import JsonRpc

log = logging.getLogger(__name__)

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
RPC_INVALID_ADDRESS_OR_KEY = -5  # also "Block not found", "Invalid or non-wallet transaction id"
RPC_METHOD_NOT_FOUND = -32601
RPC_WALLET_ERROR = -4  # fundrawtransaction: "Insufficient funds"
RPC_WALLET_INSUFFICIENT_FUNDS = -6
RPC_VERIFY_ERROR = -25  # sendrawtransaction: "Missing inputs" (an input is spent: the payment is dead)
RPC_VERIFY_REJECTED = -26  # refused by policy or a conflict in the mempool; also "txn-already-known"
RPC_VERIFY_ALREADY_IN_CHAIN = -27  # "already in the mempool" / "already in block chain": it is out
PAGE = 100
COINBASE_CATEGORIES = ("generate", "immature", "orphan")


class BitcoindChannel(Channel):
    family = "bitcoind"
    kinds = ("coin",)
    max_precision = 8  # amounts travel as decimals with 8 places (satoshis)
    settings: ClassVar[dict[str, tuple[bool, str]]] = {
        "rpc_url": (True, "the daemon's JSON-RPC URL, e.g. http://127.0.0.1:8332/ (no credentials in it)"),
        "rpc_user_env": (False, "name of the environment variable holding the RPC user"),
        "rpc_password_env": (False, "name of the environment variable holding the RPC password"),
        "rpc_timeout_ms": (False, "how long one RPC call may take (default 15000)"),
    }

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> None:
        super().check_settings(settings)
        url = settings["rpc_url"]
        if not isinstance(url, str):
            raise SettingsError("rpc_url: expected a string")
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SettingsError(f"rpc_url: must be an http(s) URL with a host, got {url!r}")
        if u.username or u.password:
            raise SettingsError("rpc_url: must not contain credentials; name environment variables in "
                                "rpc_user_env / rpc_password_env instead")
        for key in ("rpc_user_env", "rpc_password_env"):
            v = settings.get(key)
            if v is not None and (not isinstance(v, str) or not ENV_NAME.fullmatch(v)):
                raise SettingsError(f"{key}: must be an environment variable name like BTC_RPC_PASSWORD")
        t = settings.get("rpc_timeout_ms")
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or not 100 <= t <= 600_000):
            raise SettingsError("rpc_timeout_ms: must be an integer between 100 and 600000")

    def __init__(self, currency: str, precision: int, settings: Mapping[str, Any]) -> None:
        super().__init__(currency, precision, settings)
        self.rpc: JsonRpc | None = None

    def _env(self, key: str) -> str:
        name = self.options.get(key)
        if not name:
            return ""
        value = os.environ.get(name)
        if value is None:
            raise SettingsError(f"{key}: environment variable {name} is not set")
        return value

    async def open(self) -> None:
        if self.rpc is None:
            self.rpc = JsonRpc(self.options["rpc_url"], self._env("rpc_user_env"), self._env("rpc_password_env"),
                               timeout=int(self.options.get("rpc_timeout_ms", 15_000)) / 1000)

    async def close(self) -> None:
        if self.rpc is not None:
            await self.rpc.close()
            self.rpc = None

    async def call(self, method: str, *params: Any) -> Any:
        if self.rpc is None:
            await self.open()
        assert self.rpc is not None
        return await self.rpc.call(method, *params)

    def units(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)
        return units_from_decimal(value, self.precision)

    # -- the interface ----------------------------------------------------------------------------
    async def info(self) -> ChannelInfo:
        bc = await self.call("getblockchaininfo")
        return ChannelInfo(height=int(bc.get("blocks", 0)), extra={
            "chain": bc.get("chain"), "best": bc.get("bestblockhash"), "headers": int(bc.get("headers", 0))})

    async def new_address(self, member_id: int) -> str:
        return str(await self.call("getnewaddress"))

    async def validate_address(self, address: str) -> AddressCheck:
        r = await self.call("validateaddress", address)
        valid = bool(r.get("isvalid"))
        return AddressCheck(valid=valid, mine=valid and bool(r.get("ismine") or r.get("iswatchonly")))

    async def _main_chain_cursor(self, cursor: str) -> str | None:
        """The cursor itself if it is on the active chain, else its last ancestor that is (a re-org
        orphaned it), else None (the daemon does not know it at all: rescan everything)."""
        block: str | None = cursor
        while block:
            try:
                hdr = await self.call("getblockheader", block)
            except ChannelError as e:
                if e.code == RPC_INVALID_ADDRESS_OR_KEY:
                    log.warning("%s: cursor block %s unknown to the daemon; scanning the whole wallet", self.currency, block)
                    return None
                raise
            if int(hdr.get("confirmations", -1)) >= 0:
                if block != cursor:
                    log.warning("%s: cursor %s was re-orged out; resuming from %s", self.currency, cursor, block)
                return block
            block = hdr.get("previousblockhash")
        return None

    async def scan(self, cursor: str | None, depth: int) -> Scan:
        start = await self._main_chain_cursor(cursor) if cursor else None
        r = await self.call("listsinceblock", start or "", max(depth, 1), False)
        out: list[Transfer] = []
        for t in r.get("transactions", []):
            category = t.get("category")
            if category not in ("receive", *COINBASE_CATEGORIES) or "txid" not in t or "vout" not in t or "address" not in t:
                continue  # sends and change are not deposits
            try:
                amount: int | None = self.units(t["amount"])
            except (TypeError, ValueError):
                amount = None  # one odd transfer must not stop the scan: the actor alerts the admin
            out.append(Transfer(
                txid=str(t["txid"]),
                vout=int(t["vout"]),
                address=str(t["address"]),
                amount=amount,
                confirmations=int(t.get("confirmations", 0)) if category != "orphan" else -1,
                block_hash=t.get("blockhash") or None,
                coinbase=category in COINBASE_CATEGORIES,
            ))
        return Scan(transfers=out, cursor=r.get("lastblock") or start)

    async def balance(self) -> int:
        return self.units(await self.call("getbalance"))

    async def build(self, address: str, amount: int, inputs: list[tuple[str, int]]) -> Built:
        ins = [{"txid": t, "vout": v} for t, v in inputs]
        raw = await self.call("createrawtransaction", ins, {address: decimal_from_units(amount, self.precision)})
        try:
            # lockUnspents: the wallet keeps the coins this payment spends out of the next one it funds
            funded = await self.call("fundrawtransaction", raw, {"lockUnspents": True})
        except ChannelError as e:
            if e.code in (RPC_WALLET_ERROR, RPC_WALLET_INSUFFICIENT_FUNDS) and "nsufficient" in e.message:
                raise InsufficientFunds(e.message) from None
            raise
        try:
            signed = await self.call("signrawtransactionwithwallet", funded["hex"])
        except ChannelError as e:
            if e.code != RPC_METHOD_NOT_FOUND:
                raise
            signed = await self.call("signrawtransaction", funded["hex"])  # daemons before Bitcoin Core 0.17
        if not signed.get("complete"):
            raise ChannelError(0, f"the wallet could not sign the payment: {signed.get('errors')}")
        decoded = await self.call("decoderawtransaction", signed["hex"])
        fee = funded.get("fee")
        return Built(raw=str(signed["hex"]), txid=str(decoded["txid"]),
                     network_fee=self.units(fee) if fee is not None else None)

    async def release(self, built: Built) -> None:
        decoded = await self.call("decoderawtransaction", built.raw)
        outs = [{"txid": i["txid"], "vout": int(i["vout"])} for i in decoded.get("vin", []) if "txid" in i]
        if outs:
            await self.call("lockunspent", True, outs)

    async def broadcast(self, raw: str) -> None:
        try:
            await self.call("sendrawtransaction", raw)
        except ChannelError as e:
            text = e.message.lower()
            if e.code == RPC_VERIFY_ALREADY_IN_CHAIN or "already" in text:
                return  # sent before (a lost answer, a rebroadcast): these very bytes are out
            if e.code == RPC_VERIFY_ERROR or (e.code == RPC_VERIFY_REJECTED and ("conflict" in text or "missing" in text
                                                                                or "spent" in text)):
                raise PaymentRejected(e.message, conflict=True) from None
            if e.code == RPC_VERIFY_REJECTED:
                raise PaymentRejected(e.message, conflict=False) from None
            raise

    async def tx_state(self, txid: str) -> TxState:
        try:
            r = await self.call("gettransaction", txid, True)
        except ChannelError as e:
            if e.code == RPC_INVALID_ADDRESS_OR_KEY:
                return TxState(known=False)
            raise
        conf = int(r.get("confirmations", 0))
        categories = {d.get("category") for d in r.get("details", [])}
        coinbase = bool(r.get("generated")) or bool(categories & set(COINBASE_CATEGORIES))
        in_mempool = False
        if conf == 0:
            try:
                await self.call("getmempoolentry", txid)
                in_mempool = True
            except ChannelError as e:
                if e.code != RPC_INVALID_ADDRESS_OR_KEY:
                    raise
        if "orphan" in categories and conf >= 0:
            conf = -1  # a coinbase whose block left the chain can never come back by itself
        return TxState(known=True, confirmations=conf, in_mempool=in_mempool, coinbase=coinbase,
                       mature=not coinbase or "immature" not in categories, block_hash=r.get("blockhash") or None)

    async def unspent_inputs(self, raw: str) -> list[tuple[str, int]]:
        decoded = await self.call("decoderawtransaction", raw)
        out = []
        for i in decoded.get("vin", []):
            if "txid" in i and await self.call("gettxout", i["txid"], int(i["vout"]), True) is not None:
                out.append((str(i["txid"]), int(i["vout"])))
        return out

    async def watched_balance(self, addresses: list[str]) -> int:
        """Watch-only addresses are imported once (with a rescan, so their past counts too)."""
        for a in addresses:
            check = await self.call("validateaddress", a)
            if not (check.get("ismine") or check.get("iswatchonly")):
                await self.call("importaddress", a, "cold", True)
        utxos = await self.call("listunspent", 1, 9_999_999, addresses, True)
        return sum(self.units(u["amount"]) for u in utxos)

    async def find_sent(self, key: str, address: str, amount: int, since_ms: int) -> SentTx | None:
        """Page back through `listtransactions` (newest first) to just before `since_ms`.

        A payment labelled `key` is ours. Failing that (forks that drop comments), an unlabelled
        payment of exactly `amount` to `address` made since then is taken; the caller makes sure
        that txid is not already recorded for another withdrawal.
        """
        since_s = since_ms // 1000 - 600  # the daemon's clock and ours may differ a little
        fallback: SentTx | None = None
        skip = 0
        while True:
            page = await self.call("listtransactions", "*", PAGE, skip, False)
            if not page:
                break
            oldest = None
            for t in reversed(page):
                ts = int(t.get("time", 0))
                oldest = ts if oldest is None else min(oldest, ts)
                if t.get("category") != "send" or "txid" not in t:
                    continue
                if t.get("comment") == key:
                    return await self._sent_view(str(t["txid"]))
                if (fallback is None and not t.get("comment") and t.get("address") == address
                        and self.units(-t["amount"]) == amount and ts >= since_s):
                    fallback = SentTx(txid=str(t["txid"]), amount=amount, network_fee=None,
                                      confirmations=int(t.get("confirmations", 0)))
            if len(page) < PAGE or (oldest is not None and oldest < since_s):
                break
            skip += PAGE
        return fallback

    async def _sent_view(self, txid: str) -> SentTx:
        r = await self.call("gettransaction", txid)
        fee = r.get("fee")
        return SentTx(
            txid=txid,
            amount=self.units(-r.get("amount", Decimal(0))),
            network_fee=self.units(-fee) if fee is not None else None,
            confirmations=int(r.get("confirmations", 0)),
        )

    async def sent(self, txid: str) -> SentTx | None:
        try:
            return await self._sent_view(txid)
        except ChannelError as e:
            if e.code == RPC_INVALID_ADDRESS_OR_KEY:
                return None
            raise
