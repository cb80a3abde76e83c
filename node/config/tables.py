"""One small parser per table of cluster.toml (the exchange, currencies and their wallets, markets,
nodes, actors, API, HTTP, mail, solvency, pool and ops tables), each naming the field it refuses."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import replace
from typing import Any

from node.config.read import ConfigError, _get, _int_range, _strings, _units
from node.config.types import (
    CODE_RE,
    STP_MODES,
    ActorConf,
    ApiConf,
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

_WALLET_KEYS = ("channel", "node", "confirmations", "reorg_watch_blocks", "poll_interval_ms", "withdraw_fee",
                "min_withdraw", "max_withdraw", "auto_approve", "min_deposit", "cold_addresses", "cold_balance")


def parse_exchange(ex: dict[str, Any]) -> tuple[str, str | None, str]:
    """`[exchange]`: the database, the bus and SQLite's durability (the pool: `parse_pool`)."""
    # the file's value is read (and checked) even when the environment overrides it
    database = _get(ex, "database", "exchange", str, "sqlite:///var/exchange.db")
    database = os.environ.get("EXCHANGE_DATABASE_URL") or database
    if not (database.startswith("sqlite://") or database.startswith(("postgresql://", "postgres://"))):
        raise ConfigError("exchange.database: must start with sqlite:// or postgresql://")
    rabbitmq = _get(ex, "rabbitmq", "exchange", str, "")
    rabbitmq = os.environ.get("EXCHANGE_RABBITMQ_URL") or rabbitmq or None
    sync = _get(ex, "sqlite_synchronous", "exchange", str, "full").lower()
    if sync not in ("full", "normal"):
        raise ConfigError("exchange.sqlite_synchronous: must be 'full' or 'normal'")
    return database, rabbitmq, sync


def parse_currencies(t: dict[str, Any]) -> dict[str, Currency]:
    currencies: dict[str, Currency] = {}
    for code, c in t.items():
        path = f"currencies.{code}"
        if not CODE_RE.fullmatch(code):
            raise ConfigError(f"{path}: currency code must be 2-10 lowercase letters/digits")
        if not isinstance(c, dict):
            raise ConfigError(f"{path}: expected a table")
        kind = _get(c, "kind", path, str, "coin")
        if kind not in ("coin", "fiat"):
            raise ConfigError(f"{path}.kind: must be 'coin' or 'fiat', got {kind!r}")
        precision = _int_range(c, "precision", path, 0, 18)
        currencies[code] = Currency(
            code=code,
            name=_get(c, "name", path, str, code.upper()),
            precision=precision,
            kind=kind,
            wallet=_wallet(c, path, precision),
            display_precision=_int_range(c, "display_precision", path, 0, 18) if "display_precision" in c else -1,
            explorer_tx=_explorer(c, path),
        )
    if not currencies:
        raise ConfigError("currencies: at least one currency is needed")
    return currencies


def _wallet(c: dict[str, Any], path: str, precision: int) -> WalletConf | None:
    """The optional wallet table. Every key that is not one of ours is the channel family's, kept
    in `settings` (and checked by the family, node/wallet `check_wallets`)."""
    w = _get(c, "wallet", path, dict, None)
    if w is None:
        return None
    path = f"{path}.wallet"
    family = _get(w, "channel", path, str)
    settings = {k: v for k, v in w.items() if k not in _WALLET_KEYS}
    one = "0." + "0" * (precision - 1) + "1" if precision else "1"
    conf = WalletConf(
        channel=family,
        node=_get(w, "node", path, str, ""),
        confirmations=_int_range(w, "confirmations", path, 1, 10_000, 6),
        reorg_watch=_int_range(w, "reorg_watch_blocks", path, 0, 10_000, 20),
        poll_interval_ms=_int_range(w, "poll_interval_ms", path, 50, 3_600_000, 5_000),
        withdraw_fee=_units(w, "withdraw_fee", path, precision, "0", True),
        min_withdraw=_units(w, "min_withdraw", path, precision, one, False),
        max_withdraw=_units(w, "max_withdraw", path, precision, "0", True),
        auto_approve=_units(w, "auto_approve", path, precision, "0", True),
        min_deposit=_units(w, "min_deposit", path, precision, one, False),
        cold_addresses=_strings(w, "cold_addresses", path),
        cold_balance=_units(w, "cold_balance", path, precision, "0", True),
        settings=tuple(sorted(settings.items())),
    )
    if conf.max_withdraw and conf.max_withdraw < conf.min_withdraw:
        raise ConfigError(f"{path}.max_withdraw: must not be below min_withdraw (or 0 for no maximum)")
    return conf


