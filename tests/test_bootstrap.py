"""The composition root (node/bootstrap.py): the services exist without a web app, and the
withdrawal policies it gives the funds facade hold for whoever asks for a withdrawal.

Real SQLite, a real exchange with its wallet actor; only the coin daemon is the fake of test_wallet.py.
"""

from __future__ import annotations

from pathlib import Path

from node.bootstrap import build_services, start_exchange
from node.config import Config, parse_config
from node.errors import ExchangeError
from node.wallet.funds import WithdrawPolicies
from tests.regtest import config_data
from tests.test_wallet import BANK, BTC, FAKE_BTC, FakeWallet, funded
from tests.test_wallet import fake as fake  # noqa: F401 (the fixture, under its name)

KEY = b"bootstrap-test-master-key-0123456789abcdef"


def _config(tmp_path: Path, **extra: object) -> Config:
    data = config_data(f"sqlite:///{tmp_path}/x.db", {"btc": FAKE_BTC, "usd": BANK})
    data.update(extra)
    return parse_config(data, "test")


async def test_the_services_hold_the_withdrawal_policies_without_a_web_app(tmp_path: Path, fake: FakeWallet) -> None:
    ex = await start_exchange(_config(tmp_path, admin={"withdraw_limits": {"level0": {"btc": "1"}}}))
    try:
        assert ex.funds.policies == WithdrawPolicies()  # the exchange alone: nothing but the funds is checked
        services = build_services(ex, KEY)
        p = ex.funds.policies
        assert p.second_factor == services.security.withdraw_code and p.address_book is services.security.addresses
        assert p.limit == services.kyc.check_withdraw
        ann = await funded(ex, fake, "ann@example.com", 3 * BTC)
        # the KYC limit of level 0 (1 BTC a day), from the store, with no page or API in between
        try:
            await ex.funds.request_withdraw(ann, "btc", "1.5", "ext-1")
            raise AssertionError("a withdrawal over the KYC limit was accepted")
        except ExchangeError as e:
            assert "limit" in e.message
        # the address book: a new address is held (and waits for the e-mail confirmation)
        w = await ex.funds.request_withdraw(ann, "btc", "0.5", "ext-1")
        assert w["state"] == "submitting" and "on hold until" in w["note"]
        assert [a["address"] for a in await services.security.addresses.list(ann, "btc")] == ["ext-1"]
    finally:
        await ex.stop()


async def test_without_the_services_a_withdrawal_meets_the_funds_checks_only(tmp_path: Path, fake: FakeWallet) -> None:
    """What the policies above add: the same request, on an exchange whose services were never built."""
    ex = await start_exchange(_config(tmp_path, admin={"withdraw_limits": {"level0": {"btc": "1"}}}))
    try:
        ann = await funded(ex, fake, "ann@example.com", 3 * BTC)
        w = await ex.funds.request_withdraw(ann, "btc", "1.5", "ext-1")
        assert w["state"] == "submitted"
    finally:
        await ex.stop()
