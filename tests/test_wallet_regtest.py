"""Wallets against a real bitcoind in regtest mode (tests/regtest.py starts and stops the daemons).

`W` is the exchange's hot wallet, `C` a customer's wallet on the same regtest chain: customers pay
deposits from C, withdrawals arrive at C. Blocks that must carry a customer's transaction are mined
on C, blocks that must carry the exchange's on W, always with the coinbase paid to C, so that W
holds nothing but what went through the exchange and the hot wallet reconciles exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from node.audit import audit
from node.bootstrap import start_exchange
from node.config import parse_config
from node.errors import ExchangeError, InvalidParameter
from node.exchange import Exchange, OrderInput
from node.wallet.channel import WalletUnavailable
from node.wallet.records import WithdrawFailed
from tests.regtest import (
    Bitcoind,
    Regtest,
    coin_wallet,
    config_data,
    network,
    set_credentials,
    toml_wallets,
    until,
)

pytestmark = pytest.mark.slow
BTC = 10**8


@pytest.fixture
def regtest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Regtest]:
    set_credentials(monkeypatch)
    with network(tmp_path / "regtest") as net:
        yield net


def sats(value: Decimal | str) -> int:
    return int(Decimal(value) * BTC)


async def start(tmp_path: Path, wallets: dict[str, dict[str, Any]]) -> Exchange:
    return await start_exchange(parse_config(config_data(f"sqlite:///{tmp_path}/exchange.db", wallets), "test"))


async def balance(ex: Exchange, member: int, currency: str = "btc") -> tuple[int, int]:
    row = await ex.store.fetchrow("SELECT balance, locked FROM accounts WHERE member_id = ? AND currency = ?", member, currency)
    assert row is not None
    return int(row["balance"]), int(row["locked"])


async def books_balance(ex: Exchange) -> None:
    report = await audit(ex.store, ex.config.markets)
    assert report.ok, report.lines()


def customer(net: Regtest) -> tuple[Bitcoind, Bitcoind, str]:
    """W (exchange) and C (customer, connected to W, with 50 spendable coins per matured block)."""
    w = net.node("w")
    c = net.node("c", connect=w)
    caddr = c.rpc("getnewaddress")
    c.rpc("generatetoaddress", 110, caddr)
    net.sync(w, c)
    return w, c, caddr


def mine_on(net: Regtest, miner: Bitcoind, n: int, to: str, *others: Bitcoind) -> None:
    miner.rpc("generatetoaddress", n, to)
    net.sync(miner, *others)


async def test_deposit_credited_at_confirmations_once_across_restarts_and_downtime(regtest: Regtest, tmp_path: Path) -> None:
    w, c, caddr = customer(regtest)
    wallets = {"btc": coin_wallet(w, confirmations=3)}
    ex = await start(tmp_path, wallets)
    try:
        alice = await ex.create_member("alice@example.com")
        bob = await ex.create_member("bob@example.com")
        first = (await ex.funds.deposit_address(alice, "btc"))["address"]
        assert (await ex.funds.deposit_address(alice, "btc"))["address"] == first  # unused: the same one
        bob_addr = (await ex.funds.deposit_address(bob, "btc"))["address"]
        txid = c.rpc("sendtoaddress", first, "1.5")
        many = c.rpc("sendmany", "", {first: Decimal("0.25"), bob_addr: Decimal("0.75")})  # two outputs, one tx
        regtest.wait_mempool(w, txid)
        regtest.wait_mempool(w, many)
        await ex.funds.poll("btc")
        deps = await ex.funds.deposits_of(alice, limit=10)
        assert sorted((d["amount"], d["state"], d["confirmations"]) for d in deps) == [
            (sats("0.25"), "submitted", 0), (sats("1.5"), "submitted", 0)]
        assert await balance(ex, alice) == (0, 0)
        fresh = (await ex.funds.deposit_address(alice, "btc"))["address"]
        assert fresh != first  # the old one has received funds: a new one on request
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        assert {d["confirmations"] for d in await ex.funds.deposits_of(alice)} == {1}
    finally:
        await ex.stop()

    mine_on(regtest, c, 1, caddr, w)  # a block while the exchange is restarting
    ex = await start(tmp_path, wallets)
    try:
        await ex.funds.poll("btc")
        deps = await ex.funds.deposits_of(alice, limit=10)
        assert {(d["state"], d["confirmations"]) for d in deps} == {("submitted", 2)}
        assert await balance(ex, alice) == (0, 0)
    finally:
        await ex.stop()

    mine_on(regtest, c, 3, caddr, w)  # the deposit confirms while the exchange is down
    for _ in range(2):  # and once more after another restart: still credited once
        ex = await start(tmp_path, wallets)
        try:
            await ex.funds.poll("btc")
            await ex.funds.poll("btc")
            assert await balance(ex, alice) == (sats("1.75"), 0)
            assert await balance(ex, bob) == (sats("0.75"), 0)
            rows = await ex.store.fetch("SELECT txid, txout, state, member_id FROM deposits ORDER BY id")
            assert len(rows) == 3 and {r["state"] for r in rows} == {"accepted"}
            assert len({(r["txid"], r["txout"]) for r in rows}) == 3
            assert {r["txid"] for r in rows} == {txid, many}
            credits = await ex.store.fetchval("SELECT COUNT(*) FROM ledger WHERE reason = 'deposit'")
            assert credits == 3
            d = await ex.funds.deposit_by_txid(alice, txid)
            assert d is not None and d["state"] == "accepted" and d["confirmations"] >= 3 and d["done_at"]
            await books_balance(ex)
        finally:
            await ex.stop()


async def test_reorg_that_drops_a_credited_deposit_raises_an_alert(regtest: Regtest, tmp_path: Path) -> None:
    w, c, caddr = customer(regtest)
    ex = await start(tmp_path, {"btc": coin_wallet(w, confirmations=1)})
    try:
        alice = await ex.create_member("alice@example.com")
        addr = (await ex.funds.deposit_address(alice, "btc"))["address"]
        txid = c.rpc("sendtoaddress", addr, "2")
        regtest.wait_mempool(w, txid)
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        assert await balance(ex, alice) == (2 * BTC, 0)
        assert await ex.funds.alerts() == []
        block = w.rpc("gettransaction", txid)["blockhash"]
        w.rpc("invalidateblock", block)  # the block with the deposit leaves W's chain
        assert w.rpc("gettransaction", txid)["confirmations"] == 0
        await ex.funds.poll("btc")
        alerts = await ex.funds.alerts()
        vout = next(d["vout"] for d in w.rpc("gettransaction", txid)["details"] if d["address"] == addr)
        assert len(alerts) == 1 and alerts[0]["kind"] == "reorg" and alerts[0]["ref"] == f"{txid}:{vout}"
        assert "re-org" in alerts[0]["message"] and "back to unconfirmed" in alerts[0]["message"]
        await ex.funds.poll("btc")
        assert len(await ex.funds.alerts()) == 1  # raised once, not at every poll
        assert await balance(ex, alice) == (2 * BTC, 0)  # never silently reversed: the admin decides
        w.rpc("reconsiderblock", block)
        await ex.funds.poll("btc")
        await ex.funds.resolve_alert(int(alerts[0]["id"]), "block came back; deposit confirmed again")
        assert await ex.funds.alerts() == []
        assert len(await ex.funds.alerts(include_resolved=True)) == 1
    finally:
        await ex.stop()


async def test_withdrawals_arrive_fees_to_house_and_hot_wallet_reconciles(regtest: Regtest, tmp_path: Path) -> None:
    """Deposits, a trade and withdrawals: the books balance and the hot wallet matches the ledger."""
    w, c, caddr = customer(regtest)
    ex = await start(tmp_path, {"btc": coin_wallet(w, confirmations=1, withdraw_fee="0.001", auto_approve="1")})
    try:
        alice = await ex.create_member("alice@example.com")
        bob = await ex.create_member("bob@example.com")
        for member, amount in ((alice, "3"), (bob, "2")):
            addr = (await ex.funds.deposit_address(member, "btc"))["address"]
            regtest.wait_mempool(w, c.rpc("sendtoaddress", addr, amount))
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        assert (await balance(ex, alice))[0] == 3 * BTC
        await ex.deposit(bob, "usd", "100000")  # fiat by an admin, to trade with
        await ex.submit_order(alice, OrderInput("btcusd", "sell", "1", "30000"))
        await ex.submit_order(bob, OrderInput("btcusd", "buy", "1", "30000"))
        await ex.quiesce()
        bob_btc = (await balance(ex, bob))[0]
        assert bob_btc == 2 * BTC + BTC - BTC * 2 // 1000  # taker fee 0.2% of what he received

        # under the auto-approve threshold: paid at once
        dest = c.rpc("getnewaddress")
        wd = await ex.funds.request_withdraw(alice, "btc", "0.5", dest)
        assert wd["state"] == "submitted" and wd["total"] == sats("0.501") and len(wd["sn"]) == 14
        assert await balance(ex, alice) == (2 * BTC - sats("0.501"), sats("0.501"))
        await ex.funds.poll("btc")
        sent = await ex.funds.withdraw(int(wd["id"]))
        assert sent["state"] == "almost_done" and sent["txid"] and sent["network_fee"] > 0 and sent["raw_tx"]
        assert sent["note"] == "sent; 0 of 1 confirmations"
        assert await balance(ex, alice) == (2 * BTC - sats("0.501"), sats("0.501"))  # locked until confirmed
        regtest.wait_mempool(c, sent["txid"])
        mine_on(regtest, w, 1, caddr, c)
        await ex.funds.poll("btc")
        done = await ex.funds.withdraw(int(wd["id"]))
        assert done["state"] == "done" and done["txid"] == sent["txid"] and done["confirmations"] == 1
        assert await balance(ex, alice) == (2 * BTC - sats("0.501"), 0)
        got = c.rpc("gettransaction", done["txid"])
        assert [(d["category"], d["address"], d["amount"]) for d in got["details"]] == [("receive", dest, Decimal("0.5"))]

        # above it: waits for an admin
        big = await ex.funds.request_withdraw(bob, "btc", "1.5", dest)
        await ex.funds.poll("btc")
        big = await ex.funds.withdraw(int(big["id"]))
        assert big["state"] == "submitted" and big["note"] == "awaiting admin approval" and big["audited_at"]
        assert [x["id"] for x in await ex.funds.withdraws_waiting("btc")] == [big["id"]]
        await ex.funds.approve_withdraw(int(big["id"]), "ops@example.com")
        await ex.funds.poll("btc")
        mine_on(regtest, w, 1, caddr, c)
        await ex.funds.poll("btc")
        big = await ex.funds.withdraw(int(big["id"]))
        assert big["state"] == "done" and big["approved_by"] == "ops@example.com"
        assert c.rpc("gettransaction", big["txid"])["amount"] == Decimal("1.5")

        # the two withdrawal fees went to the house account (the trade fee to the market's house account,
        # which may be the same one)
        trade_house = getattr(ex, "market_fee_members", {}).get("btcusd", ex.fee_member)
        houses = {ex.fee_member, trade_house}
        assert sum([(await balance(ex, h))[0] for h in houses]) == 2 * sats("0.001") + BTC * 2 // 1000
        assert (await balance(ex, ex.fee_member))[0] >= 2 * sats("0.001")
        fee_rows = await ex.store.fetch("SELECT member_id, d_balance FROM ledger WHERE reason = 'withdraw_fee'")
        assert [(r["member_id"], r["d_balance"]) for r in fee_rows] == [(ex.fee_member, sats("0.001"))] * 2
        await books_balance(ex)
        rec = await ex.funds.reconcile("btc")
        assert rec["ok"] and rec["difference"] == 0 and rec["unknown_fee_count"] == 0, rec
        assert rec["hot_wallet"] + rec["network_fees"] == rec["members_balance"] + rec["members_locked"] + rec["house"]

        # more than the hot wallet holds (coins credited by an admin have no coins behind them): waits
        carol = await ex.create_member("carol@example.com")
        await ex.deposit(carol, "btc", "10")
        wait = await ex.funds.request_withdraw(carol, "btc", "5", dest)
        await ex.funds.approve_withdraw(int(wait["id"]))
        await ex.funds.poll("btc")
        wait = await ex.funds.withdraw(int(wait["id"]))
        assert wait["state"] == "accepted" and wait["note"] == "waiting to be sent" and "hot wallet has" in wait["admin_note"]
        hot = {h["currency"]: h for h in await ex.funds.hot_wallets()}["btc"]
        assert hot["status"] == "ok" and hot["balance"] < 5 * BTC and hot["pending_withdrawals"] == 5 * BTC
        topup = c.rpc("sendtoaddress", w.rpc("getnewaddress"), "6")  # the operator refills the hot wallet
        regtest.wait_mempool(w, topup)
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        mine_on(regtest, w, 1, caddr, c)
        await ex.funds.poll("btc")
        wait = await ex.funds.withdraw(int(wait["id"]))
        assert wait["state"] == "done"
        await books_balance(ex)
        rec = await ex.funds.reconcile("btc")
        # the top-up and the admin credit each have their line: nothing is left unexplained
        assert rec["ok"] and rec["unowned"] == 6 * BTC and rec["admin_credits"] == 10 * BTC, rec
    finally:
        await ex.stop()


async def snapshot(ex: Exchange) -> tuple[Any, ...]:
    accounts = [tuple(r) for r in await ex.store.fetch("SELECT * FROM accounts ORDER BY member_id, currency")]
    ledger = await ex.store.fetchval("SELECT COUNT(*) FROM ledger")
    withdraws = await ex.store.fetchval("SELECT COUNT(*) FROM withdraws")
    return accounts, ledger, withdraws


async def test_bad_withdrawals_are_refused_and_nothing_stays_locked(regtest: Regtest, tmp_path: Path) -> None:
    w, c, caddr = customer(regtest)
    ex = await start(tmp_path, {"btc": coin_wallet(w, confirmations=1, min_withdraw="0.01", max_withdraw="4",
                                                   auto_approve="0")})
    try:
        alice = await ex.create_member("alice@example.com")
        addr = (await ex.funds.deposit_address(alice, "btc"))["address"]
        regtest.wait_mempool(w, c.rpc("sendtoaddress", addr, "3"))
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        dest = c.rpc("getnewaddress")
        before = await snapshot(ex)
        cases: list[tuple[str, str, type[ExchangeError], str]] = [
            ("1", "not-an-address", InvalidParameter, "not a valid BTC address"),
            ("1", dest[:-1] + ("x" if dest[-1] != "x" else "y"), InvalidParameter, "not a valid BTC address"),  # checksum
            ("1", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", InvalidParameter, "not a valid BTC address"),  # another network
            ("1", addr, InvalidParameter, "belongs to this exchange"),  # our own (a member's deposit address)
            ("1", w.rpc("getnewaddress"), InvalidParameter, "belongs to this exchange"),
            ("0.001", dest, InvalidParameter, "below the minimum"),
            ("5", dest, InvalidParameter, "above the maximum"),
            ("3", dest, WithdrawFailed, "cannot lock funds"),  # 3 + fee 0.001 > 3
            ("0.123456789", dest, InvalidParameter, "too many decimal places"),
            ("-1", dest, InvalidParameter, "positive decimal"),
            ("1e3", dest, InvalidParameter, "positive decimal"),
            ("0", dest, InvalidParameter, "greater than zero"),
        ]
        for amount, address, err, text in cases:
            with pytest.raises(err) as e:
                await ex.funds.request_withdraw(alice, "btc", amount, address)
            assert text in e.value.message, (amount, address, e.value.message)
        with pytest.raises(InvalidParameter, match="has no wallet"):
            await ex.funds.request_withdraw(alice, "ltc", "1", dest)
        assert await snapshot(ex) == before

        pending = await ex.funds.request_withdraw(alice, "btc", "1", dest)  # waits for an admin (auto_approve 0)
        await ex.funds.poll("btc")
        w.kill()  # the daemon goes away
        await ex.funds.poll("btc")
        hot = {h["currency"]: h for h in await ex.funds.hot_wallets()}["btc"]
        assert hot["status"] == "unreachable" and "cannot connect" in hot["last_error"]
        assert ex.status()["wallets"]["btc"]["status"] == "unreachable"
        during = await snapshot(ex)
        with pytest.raises(WalletUnavailable, match="unavailable right now") as e:
            await ex.funds.request_withdraw(alice, "btc", "1", dest)
        assert "127.0.0.1" not in e.value.message  # the daemon's address is for staff, not members
        with pytest.raises(WalletUnavailable):
            await ex.funds.deposit_address(alice, "btc")
        assert await snapshot(ex) == during
        # what was locked before the outage is not locked forever: the member takes it back
        canceled = await ex.funds.cancel_withdraw(alice, int(pending["id"]))
        assert canceled["state"] == "canceled"
        assert await balance(ex, alice) == (3 * BTC, 0)
        with pytest.raises(WithdrawFailed, match="can no longer be canceled"):
            await ex.funds.cancel_withdraw(alice, int(pending["id"]))
        w.start()  # back, on the same port and data directory
        await ex.funds.poll("btc")
        assert ex.status()["wallets"]["btc"]["status"] == "ok"
        await books_balance(ex)
    finally:
        await ex.stop()


@pytest.mark.parametrize("point", ["after_build", "after_send"])
async def test_killed_around_the_broadcast_the_restart_never_pays_twice(
        regtest: Regtest, tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    """The node process dies (SIGKILL, by a test-only fault point) after the payment's bytes are
    stored but before they are broadcast, or after the broadcast but before it is recorded; after a
    restart the same bytes are broadcast (again), followed to their confirmation, paid once."""
    import aiohttp

    from node.store import open_store
    from tests.apiclient import ApiClient
    from tests.nodeproc import NodeProcess, cli, write_config

    w, c, caddr = customer(regtest)
    db = tmp_path / "exchange.db"
    config = write_config(tmp_path, f"sqlite:///{db}", free_port, toml_wallets({"btc": coin_wallet(w, confirmations=1)})
                          + "\n[security]  # paid at once: the address hold and mailed confirmation are not tested here\n"
                            "withdraw_hold_hours = 0\nwithdraw_confirmation = false\n")
    key_file = tmp_path / "secret.key"
    cli(config, "member", "create", "alice@example.com")
    keys = dict(line.split("=", 1) for line in cli(config, "apikey", "create", "alice@example.com",
                                                   key_file=key_file).strip().splitlines())
    monkeypatch.setenv("EXCHANGE_WALLET_FAULT", point)
    node = NodeProcess(config, free_port, key_file, tmp_path / "node.log")
    api = ApiClient(node.base, keys["access_key"], keys["secret_key"])
    try:
        await node.start()
        addr = (await api.get("/deposit_address", currency="btc"))["address"]
        regtest.wait_mempool(w, c.rpc("sendtoaddress", addr, "2"))
        mine_on(regtest, c, 1, caddr, w)

        async def credited() -> bool:
            return [d["state"] for d in await api.get("/deposits", currency="btc")] == ["accepted"]

        await until(credited, what="the deposit to be credited")
        dest = c.rpc("getnewaddress")
        try:
            await api.post("/withdraws", currency="btc", amount="0.7", address=dest)
        except (aiohttp.ClientError, ConnectionError):
            pass  # the node may die before its answer is out: the withdrawal is in the store either way
        assert node.proc is not None
        assert node.proc.wait(30) == -9  # killed itself at the fault point
        sends = [t for t in w.rpc("listtransactions", "*", 100, 0, False) if t["category"] == "send"]
        assert [t["amount"] for t in sends] == ([Decimal("-0.7")] if point == "after_send" else [])
        store = await open_store(f"sqlite:///{db}")
        try:
            row = await store.fetchrow("SELECT * FROM withdraws")
            assert row is not None and row["state"] == "processing" and row["txid"] and row["raw_tx"]
            assert point == "after_build" or sends[0]["txid"] == row["txid"]
            txid = row["txid"]
        finally:
            await store.close()

        monkeypatch.delenv("EXCHANGE_WALLET_FAULT")
        await node.start()

        async def state(want: str) -> Any:
            ws = await api.get("/withdraws", currency="btc")
            return ws[0] if ws and ws[0]["state"] == want else None

        await until(lambda: state("almost_done"), what="the payment to be broadcast and recorded")
        regtest.wait_mempool(c, txid)
        mine_on(regtest, c, 1, caddr, w)
        wd = await until(lambda: state("done"), what="the payment to confirm")
        assert wd["txid"] == txid and wd["amount"] == "0.7" and wd["fee"] == "0.001"
        assert len(wd["sn"]) == 14 and wd["sn"].endswith(str(wd["id"]).rjust(4, "0"))
        await until(lambda: api.get("/withdraw", id=str(wd["id"])), what="one more call")
        sends = [t for t in w.rpc("listtransactions", "*", 100, 0, False) if t["category"] == "send"]
        assert len(sends) == 1  # paid once
        mine_on(regtest, w, 1, caddr, c)
        assert c.rpc("getreceivedbyaddress", dest) == Decimal("0.7")
    finally:
        await api.close()
        node.terminate()
    store = await open_store(f"sqlite:///{db}")
    try:
        from node.config import load_config

        report = await audit(store, load_config(config).markets)
        assert report.ok, report.lines()
    finally:
        await store.close()


@pytest.mark.postgres
async def test_two_coins_at_once_from_two_nodes(regtest: Regtest, tmp_path: Path) -> None:
    """A cluster of two nodes on one PostgreSQL: node n1 runs the BTC wallet, n2 the LTC wallet
    (a second chain, standing in for Litecoin); either node takes requests for either coin."""
    from tests.conftest import create_pg_database, drop_pg_database, need_service

    need_service("PostgreSQL", "127.0.0.1", 5432)
    w1, c1, c1addr = customer(regtest)
    w2 = regtest.node("w2")
    c2 = regtest.node("c2", connect=w2)
    c2addr = c2.rpc("getnewaddress")
    c2.rpc("generatetoaddress", 110, c2addr)
    regtest.sync(w2, c2)
    data = config_data("postgresql://unused/x", {"btc": coin_wallet(w1, node="n1"), "ltc": coin_wallet(w2, node="n2", withdraw_fee="0.01", auto_approve="100")})
    data["nodes"] = {"n1": {"port": 0, "markets": ["btcusd", "ltcbtc"]}, "n2": {"port": 0, "markets": ["dogebtc"]}}
    ex1 = ex2 = None
    url = await create_pg_database()
    try:
        data["exchange"]["database"] = url
        cfg = parse_config(data, "test")
        ex1 = await start_exchange(cfg, "n1")
        ex2 = await start_exchange(cfg, "n2")
        assert list(ex1.funds.actors) == ["btc"] and list(ex2.funds.actors) == ["ltc"]
        alice = await ex1.create_member("alice@example.com")
        btc_addr = (await ex2.funds.deposit_address(alice, "btc"))["address"]  # asked on n2, made by the btc daemon
        ltc_addr = (await ex1.funds.deposit_address(alice, "ltc"))["address"]
        regtest.wait_mempool(w1, c1.rpc("sendtoaddress", btc_addr, "1.25"))
        regtest.wait_mempool(w2, c2.rpc("sendtoaddress", ltc_addr, "40"))
        mine_on(regtest, c1, 1, c1addr, w1)
        mine_on(regtest, c2, 1, c2addr, w2)
        await ex1.funds.poll("btc")
        await ex2.funds.poll("ltc")
        assert await balance(ex1, alice, "btc") == (sats("1.25"), 0)
        assert await balance(ex1, alice, "ltc") == (40 * BTC, 0)
        # each withdrawal asked on the node that does not run its wallet
        b = await ex2.funds.request_withdraw(alice, "btc", "0.25", c1.rpc("getnewaddress"))
        lt = await ex1.funds.request_withdraw(alice, "ltc", "15", c2.rpc("getnewaddress"))
        await ex1.funds.poll("btc")
        await ex2.funds.poll("ltc")
        mine_on(regtest, w1, 1, c1addr, c1)
        mine_on(regtest, w2, 1, c2addr, c2)
        await ex1.funds.poll("btc")
        await ex2.funds.poll("ltc")
        b, lt = await ex1.funds.withdraw(int(b["id"])), await ex1.funds.withdraw(int(lt["id"]))
        assert (b["state"], lt["state"]) == ("done", "done")
        assert w1.rpc("gettransaction", b["txid"])["amount"] == Decimal("-0.25")
        assert w2.rpc("gettransaction", lt["txid"])["amount"] == Decimal("-15")
        assert await balance(ex1, alice, "btc") == (sats("1.25") - sats("0.251"), 0)
        assert await balance(ex1, alice, "ltc") == (40 * BTC - 15 * BTC - BTC // 100, 0)
        await books_balance(ex1)
        for ex, code in ((ex1, "btc"), (ex2, "ltc")):
            rec = await ex.funds.reconcile(code)
            assert rec["ok"], rec
        hot = {h["currency"]: h for h in await ex1.funds.hot_wallets()}
        assert (hot["btc"]["node"], hot["ltc"]["node"]) == ("n1", "n2")
        assert hot["ltc"]["status"] == "ok"  # n2's wallet, seen from n1 through the store
    finally:
        for node_ex in (ex2, ex1):
            if node_ex is not None:
                await node_ex.stop()
        await drop_pg_database(url)
