"""The configuration as typed, frozen values: what every other module reads (node/config parses
cluster.toml into them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from node.config.admin import AdminConf
from node.config.read import ConfigError
from node.config.security import SecurityConf, SmsConf

STP_MODES = ("cancel_taker", "cancel_maker", "none")
CODE_RE = re.compile(r"[a-z][a-z0-9]{1,9}")


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
    # An account actor busy back to back (its last batch carried several orders) waits this long
    # for more before its next batch: fewer, bigger transactions under load, at most this much
    # latency more; 0: never.
    linger_ms: int = 5
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
    refused with a 503 and a short log line. A trusted proxy's connections are bounded by
    `max_connections_per_proxy` instead, and each forwarded client by `max_connections_per_ip` for
    the connections carrying its requests."""

    header_timeout: int = 10  # a connection must send a request's complete headers this long after it opens
    body_timeout: int = 30  # a form or API body must have arrived this long after its headers
    upload_timeout: int = 300  # the same for the routes that take files
    keepalive_timeout: int = 15  # an idle keep-alive connection is closed after this long
    max_connections: int = 10_000  # per node; lowered to stay below the file-descriptor limit
    max_connections_per_ip: int = 256  # per TCP peer; per forwarded client through a trusted proxy
    max_connections_per_proxy: int = 4096  # from one trusted proxy (its pool to this node)
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
