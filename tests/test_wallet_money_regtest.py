"""Every coin accounted for, against real regtest daemons: re-orgs that double-spend deposits, a
payment delayed past every timeout, a dropped payment, a block reward paid to a deposit address,
reconciliation with a cold wallet, and a withdrawal of exactly the hot wallet's balance.

As in test_wallet_regtest.py, `W` is the exchange's hot wallet and `C` a customer; `M` is a miner
that leaves the network to build a longer chain of its own, the way a double-spender would.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from node.exchange import Exchange, OrderInput
from node.wallet.records import WithdrawFailed
from tests.nodeproc import cli, write_config
from tests.regtest import Bitcoind, DelayProxy, Regtest, coin_wallet, network, set_credentials, toml_wallets
from tests.test_wallet_regtest import BTC, balance, books_balance, customer, mine_on, sats, start

pytestmark = pytest.mark.slow


@pytest.fixture
def regtest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Regtest]:
    set_credentials(monkeypatch)
    with network(tmp_path / "regtest") as net:
        yield net


def coin(c: Bitcoind) -> dict[str, Any]:
    """A mature unspent output of C's to spend by hand."""
    return next(u for u in c.rpc("listunspent", 101) if u["amount"] >= 10)


def conflicting_pair(c: Bitcoind, to: str, amount: str) -> tuple[str, str]:
    """Two signed transactions spending the same coin of C's: one pays `to`, the other pays C back."""
    u = coin(c)
    fee = Decimal("0.001")
    inp = [{"txid": u["txid"], "vout": u["vout"]}]
    pay = c.rpc("createrawtransaction", inp, {to: Decimal(amount), c.rpc("getnewaddress"): u["amount"] - Decimal(amount) - fee})
    back = c.rpc("createrawtransaction", inp, {c.rpc("getnewaddress"): u["amount"] - fee})
    return c.rpc("signrawtransaction", pay)["hex"], c.rpc("signrawtransaction", back)["hex"]


async def deposited(net: Regtest, ex: Exchange, w: Bitcoind, c: Bitcoind, caddr: str, amount: str) -> int:
    """Alice, with `amount` BTC paid from C to her deposit address and credited (1 confirmation)."""
    alice = await ex.create_member("alice@example.com")
    addr = (await ex.funds.deposit_address(alice, "btc"))["address"]
    net.wait_mempool(w, c.rpc("sendtoaddress", addr, amount))
    mine_on(net, c, 1, caddr, w)
    await ex.funds.poll("btc")
    return alice


def leave(m: Bitcoind) -> None:
    m.rpc("setnetworkactive", False)


def rejoin(net: Regtest, m: Bitcoind, c: Bitcoind, *others: Bitcoind) -> None:
    m.rpc("setnetworkactive", True)
    m.rpc("addnode", f"127.0.0.1:{c.port}", "onetry")
    net.sync(m, c, *others, timeout=60)


