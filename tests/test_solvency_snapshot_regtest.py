"""Proof of assets against a real bitcoind in regtest mode (tests/regtest.py runs the daemons).

`W` is the exchange's wallet, `C` a customer's node that holds no key of W's. W's addresses are paid
from C; the snapshot then has every funded W address sign a statement naming the snapshot. C (an
outsider) must accept every signature with `verifymessage`, and the asset sum must equal W's balance.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from node.bootstrap import start_exchange
from node.config import parse_config
from node.solvency import maxwell
from node.solvency.service import SolvencyService
from tests.regtest import Regtest, coin_wallet, config_data, network, set_credentials

pytestmark = pytest.mark.slow
BTC = 10**8


@pytest.fixture
def regtest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Regtest]:
    set_credentials(monkeypatch)
    with network(tmp_path / "regtest") as net:
        yield net


async def test_coin_assets_are_signed_by_the_wallet_and_sum_to_its_balance(regtest: Regtest, tmp_path: Path) -> None:
    w = regtest.node("w")
    c = regtest.node("c", connect=w)
    caddr = c.rpc("getnewaddress")
    c.rpc("generatetoaddress", 101, caddr)
    regtest.sync(w, c)
    addrs = [w.rpc("getnewaddress") for _ in range(3)]
    for address, amount in zip([*addrs, addrs[0]], ["1.5", "0.25", "2", "0.125"], strict=True):
        c.rpc("sendtoaddress", address, Decimal(amount))
    c.rpc("generatetoaddress", 1, caddr)
    regtest.sync(w, c)
    late = c.rpc("sendtoaddress", addrs[1], Decimal("5"))  # unconfirmed at the snapshot: not a proven asset
    regtest.wait_mempool(w, late)

    config = parse_config(config_data(f"sqlite:///{tmp_path}/x.db", {"btc": coin_wallet(w)}), "test")
    ex = await start_exchange(config, actors=False)
    svc = SolvencyService(ex)
    try:
        for i, amount in enumerate(("3", "0.5")):
            await ex.deposit(await ex.create_member(f"m{i}@example.com"), "btc", amount)
        info = await svc.take_snapshot()
        assert info.assets == {"btc": "proven", "ltc": "no_wallet", "doge": "no_wallet", "usd": "missing"}
        btc = next(e for e in (await svc.assets())["currencies"] if e["currency"] == "btc")
        got = {a["address"]: a["balance"] for a in btc["addresses"]}
        assert got == {addrs[0]: "1.625", addrs[1]: "0.25", addrs[2]: "2"}
        for a in btc["addresses"]:
            assert f"snapshot {info.name} " in a["message"] and a["address"] in a["message"]
            assert c.rpc("verifymessage", a["address"], a["signature"], a["message"]) is True
            assert c.rpc("verifymessage", a["address"], a["signature"], a["message"] + " ") is False
        wallet = int(Decimal(w.rpc("getbalance", "*", 1)) * BTC)
        assert maxwell.to_units(btc["assets"], 8) == wallet == int(Decimal("3.875") * BTC)
        assert btc["liabilities"] == "3.5" and btc["ratio"] == "1.10714285" and btc["solvent"] is True
        # the same signatures are re-collected on demand (e.g. after a wallet was down at snapshot time)
        c.rpc("generatetoaddress", 1, caddr)
        regtest.sync(w, c)
        assert await svc.collect_assets(info.id) == {"btc": "proven", "ltc": "no_wallet", "doge": "no_wallet"}
        btc = next(e for e in (await svc.assets())["currencies"] if e["currency"] == "btc")
        assert btc["assets"] == "8.875"
    finally:
        await svc.close()
        await ex.stop()
