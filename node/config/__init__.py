"""cluster.toml: currencies, markets, nodes, database and bus, validated before anything starts.

A bad file stops start-up with a message naming the field (`markets.btcusd.price_precision: ...`),
because a half-understood configuration on a money system is worse than none. That includes every
key nobody reads: `taker_fe = "0.002"` would otherwise leave the taker fee at its default of 0, so
an unknown key in any table stops start-up with its name and the table: every table remembers
which keys the parser asked for (`_Read`, node/config/read.py), and a key nobody asked for is refused.

Each table has its own small parser: the exchange, currencies, markets, nodes, actors, API, HTTP,
mail, solvency, pool and ops tables in node/config/tables.py (the typed values they make are in
node/config/types.py); `[admin]` in node/config/admin.py, `[security]` and
`[sms]` in node/config/security.py. A wallet table's channel-family keys are kept as its `settings`
and checked by the family (node/wallet `check_wallets`) before a node starts, since only the wallet
package knows the families.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from node.config.admin import AdminConf, parse_admin
from node.config.read import ConfigError, _get, _Read, _refuse_unread, known_keys
from node.config.security import SecurityConf, SmsConf, parse_security, parse_sms
from node.config.tables import (
    parse_actors,
    parse_api,
    parse_currencies,
    parse_exchange,
    parse_http,
    parse_mail,
    parse_markets,
    parse_nodes,
    parse_ops,
    parse_pool,
    parse_solvency,
    parse_standbys,
    parse_wallet_nodes,
)
from node.config.types import (
    STP_MODES,
    ActorConf,
    ApiConf,
    Config,
    Currency,
    HttpConf,
    MailConf,
    Market,
    NodeConf,
    OpsConf,
    PoolConf,
    SolvencyConf,
    WalletConf,
)
from node.money import FEE_DECIMALS, FEE_SCALE
from node.resources import resource

__all__ = [
    "CONFIG_ENV", "DEFAULT_CONFIG", "FEE_DECIMALS", "FEE_SCALE", "STP_MODES", "ActorConf", "AdminConf", "ApiConf",
    "Config", "ConfigError", "Currency", "HttpConf", "MailConf", "Market", "NodeConf", "OpsConf", "PoolConf",
    "SecurityConf", "SmsConf", "SolvencyConf", "WalletConf", "find_config", "known_keys", "load_config",
    "parse_config",
]


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Every table by its own parser, then the keys nobody asked for refused. The channel family's
    own wallet settings are checked by the wallet package when the node starts (node/wallet:
    `check_wallets`), which knows the families."""
    table = _Read(data, "")
    ex = _get(table, "exchange", "", dict, {})
    name = _get(ex, "name", "exchange", str, "PyExchange")
    database, rabbitmq, sync = parse_exchange(ex)
    pool = parse_pool(ex)
    currencies = parse_currencies(_get(table, "currencies", "", dict))
    markets = parse_markets(_get(table, "markets", "", dict), currencies)
    nodes, owners = parse_nodes(_get(table, "nodes", "", dict), markets)
    currencies = parse_wallet_nodes(currencies, nodes)
    markets = parse_standbys(markets, nodes, owners, clustered=rabbitmq is not None)
    actors = parse_actors(_get(table, "actors", "", dict, {}))
    config = Config(
        name=name,
        database=database,
        rabbitmq=rabbitmq,
        sqlite_synchronous=sync,
        currencies=currencies,
        markets=markets,
        nodes=nodes,
        actors=actors,
        source=source,
        api=parse_api(_get(table, "api", "", dict, {})),
        http=parse_http(_get(table, "http", "", dict, {})),
        mail=parse_mail(_get(table, "mail", "", dict, {}), name),
        solvency=parse_solvency(_get(table, "solvency", "", dict, {}), nodes),
        admin=parse_admin(table, currencies),  # node/config/admin.py
        security=parse_security(table),  # node/config/security.py
        sms=parse_sms(table),
        pool=pool,
        ops=parse_ops(_get(table, "ops", "", dict, {}), actors),
    )
    _refuse_unread(table)
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: configuration file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return parse_config(data, str(p))


CONFIG_ENV = "EXCHANGE_CONFIG"
DEFAULT_CONFIG = "cluster.toml"


def find_config(explicit: str | None, demo: bool = False) -> Path:
    """Which configuration file to read: `--config`, else `$EXCHANGE_CONFIG`, else `./cluster.toml`.

    A demo (`serve --demo`) started where there is none runs on the configuration shipped with the
    package, so an installed exchange can be tried from any directory; anything else is refused
    with a message that says how to name the file, rather than guessing which exchange was meant.
    """
    named = explicit or os.environ.get(CONFIG_ENV)
    if named:
        return Path(named)
    here = Path(DEFAULT_CONFIG)
    if here.is_file():
        return here
    if demo:
        shipped = resource(DEFAULT_CONFIG)
        if shipped is not None:
            return shipped
    raise ConfigError(
        f"no {DEFAULT_CONFIG} in {Path.cwd()}: name the configuration with --config FILE or "
        f"{CONFIG_ENV}=FILE (or try the demo: serve --demo)"
    )


__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG", "FEE_DECIMALS", "FEE_SCALE", "ActorConf", "AdminConf", "ApiConf", "Config",
           "ConfigError", "Currency", "HttpConf", "MailConf", "Market", "NodeConf", "OpsConf", "PoolConf", "SecurityConf",
           "SmsConf", "SolvencyConf", "WalletConf", "find_config", "known_keys", "load_config", "parse_config"]