def parse_markets(t: dict[str, Any], currencies: dict[str, Currency]) -> dict[str, Market]:
    markets = {mid: _market(mid, m, currencies) for mid, m in t.items()}
    if not markets:
        raise ConfigError("markets: at least one market is needed")
    return markets


def _market(mid: str, m: Any, currencies: dict[str, Currency]) -> Market:
    path = f"markets.{mid}"
    if not isinstance(m, dict):
        raise ConfigError(f"{path}: expected a table")
    base_code = _get(m, "base", path, str)
    quote_code = _get(m, "quote", path, str)
    for key, code in (("base", base_code), ("quote", quote_code)):
        if code not in currencies:
            raise ConfigError(f"{path}.{key}: unknown currency {code!r}")
    if base_code == quote_code:
        raise ConfigError(f"{path}.quote: must differ from base")
    if mid != base_code + quote_code:
        raise ConfigError(f"{path}: market id must be base+quote ({base_code + quote_code!r})")
    base, quote = currencies[base_code], currencies[quote_code]
    pp = _int_range(m, "price_precision", path, 0, 18)
    vp = _int_range(m, "volume_precision", path, 0, 18)
    if vp > base.precision:
        raise ConfigError(f"{path}.volume_precision: {vp} exceeds {base_code} precision {base.precision}")
    if pp + vp > quote.precision:
        raise ConfigError(
            f"{path}.price_precision: price_precision + volume_precision ({pp + vp}) must not exceed "
            f"{quote_code} precision {quote.precision}, so that price × volume is exact"
        )
    maker = _units(m, "maker_fee", path, FEE_DECIMALS, "0", True)
    taker = _units(m, "taker_fee", path, FEE_DECIMALS, "0", True)
    for key, fee in (("maker_fee", maker), ("taker_fee", taker)):
        if fee >= FEE_SCALE // 10:
            raise ConfigError(f"{path}.{key}: must be below 0.1 (10%)")
    stp = _get(m, "self_trade", path, str, "cancel_taker")
    if stp not in STP_MODES:
        raise ConfigError(f"{path}.self_trade: must be one of {', '.join(STP_MODES)}")
    return Market(
        id=mid,
        base=base,
        quote=quote,
        price_precision=pp,
        volume_precision=vp,
        maker_fee=maker,
        taker_fee=taker,
        min_volume=_units(m, "min_volume", path, vp, "0." + "0" * (vp - 1) + "1" if vp else "1", False),
        max_volume=_units(m, "max_volume", path, vp, "0", True),
        self_trade=stp,
        standbys=tuple(_get(m, "standbys", path, list, [])) if "standbys" in m else ("*",),
    )


def parse_nodes(t: dict[str, Any], markets: dict[str, Market]) -> tuple[dict[str, NodeConf], dict[str, str]]:
    """The nodes, and which node runs each market (every market exactly one)."""
    nodes: dict[str, NodeConf] = {}
    owners: dict[str, str] = {}
    for nname, n in t.items():
        path = f"nodes.{nname}"
        if not isinstance(n, dict):
            raise ConfigError(f"{path}: expected a table")
        mlist = _get(n, "markets", path, list)
        for mid in mlist:
            if mid not in markets:
                raise ConfigError(f"{path}.markets: unknown market {mid!r}")
            if mid in owners:
                raise ConfigError(f"{path}.markets: {mid!r} is already run by node {owners[mid]!r}")
            owners[mid] = nname
        nodes[nname] = NodeConf(
            name=nname,
            host=_get(n, "host", path, str, "127.0.0.1"),
            port=_int_range(n, "port", path, 0, 65535, 8080),
            markets=tuple(mlist),
            ops_port=_int_range(n, "ops_port", path, 0, 65535) if "ops_port" in n else -1,
        )
    if not nodes:
        raise ConfigError("nodes: at least one node is needed")
    return nodes, owners


def parse_wallet_nodes(currencies: dict[str, Currency], nodes: dict[str, NodeConf]) -> dict[str, Currency]:
    """A wallet runs on the node it names, else the first."""
    out = dict(currencies)
    for code, cur in currencies.items():
        if cur.wallet is not None:
            wnode = cur.wallet.node or next(iter(nodes))
            if wnode not in nodes:
                raise ConfigError(f"currencies.{code}.wallet.node: no such node {wnode!r} (have: {', '.join(nodes)})")
            out[code] = replace(cur, wallet=replace(cur.wallet, node=wnode))
    return out