async def test_reorgs_that_double_spend_deposits_before_and_after_credit(regtest: Regtest, tmp_path: Path) -> None:
    """A deposit credited at 2 confirmations and one at 1 confirmation (not yet credited) are both
    double-spent by a longer chain: the first is taken back as far as the member's balance goes, the
    rest frozen and alerted; the second ends `failed`. The books still balance and reconcile."""
    w, c, caddr = customer(regtest)
    m = regtest.node("m", connect=c)
    regtest.sync(w, c, m)
    ex = await start(tmp_path, {"btc": coin_wallet(w, confirmations=2, reorg_watch_blocks=10)})
    try:
        alice = await ex.create_member("alice@example.com")
        bob = await ex.create_member("bob@example.com")
        a_addr = (await ex.funds.deposit_address(alice, "btc"))["address"]
        b_addr = (await ex.funds.deposit_address(bob, "btc"))["address"]
        a_pay, a_back = conflicting_pair(c, a_addr, "0.7")
        leave(m)  # from here on M builds its own chain
        a_txid = c.rpc("sendrawtransaction", a_pay)
        regtest.wait_mempool(w, a_txid)
        mine_on(regtest, c, 1, caddr, w)
        b_pay, b_back = conflicting_pair(c, b_addr, "0.4")
        b_txid = c.rpc("sendrawtransaction", b_pay)
        regtest.wait_mempool(w, b_txid)
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        assert await balance(ex, alice) == (sats("0.7"), 0)
        assert (await ex.funds.deposits_of(bob))[0]["state"] == "submitted"
        await ex.deposit(bob, "usd", "100000")
        await ex.submit_order(alice, OrderInput("btcusd", "sell", "0.5", "30000"))  # 0.5 of it locked in an order
        await ex.quiesce()
        assert await balance(ex, alice) == (sats("0.2"), sats("0.5"))

        for raw in (a_back, b_back):  # the double-spends, mined on M's longer chain
            m.rpc("sendrawtransaction", raw)
        m.rpc("generatetoaddress", 4, m.rpc("getnewaddress"))
        rejoin(regtest, m, c, w)
        assert w.rpc("gettransaction", a_txid)["confirmations"] < 0  # conflicted: listsinceblock leaves it out
        await ex.funds.poll("btc")  # caught within one poll

        a_dep = (await ex.funds.deposits_of(alice))[0]
        assert a_dep["state"] == "reverted" and a_dep["reversed"] == sats("0.2")
        assert "double-spent" in a_dep["note"] and "0.5 BTC is still owed" in a_dep["note"]
        assert await balance(ex, alice) == (0, sats("0.5"))  # the order's lock stays for the admin to decide
        assert (await ex.funds.deposits_of(bob, "btc"))[0]["state"] == "failed"
        assert (await balance(ex, bob, "btc")) == (0, 0)
        alerts = await ex.funds.alerts()
        assert [a["kind"] for a in alerts] == ["reorg"] and "shortfall 0.5 BTC" in alerts[0]["message"]
        holds = await ex.funds.freezes()
        assert [(h["member_id"], h["shortfall"]) for h in holds] == [(alice, sats("0.5"))]
        with pytest.raises(WithdrawFailed, match="on hold: deposit .* was reversed"):
            await ex.funds.request_withdraw(alice, "btc", "0.01", c.rpc("getnewaddress"))
        await books_balance(ex)
        rec = await ex.funds.reconcile("btc")
        assert rec["ok"] and rec["reorg_shortfall"] == sats("0.5") and rec["hot_wallet"] == 0, rec
        await ex.funds.poll("btc")
        assert len(await ex.funds.alerts()) == 1 and (await balance(ex, alice)) == (0, sats("0.5"))  # once, not per poll
    finally:
        await ex.stop()


async def test_a_payment_delayed_past_every_timeout_is_made_once(regtest: Regtest, tmp_path: Path) -> None:
    """sendrawtransaction reaches the daemon long after our timeout, twice (the first try and the
    retry): both carry the same signed bytes, so the network has one payment."""
    w, c, caddr = customer(regtest)
    proxy = DelayProxy(w.url)
    await proxy.start()
    ex = await start(tmp_path, {"btc": coin_wallet(w, confirmations=1, rpc_timeout_ms=1000) | {"rpc_url": proxy.url}})
    try:
        alice = await deposited(regtest, ex, w, c, caddr, "2")
        proxy.methods, proxy.delay = {"sendrawtransaction"}, 4.0
        dest = c.rpc("getnewaddress")
        wd = await ex.funds.request_withdraw(alice, "btc", "0.7", dest)
        await ex.funds.poll("btc")  # built, stored, broadcast: no answer in time
        await ex.funds.poll("btc")  # not in the wallet yet: the same bytes again, again too late
        row = await ex.funds.withdraw(int(wd["id"]))
        assert row["state"] == "processing" and row["attempts"] == 1 and "outcome unknown" in row["admin_note"]
        # the ticker may have tried once more meanwhile: every try carries the same bytes, one build only
        assert proxy.seen.count("sendrawtransaction") >= 2 and proxy.seen.count("fundrawtransaction") == 1
        await proxy.settle()  # both late requests have now reached the daemon
        proxy.delay = 0
        await ex.funds.poll("btc")
        mine_on(regtest, w, 1, caddr, c)
        await ex.funds.poll("btc")
        row = await ex.funds.withdraw(int(wd["id"]))
        assert row["state"] == "done"
        sends = [t for t in w.rpc("listtransactions", "*", 100, 0, False) if t["category"] == "send"]
        assert [(t["txid"], t["amount"]) for t in sends] == [(row["txid"], Decimal("-0.7"))]  # one payment
        assert c.rpc("getreceivedbyaddress", dest) == Decimal("0.7")
        await books_balance(ex)
        assert (await ex.funds.reconcile("btc"))["ok"]
    finally:
        await ex.stop()
        await proxy.close()


