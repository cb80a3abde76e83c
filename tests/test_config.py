"""cluster.toml is validated before anything starts (node.config).

First the shipped file, which must load as is; then a table of broken configurations, each of which
must stop start-up with a ConfigError whose message begins with the path of the offending field, so
an operator knows exactly which line to fix.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from node.config import FEE_SCALE, ConfigError, load_config, parse_config
from node.wallet import check_wallets

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_TOML = ROOT / "cluster.toml"


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's shell must not change what these tests see."""
    monkeypatch.delenv("EXCHANGE_DATABASE_URL", raising=False)
    monkeypatch.delenv("EXCHANGE_RABBITMQ_URL", raising=False)


DELETE = object()  # for with_change: remove the field


def valid() -> dict[str, Any]:
    """A small, correct configuration: two markets run by one node."""
    return {
        "exchange": {"name": "Test", "database": "sqlite:///tmp/test.db"},
        "currencies": {
            "btc": {"name": "Bitcoin", "precision": 8, "kind": "coin"},
            "ltc": {"name": "Litecoin", "precision": 8, "kind": "coin"},
            "usd": {"name": "US Dollar", "precision": 6, "kind": "fiat"},
        },
        "markets": {
            "btcusd": {
                "base": "btc",
                "quote": "usd",
                "price_precision": 2,
                "volume_precision": 4,
                "maker_fee": "0.001",
                "taker_fee": "0.002",
                "min_volume": "0.0001",
            },
            "ltcbtc": {"base": "ltc", "quote": "btc", "price_precision": 6, "volume_precision": 2},
        },
        "nodes": {"main": {"host": "127.0.0.1", "port": 8080, "markets": ["btcusd", "ltcbtc"]}},
    }


def with_change(path: str, value: Any) -> dict[str, Any]:
    """valid() with the value at a dotted path replaced (or, with DELETE, removed)."""
    data = copy.deepcopy(valid())
    *parents, last = path.split(".")
    table = data
    for key in parents:
        table = table[key]
    if value is DELETE:
        del table[last]
    else:
        table[last] = value
    return data


# -- the shipped cluster.toml ---------------------------------------------------------------------


def test_default_cluster_toml_loads() -> None:
    cfg = load_config(CLUSTER_TOML)
    assert cfg.source == str(CLUSTER_TOML)
    assert cfg.database.startswith("sqlite://")
    assert cfg.rabbitmq is None
    assert cfg.sqlite_synchronous == "full"
    assert set(cfg.currencies) == {"btc", "ltc", "doge", "usd"}
    assert list(cfg.markets) == ["btcusd", "ltcbtc", "dogebtc"]
    assert list(cfg.nodes) == ["main"]
    assert cfg.node(None).markets == ("btcusd", "ltcbtc", "dogebtc")
    assert all(cfg.owner_of(m).name == "main" for m in cfg.markets)


def test_default_cluster_toml_unit_factors() -> None:
    """A volume lot and a price tick × lot must be whole numbers of currency units."""
    m = load_config(CLUSTER_TOML).markets
    # btcusd: volume 4 decimals of btc (8), price 2 decimals, usd 6 = 2 + 4
    assert (m["btcusd"].base_factor, m["btcusd"].quote_factor) == (10**4, 1)
    # ltcbtc: volume 2 decimals of ltc (8), price 6 + volume 2 = btc's 8
    assert (m["ltcbtc"].base_factor, m["ltcbtc"].quote_factor) == (10**6, 1)
    # dogebtc: whole dogecoins, price 8 decimals of btc
    assert (m["dogebtc"].base_factor, m["dogebtc"].quote_factor) == (10**8, 1)
    assert m["btcusd"].base_units(3) == 30_000
    assert m["btcusd"].quote_units(7) == 7


