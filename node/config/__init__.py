"""cluster.toml: currencies, markets, nodes, database and bus, validated before anything starts.

A bad file stops start-up with a message naming the field (`markets.btcusd.price_precision: ...`),
because a half-understood configuration on a money system is worse than none. That includes every
key nobody reads: `taker_fe = "0.002"` would otherwise leave the taker fee at its default of 0, so
an unknown key in any table stops start-up with its name and the table: every table remembers
which keys the parser asked for (`_Read`, node/config/read.py), and a key nobody asked for is refused.

Each table has its own small parser: here the exchange, currencies, markets, nodes, actors, API,
HTTP, mail, solvency, pool and ops tables; `[admin]` in node/config/admin.py, `[security]` and
`[sms]` in node/config/security.py. A wallet table's channel-family keys are kept as its `settings`
and checked by the family (node/wallet `check_wallets`) before a node starts, since only the wallet
package knows the families.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node.config.admin import AdminConf, parse_admin
from node.config.read import (
    ConfigError,
    _get,
    _int_range,
    _Read,
    _refuse_unread,
    _strings,
    _units,
    known_keys,
)
from node.config.security import SecurityConf, SmsConf, parse_security, parse_sms
from node.money import FEE_DECIMALS, FEE_SCALE
from node.resources import resource

STP_MODES = ("cancel_taker", "cancel_maker", "none")
_CODE = re.compile(r"[a-z][a-z0-9]{1,9}")


@dataclass(frozen=True)
class WalletConf:
    """A currency's `[currencies.<code>.wallet]` table: how money enters and leaves (node/wallet).

    Amounts are integers in the currency's smallest unit. `settings` holds the channel family's
    own keys (checked by that family's adapter class), as sorted (key, value) pairs so the
    configuration stays hashable.
    """

    channel: str  # the family: "bitcoind", "bank", … (node.wallet.FAMILIES)
    node: str  # the node that runs this currency's wallet actor
    confirmations: int = 6  # a deposit is credited at this many confirmations
    reorg_watch: int = 20  # blocks past `confirmations` during which a credited deposit is re-checked
    poll_interval_ms: int = 5_000
    withdraw_fee: int = 0  # charged on top of the amount, credited to the house fee account
    min_withdraw: int = 1
    max_withdraw: int = 0  # 0 = no maximum
    auto_approve: int = 0  # withdrawals up to this are sent without an admin; 0 = every one needs an admin
    min_deposit: int = 1  # smaller deposits are recorded (`skipped`) but not credited
    cold_addresses: tuple[str, ...] = ()  # cold wallet addresses, watched (watch-only) for reconciliation
    cold_balance: int = 0  # declared cold holdings not watched on the chain (e.g. paper or hardware wallets)
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.settings)


@dataclass(frozen=True)
class Currency:
    code: str
    name: str
    precision: int
    kind: str  # "coin" | "fiat"
    wallet: WalletConf | None = None  # None: no deposits/withdrawals other than an admin's
    display_precision: int = -1
    """Decimals the pages show for amounts of this currency (default: fiat 2, coin all); -1 = default."""
    explorer_tx: str = ""
    """A block explorer's transaction page, `{txid}` replaced (e.g. "https://mempool.space/tx/{txid}")."""

    @property
    def symbol(self) -> str:
        return self.code.upper()

    @property
    def shown(self) -> int:
        """The number of decimals every page uses for this currency: one format everywhere."""
        if self.display_precision >= 0:
            return min(self.display_precision, self.precision)
        return min(2, self.precision) if self.kind == "fiat" else self.precision


@dataclass(frozen=True)
class Market:
    id: str
    base: Currency
    quote: Currency
    price_precision: int
    volume_precision: int
    maker_fee: int  # units of 1e-8
    taker_fee: int
    min_volume: int  # lots
    max_volume: int  # lots, 0 = no limit
    self_trade: str
    standbys: tuple[str, ...] = ()  # nodes that adopt the market when its owner's lease expires

    @property
    def name(self) -> str:
        return f"{self.base.symbol}/{self.quote.symbol}"

    @property
    def base_factor(self) -> int:
        """Base currency units per volume lot."""
        return 10 ** (self.base.precision - self.volume_precision)

    @property
    def quote_factor(self) -> int:
        """Quote currency units per (price tick × volume lot)."""
        return 10 ** (self.quote.precision - self.price_precision - self.volume_precision)

    def base_units(self, lots: int) -> int:
        return lots * self.base_factor

    def quote_units(self, ticklots: int) -> int:
        return ticklots * self.quote_factor


@dataclass(frozen=True)
class NodeConf:
    name: str
    host: str
    port: int
    markets: tuple[str, ...]
    ops_port: int = -1  # this node's operator listener (-1: `[ops] port`)


@dataclass(frozen=True)
class PoolConf:
    """PostgreSQL connections of one node (`[exchange]` pool_min, pool_max, pgbouncer, direct_database).

    Every node keeps between `min_size` and `max_size` connections to `database`, plus one to
    `direct` for its liveness lock (node/actors/lease.py). Behind PgBouncer in transaction mode
    (`pgbouncer = true`) a server connection changes between transactions, so nothing may live in
    a session: no prepared statement cache and no settings sent at connect; the liveness lock is
    a session advisory lock and must reach PostgreSQL itself through `direct`."""

    min_size: int = 2
    max_size: int = 10
    pgbouncer: bool = False
    direct: str = ""  # the URL of a direct connection; "" = the database URL


@dataclass(frozen=True)
class OpsConf:
    """The `[ops]` table: where /healthz, /readyz and /metrics are served, what readiness allows,
    and the log format.

    With a port (`[ops] port`, or a node's own `ops_port`) they get a listener of their own on
    `host` (default loopback), for the operators' network and the load balancer's health checks;
    without one (0) the node's main listener answers them to loopback clients only, never to a
    request that came through a proxy."""

    host: str = "127.0.0.1"
    port: int = 0
    ready_timeout_ms: int = 2_000  # the store and the bus must each answer a probe within this
    ready_max_mailbox: int = 0  # an actor's mailbox deeper than this is not ready; 0 = half the mailbox
    ready_max_queued: int = 10_000  # messages waiting in the bus for a market this node runs
    log_format: str = "text"  # "text" | "json" (one JSON object per line)


@dataclass(frozen=True)
class ActorConf:
    mailbox_size: int = 10_000
    max_batch: int = 1_000
    ask_timeout: float = 10.0
    lease_ms: int = 10_000  # a market's lease: an owner silent this long is replaced by a standby
    sweep_after_ms: int = 5_000  # an accepted order still pending this long is taken from the store
    store_timeout_ms: int = 5_000  # every store call of a node (PostgreSQL), well inside the lease
    # Members' accounts in this many shards (member id modulo), each written by one account actor,
    # in a cluster on one node at a time (node/actors/shards.py); 0: 1 on SQLite, 4 on PostgreSQL.
    # The same in every node's configuration, and changed only with the cluster stopped.
    account_shards: int = 0

    def shard_count(self, backend: str) -> int:
        return self.account_shards or (1 if backend == "sqlite" else 4)


@dataclass(frozen=True)
class ApiConf:
    """The `[api]` table: rate limits of API v2, per node (in memory: a cluster of N nodes behind a
    load balancer lets through up to N times these numbers). 0 disables a limit."""

    signed_limit: int = 6_000  # signed requests per access key per window (Peatio: 6000 / 5 min)
    signed_window: int = 300  # seconds
    public_limit: int = 1_200  # unsigned requests per client IP per window
    public_window: int = 60  # seconds


@dataclass(frozen=True)
class HttpConf:
    """The `[http]` table: what one client may make a node hold (node/web/edge.py enforces it).

    Sizes in bytes, times in seconds. Connections above `max_connections` (always kept below the
    process's file-descriptor limit) or `max_connections_per_ip` first push out the longest-idle
    connection of the busiest address (or of that address); only when none is idle is the new one
    refused with a 503 and a short log line."""

    header_timeout: int = 10  # a connection must send a request's complete headers this long after it opens
    body_timeout: int = 30  # a form or API body must have arrived this long after its headers
    upload_timeout: int = 300  # the same for the routes that take files
    keepalive_timeout: int = 15  # an idle keep-alive connection is closed after this long
    max_connections: int = 10_000  # per node; lowered to stay below the file-descriptor limit
    max_connections_per_ip: int = 256
    api_body_max: int = 64 * 1024  # API v2 bodies (an order batch is a few KiB)
    form_body_max: int = 256 * 1024  # page forms (a 20,000-character page of the CMS, percent-encoded)
    upload_body_max: int = 2 * 5 * 1024 * 1024 + 256 * 1024  # forms with files: two documents of 5 MB
    ws_max_per_ip: int = 64  # open websocket connections per client address
    # networks of the proxies whose X-Forwarded-For/-Proto are believed (node/web/forwarded.py); none by default
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class MailConf:
    """The optional `[mail]` table: the SMTP server that sends activation and password mails. With no
    `host` the mails are written to the log (the development default). `base_url` is the public
    address used in the links of the mails; it is never taken from a request's Host header, which a
    client controls (a forged Host would put an attacker's site into a victim's reset link)."""

    host: str = ""
    port: int = 25
    username: str = ""
    password: str = ""  # or EXCHANGE_SMTP_PASSWORD, so the secret need not sit in the file
    security: str = "none"  # "none" | "starttls" | "tls"
    sender: str = "PyExchange <no-reply@localhost>"
    base_url: str = ""  # e.g. "https://exchange.example"; default: http://<node host>:<node port>
    timeout: float = 10.0


@dataclass(frozen=True)
class SolvencyConf:
    """The optional `[solvency]` table: proof-of-solvency snapshots (node/solvency/service.py).

    One node (`node`, default the first) takes a snapshot every `interval_hours`, on the UTC
    boundary (daily: at 00:00 UTC), and deletes those older than `keep_days` (0 keeps all).
    `min_height` pads the v2 tree to at least 2**min_height leaves, to hide the member count;
    `asset_confirmations` is how deep a coin output must be to count as a proven asset."""

    enabled: bool = True
    interval_hours: int = 24
    keep_days: int = 365
    node: str = ""
    min_height: int = 0
    asset_confirmations: int = 1


@dataclass(frozen=True)
class Config:
    name: str
    database: str
    rabbitmq: str | None
    sqlite_synchronous: str
    currencies: dict[str, Currency]
    markets: dict[str, Market]
    nodes: dict[str, NodeConf]
    actors: ActorConf = field(default_factory=ActorConf)
    source: str = ""
    api: ApiConf = field(default_factory=ApiConf)
    http: HttpConf = field(default_factory=HttpConf)
    solvency: SolvencyConf = field(default_factory=SolvencyConf)
    mail: MailConf = field(default_factory=MailConf)
    admin: AdminConf = field(default_factory=AdminConf)
    security: SecurityConf = field(default_factory=SecurityConf)  # node/config/security.py
    sms: SmsConf = field(default_factory=SmsConf)
    pool: PoolConf = field(default_factory=PoolConf)
    ops: OpsConf = field(default_factory=OpsConf)

    @property
    def direct_database(self) -> str:
        """Where session state must reach PostgreSQL itself (the liveness lock): PgBouncer's
        transaction mode would hand the session to another client after each transaction."""
        return self.pool.direct or self.database

    def ops_port(self, node: NodeConf) -> int:
        return node.ops_port if node.ops_port >= 0 else self.ops.port

    def node(self, name: str | None) -> NodeConf:
        if name is None:
            return next(iter(self.nodes.values()))
        if name not in self.nodes:
            raise ConfigError(f"--node {name!r}: no such node in {self.source} (have: {', '.join(self.nodes)})")
        return self.nodes[name]

    def owner_of(self, market: str) -> NodeConf | None:
        for n in self.nodes.values():
            if market in n.markets:
                return n
        return None


_WALLET_KEYS = ("channel", "node", "confirmations", "reorg_watch_blocks", "poll_interval_ms", "withdraw_fee",
                "min_withdraw", "max_withdraw", "auto_approve", "min_deposit", "cold_addresses", "cold_balance")


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Every table by its own parser, then the keys nobody asked for refused. The channel family's
    own wallet settings are checked by the wallet package when the node starts (node/wallet:
    `check_wallets`), which knows the families."""
    table = _Read(data, "")
    ex = _get(table, "exchange", "", dict, {})
    name = _get(ex, "name", "exchange", str, "PyExchange")
    database, rabbitmq, sync = _exchange(ex)
    pool = _pool(ex)
    currencies = _currencies(_get(table, "currencies", "", dict))
    markets = _markets(_get(table, "markets", "", dict), currencies)
    nodes, owners = _nodes(_get(table, "nodes", "", dict), markets)
    currencies = _wallet_nodes(currencies, nodes)
    markets = _standbys(markets, nodes, owners, clustered=rabbitmq is not None)
    actors = _actors(_get(table, "actors", "", dict, {}))
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
        api=_api(_get(table, "api", "", dict, {})),
        http=_http(_get(table, "http", "", dict, {})),
        mail=_mail(_get(table, "mail", "", dict, {}), name),
        solvency=_solvency(_get(table, "solvency", "", dict, {}), nodes),
        admin=parse_admin(table, currencies),  # node/config/admin.py
        security=parse_security(table),  # node/config/security.py
        sms=parse_sms(table),
        pool=pool,
        ops=_ops(_get(table, "ops", "", dict, {}), actors),
    )
    _refuse_unread(table)
    return config


def _exchange(ex: dict[str, Any]) -> tuple[str, str | None, str]:
    """`[exchange]`: the database, the bus and SQLite's durability (the pool: `_pool`)."""
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


def _currencies(t: dict[str, Any]) -> dict[str, Currency]:
    currencies: dict[str, Currency] = {}
    for code, c in t.items():
        path = f"currencies.{code}"
        if not _CODE.fullmatch(code):
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


def _markets(t: dict[str, Any], currencies: dict[str, Currency]) -> dict[str, Market]:
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


def _nodes(t: dict[str, Any], markets: dict[str, Market]) -> tuple[dict[str, NodeConf], dict[str, str]]:
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


def _wallet_nodes(currencies: dict[str, Currency], nodes: dict[str, NodeConf]) -> dict[str, Currency]:
    """A wallet runs on the node it names, else the first."""
    out = dict(currencies)
    for code, cur in currencies.items():
        if cur.wallet is not None:
            wnode = cur.wallet.node or next(iter(nodes))
            if wnode not in nodes:
                raise ConfigError(f"currencies.{code}.wallet.node: no such node {wnode!r} (have: {', '.join(nodes)})")
            out[code] = replace(cur, wallet=replace(cur.wallet, node=wnode))
    return out


def _standbys(markets: dict[str, Market], nodes: dict[str, NodeConf], owners: dict[str, str],
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


def _actors(a: dict[str, Any]) -> ActorConf:
    actors = ActorConf(
        mailbox_size=_int_range(a, "mailbox_size", "actors", 1, 10_000_000, 10_000),
        max_batch=_int_range(a, "max_batch", "actors", 1, 100_000, 1_000),
        ask_timeout=float(_int_range(a, "ask_timeout_ms", "actors", 1, 600_000, 10_000)) / 1000,
        lease_ms=_int_range(a, "lease_ms", "actors", 1_000, 600_000, ActorConf.lease_ms),
        sweep_after_ms=_int_range(a, "sweep_after_ms", "actors", 10, 3_600_000, ActorConf.sweep_after_ms),
        store_timeout_ms=_int_range(a, "store_timeout_ms", "actors", 100, 600_000, ActorConf.store_timeout_ms),
        account_shards=_int_range(a, "account_shards", "actors", 0, 1_024, ActorConf.account_shards),
    )
    if actors.store_timeout_ms * 2 > actors.lease_ms:
        raise ConfigError("actors.store_timeout_ms: must be at most half of actors.lease_ms, so that a stalled "
                          "node's store calls fail before its lease can pass to another node")
    return actors


def _api(t: dict[str, Any]) -> ApiConf:
    return ApiConf(
        signed_limit=_int_range(t, "signed_limit", "api", 0, 10**9, ApiConf.signed_limit),
        signed_window=_int_range(t, "signed_window_s", "api", 1, 86_400, ApiConf.signed_window),
        public_limit=_int_range(t, "public_limit", "api", 0, 10**9, ApiConf.public_limit),
        public_window=_int_range(t, "public_window_s", "api", 1, 86_400, ApiConf.public_window),
    )


def _mail(t: dict[str, Any], name: str) -> MailConf:
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


def _solvency(t: dict[str, Any], nodes: dict[str, NodeConf]) -> SolvencyConf:
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


def _pool(ex: dict[str, Any]) -> PoolConf:
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


def _ops(t: dict[str, Any], actors: ActorConf) -> OpsConf:
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


def _http(t: dict[str, Any]) -> HttpConf:
    d = HttpConf()
    keys = {"header_timeout_s": "header_timeout", "body_timeout_s": "body_timeout",
            "upload_timeout_s": "upload_timeout", "keepalive_timeout_s": "keepalive_timeout",
            "max_connections": "max_connections", "max_connections_per_ip": "max_connections_per_ip",
            "api_body_max": "api_body_max", "form_body_max": "form_body_max",
            "upload_body_max": "upload_body_max", "ws_max_per_ip": "ws_max_per_ip"}
    known = sorted([*keys, "trusted_proxies"])
    for key in t:
        if key not in known:  # a misspelt limit would silently stay at its default
            raise ConfigError(f"http.{key}: unknown key (known: {', '.join(known)})")
    ranges = {"header_timeout_s": (1, 3600), "body_timeout_s": (1, 3600), "upload_timeout_s": (1, 7200),
              "keepalive_timeout_s": (1, 3600), "max_connections": (16, 1_000_000),
              "max_connections_per_ip": (1, 1_000_000), "api_body_max": (1024, 16 << 20),
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