async def test_a_dropped_payment_is_noticed_and_broadcast_again(regtest: Regtest, tmp_path: Path) -> None:
    """The daemon forgets a payment (restarted with its wallet's transactions zapped and no
    mempool): the exchange notices, alerts and broadcasts the same bytes again; paid once."""
    w, c, caddr = customer(regtest)
    ex = await start(tmp_path, {"btc": coin_wallet(w, confirmations=1)})
    try:
        alice = await deposited(regtest, ex, w, c, caddr, "2")
        c.rpc("setnetworkactive", False)  # the payment stays with W alone
        dest = c.rpc("getnewaddress")
        wd = await ex.funds.request_withdraw(alice, "btc", "0.7", dest)
        await ex.funds.poll("btc")
        sent = await ex.funds.withdraw(int(wd["id"]))
        assert sent["state"] == "almost_done" and sent["txid"] in w.rpc("getrawmempool")
        w.stop()
        w.start(extra=("-zapwallettxes=2", "-persistmempool=0"))
        assert sent["txid"] not in w.rpc("getrawmempool")
        await ex.funds.poll("btc")
        alerts = await ex.funds.alerts()
        assert [a["kind"] for a in alerts] == ["payment_dropped"] and sent["txid"] in alerts[0]["message"]
        assert sent["txid"] in w.rpc("getrawmempool")  # the same bytes, broadcast again
        c.rpc("setnetworkactive", True)
        c.rpc("addnode", f"127.0.0.1:{w.port}", "onetry")
        regtest.wait_connected(c)
        mine_on(regtest, w, 1, caddr, c)
        await ex.funds.poll("btc")
        done = await ex.funds.withdraw(int(wd["id"]))
        assert done["state"] == "done" and done["txid"] == sent["txid"] and done["attempts"] == 1
        assert c.rpc("getreceivedbyaddress", dest) == Decimal("0.7")
        await books_balance(ex)
    finally:
        await ex.stop()


async def test_a_block_reward_to_a_deposit_address_is_credited_once_mature(regtest: Regtest, tmp_path: Path) -> None:
    w, c, caddr = customer(regtest)
    ex = await start(tmp_path, {"btc": coin_wallet(w, confirmations=1, reorg_watch_blocks=5, min_deposit="0.001")})
    try:
        alice = await ex.create_member("alice@example.com")
        addr = (await ex.funds.deposit_address(alice, "btc"))["address"]
        mine_on(regtest, c, 1, addr, w)  # a block reward paid to the deposit address
        await ex.funds.poll("btc")
        dep = (await ex.funds.deposits_of(alice))[0]
        assert dep["state"] == "submitted" and dep["coinbase"] == 1 and "mature" in dep["note"]
        reward = int(dep["amount"])
        mine_on(regtest, c, 50, caddr, w)
        await ex.funds.poll("btc")
        assert (await ex.funds.deposits_of(alice))[0]["state"] == "submitted"  # 51 deep: not mature yet
        assert await balance(ex, alice) == (0, 0)
        mine_on(regtest, c, 51, caddr, w)
        await ex.funds.poll("btc")
        dep = (await ex.funds.deposits_of(alice))[0]
        assert dep["state"] == "accepted" and await balance(ex, alice) == (reward, 0)
        # a deposit under the minimum is recorded but not credited
        small = c.rpc("sendtoaddress", (await ex.funds.deposit_address(alice, "btc"))["address"], "0.0005")
        regtest.wait_mempool(w, small)
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        dust = await ex.funds.deposit_by_txid(alice, small)
        assert dust is not None and dust["state"] == "skipped" and "below the minimum" in dust["note"]
        assert await balance(ex, alice) == (reward, 0)
        await books_balance(ex)
        rec = await ex.funds.reconcile("btc")
        assert rec["ok"] and rec["below_minimum"] == sats("0.0005"), rec
    finally:
        await ex.stop()