def parse_standbys(markets: dict[str, Market], nodes: dict[str, NodeConf], owners: dict[str, str],
              clustered: bool) -> dict[str, Market]:
    """Every market run by a node; who stands by for it (not named: in a cluster every other node)."""
    unowned = [m for m in markets if m not in owners]
    if unowned:
        raise ConfigError(f"markets.{unowned[0]}: no node runs this market (add it to a nodes.*.markets list)")
    out: dict[str, Market] = {}
    for mid, market in markets.items():
        if market.standbys == ("*",):
            standbys = tuple(n for n in nodes if n != owners[mid]) if clustered else ()
        else:
            for n in market.standbys:
                if not isinstance(n, str) or n not in nodes:
                    raise ConfigError(f"markets.{mid}.standbys: no such node {n!r} (have: {', '.join(nodes)})")
            standbys = tuple(n for n in market.standbys if n != owners[mid])
        out[mid] = replace(market, standbys=standbys)
    return out


def parse_actors(a: dict[str, Any]) -> ActorConf:
    actors = ActorConf(
        mailbox_size=_int_range(a, "mailbox_size", "actors", 1, 10_000_000, 10_000),
        max_batch=_int_range(a, "max_batch", "actors", 1, 100_000, 1_000),
        ask_timeout=float(_int_range(a, "ask_timeout_ms", "actors", 1, 600_000, 10_000)) / 1000,
        lease_ms=_int_range(a, "lease_ms", "actors", 1_000, 600_000, ActorConf.lease_ms),
        sweep_after_ms=_int_range(a, "sweep_after_ms", "actors", 10, 3_600_000, ActorConf.sweep_after_ms),
        store_timeout_ms=_int_range(a, "store_timeout_ms", "actors", 100, 600_000, ActorConf.store_timeout_ms),
        account_shards=_int_range(a, "account_shards", "actors", 0, 1_024, ActorConf.account_shards),
        linger_ms=_int_range(a, "linger_ms", "actors", 0, 100, ActorConf.linger_ms),
    )
    if actors.store_timeout_ms * 2 > actors.lease_ms:
        raise ConfigError("actors.store_timeout_ms: must be at most half of actors.lease_ms, so that a stalled "
                          "node's store calls fail before its lease can pass to another node")
    return actors


def parse_api(t: dict[str, Any]) -> ApiConf:
    return ApiConf(
        signed_limit=_int_range(t, "signed_limit", "api", 0, 10**9, ApiConf.signed_limit),
        signed_window=_int_range(t, "signed_window_s", "api", 1, 86_400, ApiConf.signed_window),
        public_limit=_int_range(t, "public_limit", "api", 0, 10**9, ApiConf.public_limit),
        public_window=_int_range(t, "public_window_s", "api", 1, 86_400, ApiConf.public_window),
    )


def parse_mail(t: dict[str, Any], name: str) -> MailConf:
    smtp_password = _get(t, "password", "mail", str, "")
    security = _get(t, "security", "mail", str, "none")
    if security not in ("none", "starttls", "tls"):
        raise ConfigError("mail.security: must be 'none', 'starttls' or 'tls'")
    base_url = _get(t, "base_url", "mail", str, "").rstrip("/")
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ConfigError("mail.base_url: must start with http:// or https://")
    return MailConf(
        host=_get(t, "host", "mail", str, ""),
        port=_int_range(t, "port", "mail", 1, 65535, 25),
        username=_get(t, "username", "mail", str, ""),
        password=os.environ.get("EXCHANGE_SMTP_PASSWORD") or smtp_password,
        security=security,
        sender=_get(t, "sender", "mail", str, f"{name} <no-reply@localhost>"),
        base_url=base_url,
        timeout=float(_int_range(t, "timeout_ms", "mail", 100, 600_000, 10_000)) / 1000,
    )


def parse_solvency(t: dict[str, Any], nodes: dict[str, NodeConf]) -> SolvencyConf:
    solvency = SolvencyConf(
        enabled=_get(t, "enabled", "solvency", bool, True),
        interval_hours=_int_range(t, "interval_hours", "solvency", 1, 24 * 366, 24),
        keep_days=_int_range(t, "keep_days", "solvency", 0, 100 * 366, 365),
        node=_get(t, "node", "solvency", str, "") or next(iter(nodes)),
        min_height=_int_range(t, "min_height", "solvency", 0, 32, 0),
        asset_confirmations=_int_range(t, "asset_confirmations", "solvency", 0, 10_000, 1),
    )
    if solvency.node not in nodes:
        raise ConfigError(f"solvency.node: no such node {solvency.node!r} (have: {', '.join(nodes)})")
    return solvency