def test_default_cluster_toml_fees_volumes_and_actors() -> None:
    cfg = load_config(CLUSTER_TOML)
    btcusd = cfg.markets["btcusd"]
    assert btcusd.name == "BTC/USD"
    assert (btcusd.maker_fee, btcusd.taker_fee) == (FEE_SCALE // 1000, 2 * FEE_SCALE // 1000)
    assert btcusd.self_trade == "cancel_taker"
    assert [cfg.markets[m].min_volume for m in cfg.markets] == [1, 1, 1]  # one lot each
    assert btcusd.max_volume == 0  # no limit
    assert (cfg.actors.mailbox_size, cfg.actors.max_batch, cfg.actors.ask_timeout) == (10_000, 1_000, 10.0)


def test_defaults_fill_optional_fields() -> None:
    cfg = parse_config(valid())
    ltcbtc = cfg.markets["ltcbtc"]
    assert (ltcbtc.maker_fee, ltcbtc.taker_fee) == (0, 0)
    assert ltcbtc.min_volume == 1  # the smallest lot, "0.01"
    assert ltcbtc.self_trade == "cancel_taker"
    assert cfg.actors.ask_timeout == 10.0


def test_unknown_node_name_is_refused() -> None:
    cfg = parse_config(valid(), "x.toml")
    with pytest.raises(ConfigError, match=r"--node 'other': no such node in x.toml \(have: main\)"):
        cfg.node("other")


# -- broken configurations ------------------------------------------------------------------------

BAD_CONFIGS = [
    # (what is wrong, the configuration, the field the message must name)
    ("unknown currency", with_change("markets.btcusd.base", "eth"), "markets.btcusd.base"),
    ("precision above 18", with_change("currencies.btc.precision", 19), "currencies.btc.precision"),
    ("negative precision", with_change("currencies.btc.precision", -1), "currencies.btc.precision"),
    (
        "price precision above 18",
        with_change("markets.btcusd.price_precision", 19),
        "markets.btcusd.price_precision",
    ),
    ("float precision", with_change("currencies.btc.precision", 8.0), "currencies.btc.precision"),
    ("string precision", with_change("currencies.btc.precision", "8"), "currencies.btc.precision"),
    (
        "boolean precision",
        with_change("markets.btcusd.price_precision", True),
        "markets.btcusd.price_precision",
    ),
    ("boolean port", with_change("nodes.main.port", False), "nodes.main.port"),
    ("missing precision", with_change("currencies.btc.precision", DELETE), "currencies.btc.precision"),
    (
        "price × volume finer than the quote currency",
        with_change("markets.btcusd.price_precision", 3),  # 3 + 4 > usd's 6
        "markets.btcusd.price_precision",
    ),
    (
        "volume finer than the base currency",
        with_change("markets.ltcbtc.volume_precision", 9),  # ltc has 8
        "markets.ltcbtc.volume_precision",
    ),
    ("market id is not base+quote", with_change("markets.btcusd.quote", "ltc"), "markets.btcusd"),
    ("base equals quote", with_change("markets.btcusd.quote", "btc"), "markets.btcusd.quote"),
    ("fee of exactly 10%", with_change("markets.btcusd.taker_fee", "0.1"), "markets.btcusd.taker_fee"),
    ("fee above 10%", with_change("markets.btcusd.maker_fee", "0.5"), "markets.btcusd.maker_fee"),
    (
        "fee with 9 decimals",
        with_change("markets.btcusd.maker_fee", "0.000000001"),
        "markets.btcusd.maker_fee",
    ),
    ("fee as a number", with_change("markets.btcusd.maker_fee", 0.001), "markets.btcusd.maker_fee"),
    ("negative fee", with_change("markets.btcusd.maker_fee", "-0.001"), "markets.btcusd.maker_fee"),
    (
        "min volume finer than a lot",
        with_change("markets.btcusd.min_volume", "0.00001"),
        "markets.btcusd.min_volume",
    ),
    ("zero min volume", with_change("markets.btcusd.min_volume", "0"), "markets.btcusd.min_volume"),
    (
        "bad self_trade mode",
        with_change("markets.btcusd.self_trade", "cancel_both"),
        "markets.btcusd.self_trade",
    ),
    ("bad currency kind", with_change("currencies.usd.kind", "stock"), "currencies.usd.kind"),
    ("bad currency code", with_change("currencies.BTC", {"precision": 8}), "currencies.BTC"),
    ("currency not a table", with_change("currencies.btc", 8), "currencies.btc"),
    ("no currencies", with_change("currencies", {}), "currencies"),
    ("currencies missing", with_change("currencies", DELETE), "currencies"),
    ("no markets", with_change("markets", {}), "markets"),
    ("exchange not a table", with_change("exchange", "x"), "exchange"),
    ("bad database URL scheme", with_change("exchange.database", "mysql://db/x"), "exchange.database"),
    (
        "bad sqlite_synchronous",
        with_change("exchange.sqlite_synchronous", "off"),
        "exchange.sqlite_synchronous",
    ),
    (
        "unknown market in a node",
        with_change("nodes.main.markets", ["btcusd", "ltcbtc", "ethbtc"]),
        "nodes.main.markets",
    ),
    ("node markets not a list", with_change("nodes.main.markets", "btcusd"), "nodes.main.markets"),
    ("port out of range", with_change("nodes.main.port", 70000), "nodes.main.port"),
    ("a market run by no node", with_change("nodes.main.markets", ["btcusd"]), "markets.ltcbtc"),
    (
        "a market run by two nodes",
        with_change("nodes.other", {"markets": ["ltcbtc"]}),
        "nodes.other.markets",
    ),
    ("no nodes", with_change("nodes", {}), "nodes"),
    ("zero mailbox", with_change("actors", {"mailbox_size": 0}), "actors.mailbox_size"),
    ("zero ask timeout", with_change("actors", {"ask_timeout_ms": 0}), "actors.ask_timeout_ms"),
]


TYPOS = [
    ("markets.btcusd.taker_fe", "markets.btcusd"),  # would have made trading free for takers
    ("exchange.databse", "exchange"),
    ("currencies.btc.precison", "currencies.btc"),
    ("nodes.main.prot", "nodes.main"),
    ("actors.mailbox", "actors"),
    ("api.signed_limt", "api"),
    ("mail.hots", "mail"),
    ("solvency.enable", "solvency"),
    ("security.withdraw_hold_hour", "security"),
    ("sms.provder", "sms"),
    ("admin.email", "admin"),
    ("currencies.btc.wallet.confirmatons", "currencies.btc.wallet"),
    ("exchang", "top level"),
]


@pytest.mark.parametrize(("path", "table"), TYPOS, ids=[t[0] for t in TYPOS])
def test_an_unknown_key_in_any_table_stops_start_up_naming_it_and_its_table(path: str, table: str) -> None:
    data = copy.deepcopy(valid())
    data["currencies"]["btc"]["wallet"] = {"channel": "bank", "bank_name": "B", "account_holder": "H",
                                           "account_number": "DE89 3704 0044 0532 0130 00"}
    data["currencies"]["btc"]["kind"] = "fiat"
    for t in ("actors", "api", "mail", "solvency", "security", "sms", "admin"):
        data.setdefault(t, {})
    *parents, last = path.split(".")
    t = data
    for key in parents:
        t = t[key]
    t[last] = "0.002" if last != "exchang" else {}
    with pytest.raises(ConfigError) as info:  # the wallet's channel family checks its own keys (before a node starts)
        check_wallets(parse_config(data))
    message = str(info.value)
    assert message.startswith(f"{path}:") and "unknown" in message, message
    assert table == "top level" or table in message.split(":", 1)[1] or table.endswith("wallet"), message


@pytest.mark.parametrize(("data", "field"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(f"{field}:"), str(info.value)


def test_messages_say_what_is_wrong() -> None:
    def message(data: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as info:
            parse_config(data)
        return str(info.value)

    assert message(with_change("markets.btcusd.base", "eth")) == "markets.btcusd.base: unknown currency 'eth'"
    assert "got a boolean" in message(with_change("markets.btcusd.price_precision", True))
    assert "expected an integer, got float" in message(with_change("currencies.btc.precision", 8.0))
    assert "must be between 0 and 18, got 19" in message(with_change("currencies.btc.precision", 19))
    assert "'btcusd' is already run by node 'main'" in message(
        with_change("nodes.other", {"markets": ["btcusd"]})
    )
    assert message(with_change("markets.btcusd.maker_fee", "0.000000001")) == (
        "markets.btcusd.maker_fee: has too many decimal places (at most 8)"
    )
    assert message(with_change("currencies", DELETE)) == "currencies: missing"


def test_fee_just_below_ten_percent_is_accepted() -> None:
    cfg = parse_config(with_change("markets.btcusd.taker_fee", "0.09999999"))
    assert cfg.markets["btcusd"].taker_fee == FEE_SCALE // 10 - 1


# -- files ----------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: configuration file not found"):
        load_config(path)


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[exchange]\nname = "unterminated\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_config(path)


def test_bad_value_in_a_file_names_the_field(tmp_path: Path) -> None:
    text = CLUSTER_TOML.read_text(encoding="utf-8").replace("price_precision = 2", "price_precision = 3")
    path = tmp_path / "cluster.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^markets\.btcusd\.price_precision: "):
        load_config(path)


def test_boolean_in_a_file_is_not_an_integer(tmp_path: Path) -> None:
    text = CLUSTER_TOML.read_text(encoding="utf-8").replace("precision = 8", "precision = true", 1)
    path = tmp_path / "cluster.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^currencies\.btc\.precision: expected an integer, got a boolean"):
        load_config(path)


# -- environment overrides ------------------------------------------------------------------------


def test_database_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", "postgresql://exchange@db:5432/exchange")
    assert load_config(CLUSTER_TOML).database == "postgresql://exchange@db:5432/exchange"


def test_database_url_from_environment_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", "mysql://db/exchange")
    with pytest.raises(ConfigError, match=r"^exchange\.database: "):
        parse_config(valid())


def test_empty_database_url_in_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", "")
    assert parse_config(valid()).database == "sqlite:///tmp/test.db"


def test_rabbitmq_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_RABBITMQ_URL", "amqp://guest:guest@mq:5672/")
    assert parse_config(valid()).rabbitmq == "amqp://guest:guest@mq:5672/"
