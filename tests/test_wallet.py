"""Wallets without a daemon: configuration, exact amounts over JSON-RPC, the bank channel end to end,
the wallet actor's edge cases and the funds API.

The actor's edge cases (a lost reply, a payment the wallet never made, refusals, a ledger that does
not add up, an unreachable daemon) run against `FakeChannel`, an in-memory channel family: which
also shows that a new family is one class and a `channel = "fake"` line in the configuration.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.audit import audit
from node.bootstrap import start_exchange
from node.config import ConfigError, parse_config
from node.errors import InvalidParameter
from node.exchange import Exchange, OrderInput
from node.wallet import FAMILIES, check_wallets
from node.wallet.channel import (
    AddressCheck,
    Built,
    Channel,
    ChannelError,
    ChannelInfo,
    ChannelUnavailable,
    InsufficientFunds,
    Scan,
    SentTx,
    Transfer,
    TxState,
    WalletUnavailable,
    decimal_from_units,
    units_from_decimal,
)
from node.wallet.jsonrpc import JsonRpc, decode, encode
from node.wallet.records import WithdrawFailed, withdraw_sn
from tests.apiclient import ApiClient, ApiError
from tests.regtest import config_data

BTC = 10**8
USD = 10**6
BANK = {"channel": "bank", "bank_name": "First Test Bank", "account_holder": "PyExchange Ltd",
        "account_number": "DE89 3704 0044 0532 0130 00", "swift": "TESTDEFF", "withdraw_fee": "2",
        "min_withdraw": "10", "reference_prefix": "PX"}


# -- an in-memory channel family -------------------------------------------------------------------------
@dataclass
class FakeWallet:
    """A wallet and its chain in memory. Deposits are `transfers` (their confirmations are what
    `tx_state` reports, unless `states` says otherwise); payments are built into `built` and count as
    paid once their bytes are broadcast (`broadcasts` lists every broadcast, repeats included)."""

    own: set[str] = field(default_factory=set)
    transfers: list[Transfer] = field(default_factory=list)
    states: dict[str, TxState] = field(default_factory=dict)
    balance: int = 100 * BTC
    built: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # txid -> address, amount, raw
    broadcasts: list[str] = field(default_factory=list)  # txids, every time their bytes were broadcast
    confirmations: dict[str, int] = field(default_factory=dict)  # payments the network has: txid -> depth
    build_error: Exception | None = None
    broadcast_error: Exception | None = None
    lose_reply: bool = False  # broadcast, then fail as if the connection dropped before the answer
    down: bool = False
    calls: int = 0

    @property
    def paid(self) -> list[str]:
        """Distinct payments the network has accepted: a withdrawal paid twice would show twice."""
        return list(self.confirmations)


WALLETS: dict[str, FakeWallet] = {}


class FakeChannel(Channel):
    family = "fake"
    kinds = ("coin",)
    settings: ClassVar[dict[str, tuple[bool, str]]] = {"label": (False, "anything")}

    @property
    def w(self) -> FakeWallet:
        wallet = WALLETS[self.currency]
        wallet.calls += 1
        if wallet.down:
            raise ChannelUnavailable("cannot connect to fake daemon: connection refused", maybe_done=False)
        return wallet

    async def info(self) -> ChannelInfo:
        _ = self.w  # counts the call, fails when down
        return ChannelInfo(height=100)

    async def new_address(self, member_id: int) -> str:
        address = f"fake{len(self.w.own)}"
        self.w.own.add(address)
        return address

    async def validate_address(self, address: str) -> AddressCheck:
        valid = address.startswith(("fake", "ext"))
        return AddressCheck(valid=valid, mine=address in self.w.own)

    async def scan(self, cursor: str | None, depth: int) -> Scan:
        return Scan(transfers=list(self.w.transfers), cursor="c1")

    async def balance(self) -> int:
        return self.w.balance

    async def build(self, address: str, amount: int, inputs: list[tuple[str, int]]) -> Built:
        w = self.w
        if w.build_error is not None:
            raise w.build_error
        if amount + 100 > w.balance:
            raise InsufficientFunds("Insufficient funds")
        txid = f"tx{len(w.built)}"
        w.built[txid] = (address, amount, f"raw-{txid}")
        return Built(raw=f"raw-{txid}", txid=txid, network_fee=100)

    async def broadcast(self, raw: str) -> None:
        w = self.w
        if w.broadcast_error is not None:
            raise w.broadcast_error
        txid = raw.removeprefix("raw-")
        w.broadcasts.append(txid)
        if txid not in w.confirmations:
            w.confirmations[txid] = 0
            w.balance -= w.built[txid][1] + 100
        if w.lose_reply:
            raise ChannelUnavailable("sendrawtransaction timed out", maybe_done=True)

    async def tx_state(self, txid: str) -> TxState:
        w = self.w
        if txid in w.states:
            return w.states[txid]
        if txid in w.confirmations:
            return TxState(known=True, confirmations=w.confirmations[txid], in_mempool=w.confirmations[txid] == 0)
        for t in w.transfers:
            if t.txid == txid:
                return TxState(known=True, confirmations=t.confirmations, in_mempool=t.confirmations == 0,
                               coinbase=t.coinbase, block_hash=t.block_hash)
        return TxState(known=False)

    async def unspent_inputs(self, raw: str) -> list[tuple[str, int]]:
        return []

    async def find_sent(self, key: str, address: str, amount: int, since_ms: int) -> SentTx | None:
        return None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWallet]:
    monkeypatch.setitem(FAMILIES, "fake", FakeChannel)
    WALLETS.clear()
    WALLETS["btc"] = FakeWallet()
    yield WALLETS["btc"]
    WALLETS.clear()


def wallet_config(database: str, **wallets: dict[str, Any]) -> Any:
    return parse_config(config_data(database, wallets), "test")


FAKE_BTC = {"channel": "fake", "confirmations": 2, "min_deposit": "0.0001", "withdraw_fee": "0.001", "min_withdraw": "0.01", "auto_approve": "1",
            "poll_interval_ms": 60_000}


@pytest.fixture
async def ex(database_url: str, fake: FakeWallet) -> AsyncIterator[Exchange]:
    e = await start_exchange(wallet_config(database_url, btc=FAKE_BTC, usd=BANK))
    try:
        yield e
    finally:
        await e.stop()


async def bal(ex: Exchange, member: int, currency: str = "btc") -> tuple[int, int]:
    row = await ex.store.fetchrow("SELECT balance, locked FROM accounts WHERE member_id = ? AND currency = ?", member, currency)
    assert row is not None
    return int(row["balance"]), int(row["locked"])


async def books(ex: Exchange) -> None:
    report = await audit(ex.store, ex.config.markets)
    assert report.ok, report.lines()


async def funded(ex: Exchange, fake: FakeWallet, email: str = "alice@example.com", amount: int = 3 * BTC) -> int:
    """A member whose coin deposit has been credited through the wallet."""
    member = await ex.create_member(email)
    addr = (await ex.funds.deposit_address(member, "btc"))["address"]
    fake.transfers.append(Transfer(f"in-{email}", 0, addr, amount, 2, "b1"))
    await ex.funds.poll("btc")
    assert (await bal(ex, member))[0] == amount
    return member


# -- configuration -------------------------------------------------------------------------------------------
def test_wallet_tables_parse_with_defaults_and_the_default_config_has_none(tmp_path: Path) -> None:
    cfg = parse_config(config_data("sqlite:///x.db", {
        "btc": {"channel": "bitcoind", "rpc_url": "http://127.0.0.1:8332/", "rpc_password_env": "BTC_RPC_PASSWORD",
                "withdraw_fee": "0.0005", "auto_approve": "0.5"},
        "usd": BANK}), "t")
    w = cfg.currencies["btc"].wallet
    assert w is not None and w.channel == "bitcoind" and w.node == "main" and w.confirmations == 6
    assert (w.withdraw_fee, w.min_withdraw, w.max_withdraw, w.auto_approve) == (50_000, 1, 0, 50_000_000)
    assert w.options == {"rpc_url": "http://127.0.0.1:8332/", "rpc_password_env": "BTC_RPC_PASSWORD"}
    u = cfg.currencies["usd"].wallet
    assert u is not None and u.channel == "bank" and u.min_withdraw == 10 * USD and u.withdraw_fee == 2 * USD
    assert cfg.currencies["ltc"].wallet is None
    default = parse_config(config_data("sqlite:///x.db", {}), "t")
    assert all(c.wallet is None for c in default.currencies.values())
    hash(cfg.markets["btcusd"])  # still hashable with a wallet inside


RPC = {"channel": "bitcoind", "rpc_url": "http://127.0.0.1:8332/"}


@pytest.mark.parametrize(("code", "table", "message"), [
    ("btc", {"channel": "carrier-pigeon"}, "currencies.btc.wallet.channel: unknown channel 'carrier-pigeon'"),
    ("btc", {**BANK}, "currencies.btc.wallet.channel: channel 'bank' is for fiat currencies, not coin"),
    ("usd", {**RPC}, "currencies.usd.wallet.channel: channel 'bitcoind' is for coin currencies, not fiat"),
    ("btc", {"channel": "bitcoind"}, "currencies.btc.wallet.rpc_url: missing"),
    ("btc", {**RPC, "rpc_url": "http://user:secret@127.0.0.1:8332/"}, "currencies.btc.wallet.rpc_url: must not contain"),
    ("btc", {**RPC, "rpc_url": "ftp://x"}, "currencies.btc.wallet.rpc_url: must be an http(s) URL"),
    ("btc", {**RPC, "rpc_pasword_env": "X"}, "currencies.btc.wallet.rpc_pasword_env: unknown setting"),
    ("btc", {**RPC, "rpc_password_env": "not a name"}, "currencies.btc.wallet.rpc_password_env: must be an environment"),
    ("btc", {**RPC, "confirmations": 0}, "currencies.btc.wallet.confirmations: must be between 1 and 10000"),
    ("btc", {**RPC, "confirmations": "6"}, "currencies.btc.wallet.confirmations: expected an integer"),
    ("btc", {**RPC, "withdraw_fee": "0.000000001"}, "currencies.btc.wallet.withdraw_fee: has too many decimal places"),
    ("btc", {**RPC, "withdraw_fee": 0.1}, "currencies.btc.wallet.withdraw_fee: expected a string"),
    ("btc", {**RPC, "min_withdraw": "2", "max_withdraw": "1"}, "currencies.btc.wallet.max_withdraw: must not be below"),
    ("btc", {**RPC, "node": "elsewhere"}, "currencies.btc.wallet.node: no such node 'elsewhere'"),
    ("usd", {**BANK, "channel": "bitcoind"}, "currencies.usd.wallet.channel: channel 'bitcoind' is for coin"),
    ("usd", {**BANK, "account_number": ""}, "currencies.usd.wallet.account_number: must be a non-empty line"),
    ("usd", {"channel": "bank", "bank_name": "B", "account_holder": "H"}, "currencies.usd.wallet.account_number: missing"),
])
def test_wallet_config_errors_name_the_field(code: str, table: dict[str, Any], message: str) -> None:
    """The parser's own checks, then the channel family's (as a node checks them before it starts)."""
    with pytest.raises(ConfigError) as e:
        check_wallets(parse_config(config_data("sqlite:///x.db", {code: table}), "t"))
    assert str(e.value).startswith(message), str(e.value)


def test_a_family_refuses_a_precision_it_cannot_move_exactly() -> None:
    data = config_data("sqlite:///x.db", {"btc": RPC})
    data["currencies"]["btc"]["precision"] = 10
    with pytest.raises(ConfigError, match=r"currencies.btc.wallet.channel: channel 'bitcoind' moves at most 8 decimal"):
        check_wallets(parse_config(data, "t"))


async def test_missing_credential_variable_stops_the_node_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_RPC_PASSWORD", raising=False)
    cfg = wallet_config(f"sqlite:///{tmp_path}/x.db", btc={**RPC, "rpc_password_env": "NO_SUCH_RPC_PASSWORD"})
    with pytest.raises(ConfigError, match="currencies.btc.wallet.rpc_password_env: environment variable "
                                          "NO_SUCH_RPC_PASSWORD is not set"):
        await start_exchange(cfg)
    ex = await start_exchange(cfg, actors=False)  # admin commands need no daemon and no credentials
    await ex.stop()


async def test_a_node_without_wallet_settings_runs_no_wallet(tmp_path: Path) -> None:
    ex = await start_exchange(wallet_config(f"sqlite:///{tmp_path}/x.db"))
    try:
        assert ex.funds.actors == {} and ex.status()["wallets"] == {}
        m = await ex.create_member("a@example.com")
        with pytest.raises(InvalidParameter, match="has no wallet"):
            await ex.funds.deposit_address(m, "btc")
        with pytest.raises(InvalidParameter, match="has no wallet"):
            await ex.deposit_address(m, "btc")
        assert await ex.funds.hot_wallets() == []
    finally:
        await ex.stop()


async def test_a_wallet_runs_only_on_its_node(tmp_path: Path, fake: FakeWallet) -> None:
    data = config_data(f"sqlite:///{tmp_path}/x.db", {"btc": {**FAKE_BTC, "node": "b"}})
    data["nodes"] = {"a": {"markets": ["btcusd", "ltcbtc", "dogebtc"]}, "b": {"markets": []}}
    ex = await start_exchange(parse_config(data, "t"), "a")
    try:
        assert ex.funds.actors == {}
        m = await ex.create_member("a@example.com")
        assert (await ex.funds.deposit_address(m, "btc"))["address"] == "fake0"  # stateless calls work anywhere
    finally:
        await ex.stop()


# -- exact amounts ---------------------------------------------------------------------------------------------
def test_amounts_cross_json_rpc_exactly() -> None:
    doc = decode('{"result": {"amount": 0.1, "fee": -0.00003840, "big": 20999999.97690000, "n": 3}}')["result"]
    assert doc["amount"] == Decimal("0.1") and isinstance(doc["amount"], Decimal) and doc["n"] == 3
    assert units_from_decimal(doc["amount"], 8) == 10_000_000
    assert units_from_decimal(-doc["fee"], 8) == 3840
    assert units_from_decimal(doc["big"], 8) == 2_099_999_997_690_000
    for bad in (Decimal("0.123456789"), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(ValueError):
            units_from_decimal(bad, 8)
    with pytest.raises(TypeError):
        units_from_decimal(0.1, 8)  # type: ignore[arg-type]
    assert str(decimal_from_units(70_000_001, 8)) == "0.70000001"
    assert encode(["addr", decimal_from_units(1, 8), "k", ""]) == '["addr",0.00000001,"k",""]'
    assert encode([decimal_from_units(2_099_999_997_690_000, 8)]) == "[20999999.97690000]"
    assert encode({"a": [1, True, None]}) == '{"a":[1,true,null]}'
    with pytest.raises(TypeError):
        encode([0.1])
    assert withdraw_sn(7, 1_700_000_000_000) == "23111422130007"
    assert withdraw_sn(123_456, 1_700_000_000_000) == "2311142213123456"


async def test_json_rpc_failures_are_told_apart(free_port: int) -> None:
    """Never connected (safe to retry) vs. maybe executed (reconcile) vs. a refusal vs. not ready."""
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        body = json.loads(await request.read(), parse_float=Decimal)
        seen.append((request.headers.get("Authorization"), body))
        method = body["method"]
        if method == "slow":
            await asyncio.sleep(2)
        if method == "auth":
            return web.Response(status=401)
        if method == "fail":
            return web.json_response({"result": None, "error": {"code": -5, "message": "Invalid address"}, "id": 1},
                                     status=500)
        if method == "warm":
            return web.json_response({"result": None, "error": {"code": -28, "message": "Loading"}, "id": 1}, status=500)
        return web.Response(text='{"result": 1.10000000, "error": null, "id": 1}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rpc = JsonRpc(f"http://127.0.0.1:{server.port}/", "user", "pw", timeout=0.5)
    try:
        assert await rpc.call("ok", "x", decimal_from_units(150_000_000, 8)) == Decimal("1.10000000")
        auth, body = seen[-1]
        assert auth == "Basic dXNlcjpwdw==" and body["params"] == ["x", Decimal("1.50000000")]
        with pytest.raises(ChannelError) as e:
            await rpc.call("fail")
        assert e.value.code == -5 and e.value.message == "Invalid address"
        for method, maybe in (("auth", False), ("warm", False), ("slow", True)):
            with pytest.raises(ChannelUnavailable) as u:
                await rpc.call(method)
            assert u.value.maybe_done is maybe, method
    finally:
        await rpc.close()
        await server.close()
    down = JsonRpc(f"http://user:pw@127.0.0.1:{free_port}/", timeout=0.5)
    with pytest.raises(ChannelUnavailable) as u:
        await down.call("getbalance")
    assert u.value.maybe_done is False and "pw" not in str(u.value) and "cannot connect" in str(u.value)
    await down.close()


# -- fiat through the bank channel ------------------------------------------------------------------------------
async def test_bank_deposit_confirmed_once_and_withdrawal_completed_by_an_admin(ex: Exchange) -> None:
    alice = await ex.create_member("alice@example.com")
    bob = await ex.create_member("bob@example.com")
    info = await ex.funds.deposit_address(alice, "usd")
    ref = info["address"]
    assert ref.startswith("PX") and len(ref) == 12 and info["bank"]["account_number"] == BANK["account_number"]
    assert (await ex.funds.deposit_address(alice, "usd"))["address"] == ref  # a permanent reference
    assert (await ex.funds.deposit_address(bob, "usd"))["address"] != ref

    d = await ex.funds.confirm_bank_deposit("usd", ref.lower(), "1500.25", "BANK-REF-1")
    assert d["state"] == "accepted" and d["amount"] == 1_500_250_000 and d["member_id"] == alice and d["memo"] == ref
    again = await ex.funds.confirm_bank_deposit("usd", ref, "1500.25", "BANK-REF-1")  # the admin clicks twice
    assert again["id"] == d["id"]
    assert await bal(ex, alice, "usd") == (1_500_250_000, 0)
    with pytest.raises(InvalidParameter, match="already used"):
        await ex.funds.confirm_bank_deposit("usd", ref, "99", "BANK-REF-1")
    with pytest.raises(InvalidParameter, match="does not belong to any member"):
        await ex.funds.confirm_bank_deposit("usd", "PXNOSUCHREF", "10", "BANK-REF-2")
    with pytest.raises(InvalidParameter, match="not a bank currency"):
        await ex.funds.confirm_bank_deposit("btc", ref, "10", "BANK-REF-3")
    assert [x["txid"] for x in await ex.funds.deposits_of(alice)] == ["BANK-REF-1"]

    with pytest.raises(InvalidParameter, match="not a valid USD address"):
        await ex.funds.request_withdraw(alice, "usd", "100", "ab")
    with pytest.raises(InvalidParameter, match="belongs to this exchange"):
        await ex.funds.request_withdraw(alice, "usd", "100", "IBAN DE89370400440532013000")
    with pytest.raises(InvalidParameter, match="below the minimum"):
        await ex.funds.request_withdraw(alice, "usd", "9.99", "GB29 NWBK 6016 1331 9268 19")
    w = await ex.funds.request_withdraw(alice, "usd", "1000", "GB29 NWBK 6016 1331 9268 19 (Alice A.)")
    assert w["total"] == 1_002_000_000 and await bal(ex, alice, "usd") == (498_250_000, 1_002_000_000)
    await ex.funds.poll("usd")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "accepted" and w["note"] == "awaiting the bank transfer by an admin"
    assert [x["id"] for x in await ex.funds.withdraws_waiting("usd")] == [w["id"]]
    await ex.funds.complete_bank_withdraw(int(w["id"]), "SEPA-77")
    with pytest.raises(WithdrawFailed, match="only an accepted withdrawal can be completed"):
        await ex.funds.complete_bank_withdraw(int(w["id"]), "SEPA-78")  # the admin clicks twice
    done = await ex.funds.withdraw(int(w["id"]))
    assert done["state"] == "done" and done["txid"] == "SEPA-77" and done["done_at"]
    assert await bal(ex, alice, "usd") == (498_250_000, 0)
    assert await bal(ex, ex.fee_member, "usd") == (2 * USD, 0)

    w2 = await ex.funds.request_withdraw(alice, "usd", "10", "GB29 NWBK 6016 1331 9268 19")
    rejected = await ex.funds.reject_withdraw(int(w2["id"]), "name does not match the account")
    assert rejected["state"] == "rejected" and "name does not match" in rejected["note"]
    assert await bal(ex, alice, "usd") == (498_250_000, 0)
    await books(ex)


# -- the wallet actor's edge cases ---------------------------------------------------------------------------------
async def test_deposits_follow_the_chain(ex: Exchange, fake: FakeWallet) -> None:
    alice = await ex.create_member("alice@example.com")
    addr = (await ex.funds.deposit_address(alice, "btc"))["address"]
    fake.transfers += [Transfer("t1", 0, addr, BTC, 1, "b1"), Transfer("t1", 1, "not-ours", BTC, 1, "b1"),
                       Transfer("t2", 0, addr, None, 5, "b1"), Transfer("t3", 0, addr, 2 * BTC, 0, None),
                       Transfer("t4", 0, addr, 10, 5, "b1")]
    await ex.funds.poll("btc")
    rows = {(r["txid"], r["state"], r["confirmations"]) for r in await ex.funds.deposits_of(alice, limit=10)}
    assert rows == {("t1", "submitted", 1), ("t3", "submitted", 0), ("t4", "skipped", 5)}  # t4: below the minimum
    assert [a["kind"] for a in await ex.funds.alerts()] == ["bad_amount"]
    receipts = await ex.store.fetch("SELECT txid, amount FROM wallet_receipts")
    assert [(r["txid"], r["amount"]) for r in receipts] == [("t1", BTC)]  # the output nobody owns, for reconciliation
    # t3 is double-spent before it was credited; the scan no longer reports it, the re-check by txid does
    fake.transfers = [Transfer("t1", 0, addr, BTC, 2, "b1")]
    fake.states["t3"] = TxState(known=True, confirmations=-1)
    await ex.funds.poll("btc")
    states = {(r["txid"], r["state"]) for r in await ex.funds.deposits_of(alice, limit=10)}
    assert states == {("t1", "accepted"), ("t3", "failed"), ("t4", "skipped")}
    assert await bal(ex, alice) == (BTC, 0)
    await ex.submit_order(alice, OrderInput("btcusd", "sell", "0.25", "30000"))  # 0.25 locked in an order
    await ex.quiesce()
    fake.transfers = []
    fake.states["t1"] = TxState(known=True, confirmations=-1)  # double-spent after it was credited
    await ex.funds.poll("btc")
    alerts = await ex.funds.alerts()
    assert [a["kind"] for a in alerts] == ["reorg", "bad_amount"] and "double-spent" in alerts[0]["message"]
    assert "shortfall 0.25 BTC" in alerts[0]["message"]
    assert await bal(ex, alice) == (0, BTC // 4)  # taken back as far as the balance goes; the order's lock stays
    d = next(r for r in await ex.funds.deposits_of(alice, limit=10) if r["txid"] == "t1")
    assert d["state"] == "reverted" and d["reversed"] == 3 * BTC // 4 and "still owed" in d["note"]
    holds = await ex.funds.freezes()
    assert [(h["member_id"], h["shortfall"]) for h in holds] == [(alice, BTC // 4)]
    with pytest.raises(WithdrawFailed, match="withdrawals are on hold"):
        await ex.funds.request_withdraw(alice, "btc", "0.01", "ext-1")
    await ex.funds.release_freeze(int(holds[0]["id"]), "member repaid by bank transfer", "ops")
    assert await ex.funds.freezes() == []
    await books(ex)


async def test_a_lost_reply_is_answered_with_the_same_bytes_never_a_new_payment(ex: Exchange, fake: FakeWallet) -> None:
    alice = await funded(ex, fake)
    fake.lose_reply = True
    w = await ex.funds.request_withdraw(alice, "btc", "0.5", "ext-1")
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "processing" and w["txid"] == "tx0" and w["raw_tx"] == "raw-tx0"
    assert w["note"] == "being sent" and "outcome unknown" in w["admin_note"]
    assert ex.status()["wallets"]["btc"]["status"] == "unreachable"
    fake.lose_reply = False
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert (w["state"], w["txid"], w["network_fee"], w["note"]) == ("almost_done", "tx0", 100, "sent; 0 of 2 confirmations")
    assert await bal(ex, alice) == (3 * BTC - 50_100_000, 50_100_000)  # locked until confirmed
    fake.confirmations["tx0"] = 2
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "done" and w["confirmations"] == 2 and await bal(ex, alice) == (3 * BTC - 50_100_000, 0)
    assert fake.paid == ["tx0"] and len(fake.built) == 1
    await books(ex)


async def test_a_broadcast_that_never_arrived_is_sent_again_with_the_same_bytes(ex: Exchange, fake: FakeWallet) -> None:
    alice = await funded(ex, fake)
    fake.broadcast_error = ChannelUnavailable("timed out before the daemon read it", maybe_done=True)
    w = await ex.funds.request_withdraw(alice, "btc", "0.5", "ext-1")
    await ex.funds.poll("btc")
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "processing" and fake.paid == [] and len(fake.built) == 1
    fake.broadcast_error = None
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "almost_done" and w["attempts"] == 1 and fake.paid == ["tx0"] and len(fake.built) == 1
    # the network drops it: noticed, alerted, the same bytes broadcast again
    del fake.confirmations["tx0"]
    await ex.funds.poll("btc")
    assert [a["kind"] for a in await ex.funds.alerts()] == ["payment_dropped"]
    assert fake.broadcasts == ["tx0", "tx0"] and fake.paid == ["tx0"] and len(fake.built) == 1
    # then a double-spend takes its inputs: it can never confirm; held for an admin, funds still locked
    fake.states["tx0"] = TxState(known=True, confirmations=-2)
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "suspect" and "did not go through" in w["note"] and "conflicted" in w["admin_note"]
    assert await bal(ex, alice) == (3 * BTC - 50_100_000, 50_100_000)
    assert {a["kind"] for a in await ex.funds.alerts()} == {"payment_dropped", "payment_conflicted"}
    await ex.funds.approve_withdraw(int(w["id"]), "ops")  # the admin pays it again: a new transaction
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "almost_done" and w["txid"] == "tx1"
    await books(ex)


async def test_refusals_by_the_daemon(ex: Exchange, fake: FakeWallet) -> None:
    alice = await funded(ex, fake)
    fake.build_error = ChannelError(-5, "Invalid address")
    w = await ex.funds.request_withdraw(alice, "btc", "0.5", "ext-1")
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "failed" and await bal(ex, alice) == (3 * BTC, 0)
    assert "Invalid address" not in w["note"]  # daemon words are for staff (the alert), not the member
    assert [a["kind"] for a in await ex.funds.alerts()] == ["withdraw_failed"]
    fake.build_error = None
    fake.balance = 50_000_000  # exactly the amount: the network fee does not fit; it waits instead of failing
    w = await ex.funds.request_withdraw(alice, "btc", "0.5", "ext-1")
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "accepted" and w["note"] == "waiting to be sent"
    assert "hot wallet" in w["admin_note"] and "0.5" not in w["note"]
    assert "hot_wallet_low" in [a["kind"] for a in await ex.funds.alerts()]
    fake.balance = 10 * BTC
    await ex.funds.poll("btc")
    assert (await ex.funds.withdraw(int(w["id"])))["state"] == "almost_done"
    await books(ex)


async def test_a_ledger_that_does_not_add_up_holds_the_withdrawal(ex: Exchange, fake: FakeWallet) -> None:
    alice = await funded(ex, fake)
    await ex.store.execute("INSERT INTO ledger (member_id, currency, d_balance, d_locked, fee, reason, ref_type, ref_id, "
                           "created_at) VALUES (?, 'btc', 5, 0, 0, 'fix', 'test', 0, 0)", alice)
    w = await ex.funds.request_withdraw(alice, "btc", "0.5", "ext-1")
    await ex.funds.poll("btc")
    w = await ex.funds.withdraw(int(w["id"]))
    assert w["state"] == "suspect" and "ledger says" in w["admin_note"] and "ledger" not in w["note"] and fake.built == {}
    assert [a["kind"] for a in await ex.funds.alerts()] == ["suspect_withdraw"]
    with pytest.raises(WithdrawFailed, match="can no longer be canceled"):
        await ex.funds.cancel_withdraw(alice, int(w["id"]))  # held for the admin, not the member
    await ex.funds.approve_withdraw(int(w["id"]), "auditor")  # reviewed: pay it
    await ex.funds.poll("btc")
    assert (await ex.funds.withdraw(int(w["id"])))["state"] == "almost_done"


async def test_an_unreachable_daemon_is_a_status_with_back_off_not_a_crash(ex: Exchange, fake: FakeWallet) -> None:
    alice = await funded(ex, fake)
    actor = ex.funds.actors["btc"]
    fake.down = True
    await ex.funds.poll("btc")
    h = ex.status()["wallets"]["btc"]
    assert h["status"] == "unreachable" and "connection refused" in h["last_error"] and h["retry_in"] > 0
    assert h["running"] and h["restarts"] == 0
    calls = fake.calls
    await actor.cycle()  # a tick during the back-off does not touch the daemon
    assert fake.calls == calls
    with pytest.raises(WalletUnavailable):
        await ex.funds.request_withdraw(alice, "btc", "0.5", "ext-1")
    with pytest.raises(WalletUnavailable):
        await ex.funds.reconcile("btc")
    row = await ex.store.fetchrow("SELECT status, last_error FROM wallet_cursors WHERE currency = 'btc'")
    assert row is not None and row["status"] == "unreachable"  # visible to the admin of any node, through the store
    fake.down = False
    await ex.funds.poll("btc")
    assert ex.status()["wallets"]["btc"]["status"] == "ok"


# -- the funds API -----------------------------------------------------------------------------------------------
async def test_funds_api(ex: Exchange, fake: FakeWallet, tmp_path: Path) -> None:
    from node.bootstrap import web_app
    from node.web.app import KEYS

    app = web_app(ex, key_file=tmp_path / "secret.key")
    # the wallet API alone: address holds and mailed confirmations are tests/test_security_withdraw.py's
    ex.funds.protect(replace(ex.funds.policies, address_book=None))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    alice = await funded(ex, fake)
    now = int(time.time() * 1000)
    c = ApiClient(base, *(await app[KEYS].create(alice, "t", "all", now=now)))
    reader = ApiClient(base, *(await app[KEYS].create(alice, "r", "history", now=now)))
    try:
        addr = await c.get("/deposit_address", currency="usd")
        assert addr["currency"] == "usd" and addr["address"].startswith("PX") and addr["bank"]["swift"] == "TESTDEFF"
        assert (await c.get("/deposit_address", currency="btc"))["address"] == "fake1"  # fake0 has received funds
        deps = await reader.get("/deposits", currency="btc")
        assert [(d["txid"], d["amount"], d["state"]) for d in deps] == [("in-alice@example.com", "3.0", "accepted")]
        assert (await c.get("/deposit", txid="in-alice@example.com"))["confirmations"] == 2
        with pytest.raises(ApiError) as e:
            await c.get("/deposit", txid="nope")
        assert (e.value.status, e.value.code) == (404, 2012)

        w = await c.post("/withdraws", currency="btc", amount="0.25", address="ext-9", otp="123456")
        assert {k: w[k] for k in ("currency", "type", "amount", "fee", "sum", "address", "rid", "state", "txid")} == {
            "currency": "btc", "type": "coin", "amount": "0.25", "fee": "0.001", "sum": "0.251", "address": "ext-9",
            "rid": "ext-9", "state": "submitted", "txid": None}
        assert len(w["sn"]) == 14 and w["done_at"] is None
        w2 = await c.post("/withdraws", currency="btc", sum="0.5", rid="ext-8")  # Peatio's names work too
        canceled = await c.post("/withdraw/cancel", id=str(w2["id"]))
        assert canceled["state"] == "canceled"
        await ex.funds.poll("btc")
        got = await reader.get("/withdraw", id=str(w["id"]))
        assert got["state"] == "almost_done" and got["txid"] == "tx0" and got["done_at"] is None  # sent, confirming
        fake.confirmations["tx0"] = 2
        await ex.funds.poll("btc")
        got = await reader.get("/withdraw", id=str(w["id"]))
        assert got["state"] == "done" and got["txid"] == "tx0" and got["done_at"]
        assert [x["state"] for x in await reader.get("/withdraws", limit="10")] == ["canceled", "done"]
        assert [x["id"] for x in await reader.get("/withdraws", state="done")] == [w["id"]]
        for params, code, status in (
                ({"currency": "btc", "amount": "0.123456789", "address": "ext-1"}, 1001, 400),
                ({"currency": "btc", "amount": "50", "address": "ext-1"}, 3101, 400),
                ({"currency": "btc", "amount": "1", "address": "fake0"}, 1001, 400),
                ({"currency": "btc", "amount": "1"}, 1001, 400),
                ({"currency": "doge", "amount": "1", "address": "ext-1"}, 1001, 400)):
            with pytest.raises(ApiError) as e:
                await c.post("/withdraws", **params)
            assert (e.value.status, e.value.code) == (status, code), (params, e.value.body)
        with pytest.raises(ApiError) as e:
            await reader.post("/withdraws", currency="btc", amount="1", address="ext-1")
        assert (e.value.status, e.value.code) == (401, 2011)  # a history key cannot move money
        with pytest.raises(ApiError) as e:
            await reader.get("/withdraw", id="999")
        assert (e.value.status, e.value.code) == (404, 3103)
        fake.down = True
        with pytest.raises(ApiError) as e:
            await c.post("/withdraws", currency="btc", amount="1", address="ext-1")
        message = e.value.body["error"]["message"]
        assert (e.value.status, e.value.code) == (503, 3102) and "unavailable" in message
        assert "fake daemon" not in message and "refused" not in message  # daemon details are for staff, not members
    finally:
        for client in (c, reader):
            await client.close()
        await server.close()


def test_the_readme_wallet_examples_parse() -> None:
    """The configuration shown in README.md is valid (docs that drift are worse than none)."""
    import re
    import tomllib

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Wallets", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    data = config_data("sqlite:///x.db", {})
    for block in blocks:
        for code, cur in tomllib.loads(block)["currencies"].items():
            data["currencies"][code]["wallet"] = cur["wallet"]
    cfg = parse_config(data, "README.md")
    btc, usd = cfg.currencies["btc"].wallet, cfg.currencies["usd"].wallet
    assert btc is not None and btc.auto_approve == 50_000_000 and usd is not None and usd.channel == "bank"


async def test_an_approval_that_comes_during_the_audit_is_not_lost(ex: Exchange, fake: FakeWallet) -> None:
    """The wallet's cycle reads a withdrawal, an admin approves it, then the cycle audits what it
    read (an approval before the audit only marks the row): the audit decides on the row as it is
    then, so the approval counts and the withdrawal is paid, not left awaiting an approval it has."""
    alice = await funded(ex, fake)
    w = await ex.funds.request_withdraw(alice, "btc", "1.5", "ext-1")  # above auto_approve: needs an admin
    stale = await ex.store.fetchrow("SELECT * FROM withdraws WHERE id = ?", int(w["id"]))  # the cycle's read
    approved = await ex.funds.approve_withdraw(int(w["id"]), "ops")
    assert approved["state"] == "submitted" and approved["approved_by"] == "ops"  # not audited yet
    await ex.funds.actors["btc"]._audit(stale)  # type: ignore[attr-defined]
    assert (await ex.funds.withdraw(int(w["id"])))["state"] == "accepted"
    await ex.funds.poll("btc")
    assert (await ex.funds.withdraw(int(w["id"])))["state"] == "almost_done"
    await books(ex)