def parse_pool(ex: dict[str, Any]) -> PoolConf:
    d = PoolConf()
    direct = _get(ex, "direct_database", "exchange", str, "")  # read (and checked) even when overridden
    direct = os.environ.get("EXCHANGE_DIRECT_DATABASE_URL") or direct
    if direct and not direct.startswith(("postgresql://", "postgres://")):
        raise ConfigError("exchange.direct_database: must start with postgresql://")
    pool = PoolConf(
        min_size=_int_range(ex, "pool_min", "exchange", 0, 1_000, d.min_size),
        max_size=_int_range(ex, "pool_max", "exchange", 1, 1_000, d.max_size),
        pgbouncer=_get(ex, "pgbouncer", "exchange", bool, False),
        direct=direct,
    )
    if pool.min_size > pool.max_size:
        raise ConfigError(f"exchange.pool_min: must not exceed exchange.pool_max ({pool.max_size})")
    return pool


def parse_ops(t: dict[str, Any], actors: ActorConf) -> OpsConf:
    d = OpsConf()
    fmt = _get(t, "log_format", "ops", str, d.log_format)
    if fmt not in ("text", "json"):
        raise ConfigError("ops.log_format: must be 'text' or 'json'")
    host = _get(t, "host", "ops", str, d.host).strip()
    if not host:
        raise ConfigError("ops.host: must not be empty (an address to listen on, e.g. 127.0.0.1)")
    ops = OpsConf(
        host=host,
        port=_int_range(t, "port", "ops", 0, 65535, d.port),
        ready_timeout_ms=_int_range(t, "ready_timeout_ms", "ops", 50, 60_000, d.ready_timeout_ms),
        ready_max_mailbox=_int_range(t, "ready_max_mailbox", "ops", 0, 10_000_000, d.ready_max_mailbox)
        or max(1, actors.mailbox_size // 2),
        ready_max_queued=_int_range(t, "ready_max_queued", "ops", 0, 10**9, d.ready_max_queued),
        log_format=fmt,
    )
    return ops


def parse_http(t: dict[str, Any]) -> HttpConf:
    d = HttpConf()
    keys = {"header_timeout_s": "header_timeout", "body_timeout_s": "body_timeout",
            "upload_timeout_s": "upload_timeout", "keepalive_timeout_s": "keepalive_timeout",
            "max_connections": "max_connections", "max_connections_per_ip": "max_connections_per_ip",
            "max_connections_per_proxy": "max_connections_per_proxy", "api_body_max": "api_body_max", "form_body_max": "form_body_max",
            "upload_body_max": "upload_body_max", "ws_max_per_ip": "ws_max_per_ip"}
    known = sorted([*keys, "trusted_proxies"])
    for key in t:
        if key not in known:  # a misspelt limit would silently stay at its default
            raise ConfigError(f"http.{key}: unknown key (known: {', '.join(known)})")
    ranges = {"header_timeout_s": (1, 3600), "body_timeout_s": (1, 3600), "upload_timeout_s": (1, 7200),
              "keepalive_timeout_s": (1, 3600), "max_connections": (16, 1_000_000),
              "max_connections_per_ip": (1, 1_000_000), "max_connections_per_proxy": (1, 1_000_000),
              "api_body_max": (1024, 16 << 20),
              "form_body_max": (1024, 16 << 20), "upload_body_max": (1024, 1 << 30), "ws_max_per_ip": (1, 1_000_000)}
    values = {attr: _int_range(t, key, "http", *ranges[key], getattr(d, attr)) for key, attr in keys.items()}
    return HttpConf(**values, trusted_proxies=_networks(_get(t, "trusted_proxies", "http", list, [])))


def _networks(items: list[Any]) -> tuple[str, ...]:
    """`[http] trusted_proxies`: addresses or networks ("10.0.0.0/8", "192.0.2.7"), without host bits."""
    out: list[str] = []
    for item in items:
        try:
            if not isinstance(item, str):
                raise ValueError("not a string")
            out.append(str(ipaddress.ip_network(item.strip())))
        except ValueError as e:
            raise ConfigError(f"http.trusted_proxies: {item!r} is not an IP address or network ({e})") from None
    return tuple(out)


def _explorer(c: dict[str, Any], path: str) -> str:
    url = _get(c, "explorer_tx", path, str, "").strip()
    if url and (not url.startswith(("https://", "http://")) or "{txid}" not in url):
        raise ConfigError(f"{path}.explorer_tx: must be an http(s) URL with {{txid}} in it")
    return url