async def test_reconciliation_names_every_difference_with_a_cold_wallet(regtest: Regtest, tmp_path: Path) -> None:
    """Coins moved to a watched cold address and to a declared (paper) one, a top-up and a loss:
    each on its own line; the loss is the difference and is not hidden by the windfall."""
    w, c, caddr = customer(regtest)
    cold = c.rpc("getnewaddress")  # the cold wallet's key is not in the hot wallet: watched only
    paper = c.rpc("getnewaddress")  # a cold holding the daemon does not watch: declared in the configuration
    ex = await start(tmp_path, {"btc": coin_wallet(w, confirmations=1, cold_addresses=[cold], cold_balance="1.5")})
    try:
        await deposited(regtest, ex, w, c, caddr, "5")
        # the operator moves 2 BTC to the watched cold address and 1.5 to the paper wallet
        moves = [w.rpc("sendtoaddress", cold, "2"), w.rpc("sendtoaddress", paper, "1.5")]
        for t in moves:
            regtest.wait_mempool(c, t)
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        fees = sum(sats(-w.rpc("gettransaction", t)["fee"]) for t in moves)
        rec = await ex.funds.reconciliation("btc")
        assert rec.amount("cold_watched") == 2 * BTC and rec.amount("cold_declared") == sats("1.5")
        assert rec.amount("hot_wallet") == 5 * BTC - sats("3.5") - fees
        assert rec.difference == -fees, rec.lines()  # only the network fees of moves the exchange did not make
        # a top-up arrives (a windfall) and 0.7 BTC leaves the hot wallet unrecorded (a loss)
        regtest.wait_mempool(w, c.rpc("sendtoaddress", w.rpc("getnewaddress"), "25"))
        mine_on(regtest, c, 1, caddr, w)
        lost = w.rpc("sendtoaddress", c.rpc("getnewaddress"), "0.7")
        regtest.wait_mempool(c, lost)
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        rec = await ex.funds.reconciliation("btc")
        lost_fee = sats(-w.rpc("gettransaction", lost)["fee"])
        assert rec.amount("unowned") == 25 * BTC  # the windfall has its own line
        assert rec.difference == -fees - sats("0.7") - lost_fee, rec.lines()  # the loss is not hidden
        text = "\n".join(rec.lines())
        assert "receipts nobody owns" in text and "UNEXPLAINED" in text and "cold wallet (watched addresses)" in text
    finally:
        await ex.stop()


async def test_a_withdrawal_of_exactly_the_hot_balance_waits_with_a_reason(regtest: Regtest, tmp_path: Path,
                                                                          free_port: int) -> None:
    """The network fee does not fit: the member sees it waiting (no wallet figures), the admin gets
    an alert with them; after a top-up it is paid."""
    w, c, caddr = customer(regtest)
    table = coin_wallet(w, confirmations=1, withdraw_fee="0", auto_approve="10")
    ex = await start(tmp_path, {"btc": table})
    try:
        alice = await deposited(regtest, ex, w, c, caddr, "3")
        hot = sats(w.rpc("getbalance"))
        assert hot == 3 * BTC
        wd = await ex.funds.request_withdraw(alice, "btc", "3", c.rpc("getnewaddress"))
        await ex.funds.poll("btc")
        await ex.funds.poll("btc")
        row = await ex.funds.withdraw(int(wd["id"]))
        assert row["state"] == "accepted" and row["note"] == "waiting to be sent"
        assert "3.0" in row["admin_note"] and "network fee" in row["admin_note"]
        alerts = await ex.funds.alerts()
        assert [a["kind"] for a in alerts] == ["hot_wallet_low"]  # once, not at every poll
        assert [t for t in w.rpc("listtransactions", "*", 100, 0, False) if t["category"] == "send"] == []
        regtest.wait_mempool(w, c.rpc("sendtoaddress", w.rpc("getnewaddress"), "1"))  # the operator refills
        mine_on(regtest, c, 1, caddr, w)
        await ex.funds.poll("btc")
        mine_on(regtest, w, 1, caddr, c)
        await ex.funds.poll("btc")
        assert (await ex.funds.withdraw(int(wd["id"])))["state"] == "done"
        await books_balance(ex)
        assert (await ex.funds.reconcile("btc"))["ok"]
        # the same, for a person at a shell
        config = write_config(tmp_path, f"sqlite:///{tmp_path}/exchange.db", free_port, toml_wallets({"btc": table}))
        out = cli(config, "reconcile", "btc")
        assert "receipts nobody owns" in out and "every coin accounted for" in out, out
    finally:
        await ex.stop()
