"""One node of the exchange, assembled: store, event bus, account and market actors.

The web layer and the CLI talk to this object only. It validates requests at the core boundary
(markets, members, precisions, limits) so that nothing invalid ever reaches an actor, then asks the
actors. Reads go straight to the store or to the in-memory books.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from node.actors.account import AccountActor, order_row_view
from node.actors.lease import LeaseHeld, Leases, Liveness, ProcessLock, session_name
from node.actors.market import MarketActor
from node.actors.messages import (
    CancelAll,
    CancelOrder,
    OrderRequest,
    QueryBook,
    SetFees,
    SetHalted,
    SubmitOrders,
)
from node.actors.runtime import Actor
from node.auth_changes import ChangeFeed
from node.clock import now_ms
from node.config import Config, Market, NodeConf
from node.errors import (
    CreateOrderFailed,
    ExchangeError,
    InvalidParameter,
    MarketHalted,
    MemberNotFound,
    OrderNotFound,
    Unavailable,
)
from node.events import EventBus
from node.market import FOK, GTC, IOC, LIMIT, MARKET, POST_ONLY, STOP_LIMIT
from node.market.settlement import DEPOSIT, order_lock
from node.metrics import NodeMetrics
from node.money import parse_units
from node.ownership import Ownership
from node.store import Store, ledger, open_store, sqlite_path
from node.store.schema import HOUSE_EMAIL
from node.tonces import TonceBook
from node.wallet.funds import Funds

if TYPE_CHECKING:
    from node.cluster.rabbit import RabbitLink, RemoteMarket

log = logging.getLogger(__name__)

SIDES = ("buy", "sell")
ORD_TYPES = (LIMIT, MARKET, STOP_LIMIT)
TIFS = (GTC, IOC, FOK, POST_ONLY)
MARKET_BUY_MARGIN = 10  # percent over the book estimate locked for a market buy (Peatio's +10%)
MAX_CLIENT_ID = 64
MEMBER_CACHE_S = 60.0  # a member's "may trade" is read again after this, or at once when it changes


@dataclass(frozen=True)
class OrderInput:
    """An order as a client states it: decimal strings, not yet checked."""

    market: str
    side: str
    volume: str
    price: str | None = None
    ord_type: str = LIMIT
    tif: str = GTC
    stop_price: str | None = None
    client_id: str | None = None


class Exchange:
    def __init__(self, config: Config, node: NodeConf, store: Store, boot: str | None = None) -> None:
        self.config = config
        self.node = node
        self.store = store
        self.bus = EventBus()
        self.markets: dict[str, MarketActor] = {}  # the markets this node runs
        self.refs: dict[str, MarketActor | RemoteMarket] = {}  # every market reachable from here
        self.link: RabbitLink | None = None
        self.accounts: list[AccountActor] = []
        self.tonces = TonceBook()  # the replay memory's writer state, shared by the API and account actors
        self.auth_changes = ChangeFeed(store)  # revoked rights, announced by whichever node made the change
        self.auth_changes.listeners.append(self._rights_changed)
        self.fee_member = 0  # the house account: withdrawal fees and other income
        # One house fee account per market: trades of different markets (maybe on different nodes)
        # never wait for each other on the same account rows.
        self.market_fee_members: dict[str, int] = {}
        self.house_members: set[int] = set()
        self.started_at = time.time()
        self._members: dict[int, tuple[float, bool]] = {}
        self._rights_gen = 0  # counts announced rights changes (see _check_member)
        self.leases = Leases(store, node.name, config.actors.lease_ms, boot=boot)
        self.ownership: Ownership | None = None
        self._process_lock: ProcessLock | None = None
        self.funds = Funds(self)  # deposits, withdrawals, wallet actors (node/wallet)
        self.accepted: dict[str, int] = {}  # market → orders accepted through this node (/metrics)
        self.extra_actors: list[Actor[Any]] = []  # actors the web layer runs (tonces): watched by /metrics
        self.metrics = NodeMetrics(self)

    # -- life cycle -------------------------------------------------------------------------------
    @classmethod
    async def start(cls, config: Config, node_name: str | None = None, *, actors: bool = True) -> Exchange:
        """Open the store and, unless `actors=False` (admin commands beside a running node), start
        this node's market and account actors."""
        node = config.node(node_name)
        boot = secrets.token_hex(6)  # this process: its leases, its sessions in the store, its queues
        store = await open_store(config.database, synchronous=config.sqlite_synchronous,
                                 timeout=config.actors.store_timeout_ms / 1000,
                                 application_name=session_name(f"{node.name}:{boot}"), pool=config.pool)
        ex = cls(config, node, store, boot)
        try:
            await ex._boot(actors)
        except BaseException:
            await ex.stop()
            raise
        return ex

    async def _boot(self, actors: bool) -> None:
        self.fee_member = await self._ensure_house()
        for mid in self.config.markets:
            self.market_fee_members[mid] = await self._ensure_house(mid)
        self.house_members = {self.fee_member, *self.market_fee_members.values()}
        await self._ensure_accounts()
        await self.auth_changes.start()
        if not actors:
            return
        if self.store.backend == "sqlite":
            self._process_lock = ProcessLock(sqlite_path(self.config.database))
            self._process_lock.acquire()
            self.leases.sole_process = True
        else:
            self.leases.liveness = Liveness(self.config.direct_database, self.leases.owner,
                                            self.config.actors.store_timeout_ms / 1000)
            await self.leases.liveness.hold()
        a = self.config.actors
        kw = {"mailbox_size": a.mailbox_size, "max_batch": a.max_batch, "ask_timeout": a.ask_timeout}
        if self.config.rabbitmq:
            from node.cluster.rabbit import RabbitLink, RemoteMarket

            self.link = RabbitLink(self.config.rabbitmq, self.node.name, self.bus, a.ask_timeout,
                                   namespace=await self._cluster_id(), boot=self.leases.boot)
            await self.link.start()
            for mid in self.config.markets:
                self.refs[mid] = RemoteMarket(mid, self.link)
            self.bus.subscribe(self._on_status)
            self.link.on_control = self._on_control
        shards = 1 if self.store.backend == "sqlite" else 4
        self.accounts = [AccountActor(self.store, self.refs, self.config.currencies, i, self.tonces, **kw)
                         for i in range(shards)]
        for account in self.accounts:
            self.metrics.watch(account)
        self.ownership = Ownership(self.config, self.node, self.store, self.leases, self.markets,
                                   adopt=self._adopt, drop=self._drop, status=self.status,
                                   address=f"{self.node.host}:{self.node.port}", cluster=self.link is not None)
        for mid in self.node.markets:
            try:
                await self.ownership.claim(mid)
            except LeaseHeld as e:
                if self.link is None:
                    raise
                self.ownership.refusals[mid] = e.message
                log.error("%s; this node stands by for it", e.message)
        for actor in self.accounts:
            await actor.start()
        await self.ownership.tick()  # the heartbeat at once (and any market free for a standby)
        self.ownership.start()
        await self.funds.start()  # wallet actors of this node's currencies, if any have wallet settings
        log.info("node %s up (boot %s): markets %s on %s", self.node.name, self.leases.boot,
                 ", ".join(self.markets) or "none", self.store.backend)

    async def _adopt(self, mid: str, epoch: int) -> MarketActor:
        """Start a market whose lease this node just took. New orders accepted here go to its
        mailbox from now on, before recovery reads the store: recovery takes every order accepted
        before it (oldest first), and the mailbox's copies of those are dropped as taken."""
        actor = self._new_market_actor(mid, epoch)
        previous = self.refs.get(mid)
        self.refs[mid] = actor
        try:
            await actor.start()
        except BaseException:
            if previous is not None:
                self.refs[mid] = previous
            else:
                self.refs.pop(mid, None)
            raise
        self.markets[mid] = actor
        if self.link is not None:
            await self.link.serve_market(actor)
        return actor

    async def _drop(self, mid: str, why: str) -> None:
        """Stop a market at once (fenced, or the lease is lost): no drain, what is queued is not ours."""
        actor = self.markets.pop(mid, None)
        self.leases.forget(mid)
        if actor is None:
            return
        log.error("market %s: %s; stopped matching it here", mid, why)
        actor.fence(why)
        if self.link is not None:
            from node.cluster.rabbit import RemoteMarket

            self.refs[mid] = RemoteMarket(mid, self.link)
            await self.link.stop_serving(mid)

    def _new_market_actor(self, mid: str, epoch: int) -> MarketActor:
        a = self.config.actors
        actor = MarketActor(self.config.markets[mid], self.store, self.bus, self.market_fee_members[mid],
                            epoch=epoch, verify_intake=self.link is not None, sweep_after_ms=a.sweep_after_ms,
                            mailbox_size=a.mailbox_size, max_batch=a.max_batch, ask_timeout=a.ask_timeout)
        self.metrics.watch(actor)
        return actor

    # -- moving a market between nodes ------------------------------------------------------------
    async def _on_control(self, command: dict[str, Any]) -> dict[str, Any]:
        """An operator's command, done now or refused now (never kept for later): the answer goes
        back to the command line that sent it."""
        try:
            cmd, mid = str(command.get("cmd")), str(command.get("market"))
            self.market(mid)
            if cmd == "release":
                to = command.get("to")
                return {"ok": True, "message": await self.release_market(mid, None if to is None else str(to))}
            if cmd == "adopt":
                return {"ok": True, "message": await self.adopt_market(mid)}
            return {"ok": False, "message": f"unknown command {cmd!r}"}
        except ExchangeError as e:
            return {"ok": False, "message": e.message}

    async def alive_nodes(self) -> dict[str, dict[str, Any]]:
        """Nodes whose process wrote its heartbeat within two leases, has not stopped, and (on
        PostgreSQL) still holds its liveness lock."""
        from node.ownership import cluster_view

        view = await cluster_view(self.store, self.config, self.leases.liveness.gone if self.leases.liveness else None)
        return {name: n for name, n in view["nodes"].items() if n["alive"]}

    async def release_market(self, mid: str, to_node: str | None) -> str:
        """Give a market up without losing or reordering an order: new orders go to its queue,
        the consumer stops, the mailbox drains (every taken order is matched and committed), and the
        lease is released, to `to_node` alone if given (which adopts it at its next tick; if it does
        not, the market falls to its standbys as after a crash)."""
        from node.cluster.rabbit import RemoteMarket

        actor = self.markets.get(mid)
        if actor is None or self.link is None or self.ownership is None:
            raise Unavailable(f"market {mid} is not run by node {self.node.name}")
        if to_node is not None:
            if to_node not in self.config.nodes:
                raise InvalidParameter(f"no such node {to_node!r}", "to")
            if to_node == self.node.name:
                return f"market {mid} already runs on {to_node}"
            if to_node not in await self.alive_nodes():
                raise Unavailable(f"node {to_node} is not running: market {mid} stays on {self.node.name}")
        async with self.ownership.lock:
            self.refs[mid] = RemoteMarket(mid, self.link)
            await self.link.stop_serving(mid)
            for acc in self.accounts:  # orders already accepted here reach the old actor first
                await acc.mailbox.join()
            await actor.stop()
            self.markets.pop(mid, None)
            self.ownership.hold_off(mid)
            await self.leases.release(mid, handed_to=to_node)
        log.warning("market %s released by node %s%s", mid, self.node.name, f" to node {to_node}" if to_node else "")
        return f"market {mid} released by {self.node.name}" + (f", handed to {to_node}" if to_node else "")

    async def adopt_market(self, mid: str) -> str:
        """Take a market now if its lease is free (released, expired, handed here, or its holder
        is gone); refuse with the reason otherwise."""
        if self.ownership is None or self.link is None:
            raise Unavailable("adopting a market needs a cluster (exchange.rabbitmq)")
        if mid in self.markets:
            return f"market {mid} already runs on {self.node.name}"
        async with self.ownership.lock:
            await self.ownership.claim(mid)
        return f"market {mid} adopted by {self.node.name}"

    async def stop(self) -> None:
        """Drain the account actors first (they feed the markets), then the markets, then the store;
        leases are released, so the next owner need not wait for them to expire."""
        if self.ownership is not None:
            await self.ownership.stop()
        if self.link is not None:
            for mid in self.markets:
                await self.link.stop_serving(mid)
        for actor in self.accounts:
            await actor.stop()
        for mid, m in list(self.markets.items()):
            await m.stop()
            try:
                await self.leases.release(mid)
            except Exception:
                log.warning("could not release the lease of %s; it will expire", mid)
        if self.link is not None:
            await self.link.close()
        await self.funds.stop()
        await self.auth_changes.stop()
        if self.leases.liveness is not None:
            await self.leases.liveness.close()
        await self.store.close()
        if self._process_lock is not None:
            self._process_lock.release()

    async def quiesce(self) -> None:
        """Wait until every message sent so far is fully processed (tests, graceful hand-over)."""
        for actor in self.accounts:
            await actor.mailbox.join()
        for m in self.markets.values():
            await m.mailbox.join()

    async def cluster_id(self) -> str:
        return await self._cluster_id()

    async def _cluster_id(self) -> str:
        """This exchange's identity, made at first start: it names its queues on a shared broker, so
        two exchanges (or a test and a leftover) can never consume each other's messages."""
        async with self.store.transaction() as tx:
            await tx.execute("INSERT INTO cluster_info (name, value) VALUES ('cluster_id', ?) ON CONFLICT (name) DO NOTHING",
                             secrets.token_hex(6))
            value: str = await tx.fetchval("SELECT value FROM cluster_info WHERE name = 'cluster_id'")
        return value

    async def _ensure_house(self, market: str | None = None) -> int:
        """The house fee account (or a market's own), created at first start."""
        email = HOUSE_EMAIL if market is None else HOUSE_EMAIL.replace("house@", f"house+{market}@")
        row = await self.store.fetchrow("SELECT id FROM members WHERE email = ?", email)
        if row is not None:
            return int(row["id"])
        name = "House fee account" + ("" if market is None else f" ({market})")
        try:
            return await self.create_member(email, name=name)
        except InvalidParameter:  # another node created it at the same moment
            row = await self.store.fetchrow("SELECT id FROM members WHERE email = ?", email)
            assert row is not None
            return int(row["id"])

    async def _ensure_accounts(self) -> None:
        """Every member has an account row per configured currency (a new currency gets rows at start)."""
        async with self.store.transaction() as tx:
            for code in self.config.currencies:
                await ledger.open_missing_accounts(tx, code)

    # -- members and funds ------------------------------------------------------------------------
    async def create_member(self, email: str, name: str = "", password_hash: str | None = None, activated: bool = True) -> int:
        email = email.strip().lower()
        if "@" not in email or len(email) > 254:
            raise InvalidParameter("email is not a valid e-mail address", "email")
        ts = now_ms()
        async with self.store.transaction() as tx:
            if await tx.fetchval("SELECT id FROM members WHERE email = ?", email) is not None:
                raise InvalidParameter("email is already registered", "email")
            mid = await tx.fetchval(
                "INSERT INTO members (sn, email, name, password_hash, activated, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                "PEA" + secrets.token_hex(5).upper(),
                email,
                name,
                password_hash,
                int(activated),
                ts,
            )
            await ledger.open_accounts(tx, int(mid), self.config.currencies)
        return int(mid)

    async def member(self, member_id: int) -> dict[str, Any]:
        row = await self.store.fetchrow("SELECT * FROM members WHERE id = ?", member_id)
        if row is None:
            raise MemberNotFound(f"member {member_id} does not exist")
        return dict(row)

    async def member_by_email(self, email: str) -> dict[str, Any]:
        row = await self.store.fetchrow("SELECT * FROM members WHERE email = ?", email.strip().lower())
        if row is None:
            raise MemberNotFound(f"no member with e-mail {email}")
        return dict(row)

    async def _check_member(self, member_id: int) -> None:
        """Members are checked on every order; the answer is cached for a minute, and dropped as soon
        as a change of the member's rights is announced (node/auth_changes.py)."""
        hit = self._members.get(member_id)
        now = time.monotonic()
        if hit is None or hit[0] < now:
            gen = self._rights_gen
            row = await self.store.fetchrow("SELECT disabled FROM members WHERE id = ?", member_id)
            # a change announced while reading may not be in what was read: keep it a second only
            ttl = MEMBER_CACHE_S if gen == self._rights_gen else 1.0
            hit = (now + ttl, row is not None and not row["disabled"])
            if row is None:
                raise MemberNotFound(f"member {member_id} does not exist")
            self._members[member_id] = hit
        if not hit[1] or member_id in self.house_members:
            raise CreateOrderFailed("member is not allowed to trade")

    def _rights_changed(self, member_id: int, access_key: str | None) -> None:
        self._rights_gen += 1
        self._members.pop(member_id, None)

    async def deposit(self, member_id: int, currency: str, amount: str | int, txid: str | None = None,
                      channel: str = "admin") -> int:
        """Credit a member (an admin deposit, or a confirmed coin deposit): balance and ledger in one tx.

        `txid` makes it idempotent: the same (currency, txid) is credited once only.
        """
        cur = self.config.currencies.get(currency)
        if cur is None:
            raise InvalidParameter(f"currency {currency!r} does not exist", "currency")
        units = amount if isinstance(amount, int) and not isinstance(amount, bool) else parse_units(amount, cur.precision, "amount")
        if units <= 0:
            raise InvalidParameter("amount must be greater than zero", "amount")
        txid = txid or f"{channel}:{secrets.token_hex(12)}"
        ts = now_ms()
        async with self.store.transaction() as tx:
            if await tx.fetchval("SELECT id FROM members WHERE id = ?", member_id) is None:
                raise MemberNotFound(f"member {member_id} does not exist")
            dup = await tx.fetchval("SELECT id FROM deposits WHERE currency = ? AND txid = ?", currency, txid)
            if dup is not None:
                return int(dup)
            did = await tx.fetchval(
                "INSERT INTO deposits (member_id, currency, amount, fee, txid, channel, state, confirmations, created_at, done_at) "
                "VALUES (?, ?, ?, 0, ?, ?, 'accepted', 0, ?, ?) RETURNING id",
                member_id, currency, units, txid, channel, ts, ts,
            )
            await ledger.entry(tx, member_id, currency, units, 0, DEPOSIT, "deposit", int(did), ts,
                               MemberNotFound(f"member {member_id} has no {currency} account"))
        return int(did)

    async def accounts_of(self, member_id: int) -> list[dict[str, Any]]:
        rows = await self.store.fetch(
            "SELECT currency, balance, locked FROM accounts WHERE member_id = ? ORDER BY currency", member_id
        )
        order = list(self.config.currencies)
        out = [dict(r) for r in rows if r["currency"] in self.config.currencies]
        out.sort(key=lambda r: order.index(r["currency"]))
        return out

    # -- orders -----------------------------------------------------------------------------------
    def market(self, market_id: object) -> Market:
        m = self.config.markets.get(market_id) if isinstance(market_id, str) else None
        if m is None:
            raise InvalidParameter("market does not have a valid value", "market")
        return m

    def market_actor(self, market_id: str) -> MarketActor:
        actor = self.markets.get(market_id)
        if actor is None:
            raise InvalidParameter(f"market {market_id} is not run by this node", "market")
        return actor

    def ref(self, market_id: str) -> MarketActor | RemoteMarket:
        """The market's actor, here or on another node (through the bus)."""
        ref = self.refs.get(market_id)
        if ref is None:
            raise Unavailable(f"market {market_id} is run by another node and no message bus is configured")
        return ref

    def _on_status(self, topic: str, event: dict[str, Any]) -> None:
        """Remote markets' halted flags, from their status events."""
        if topic.endswith(".status"):
            ref = self.refs.get(event.get("market", ""))
            if ref is not None and ref is not self.markets.get(event.get("market", "")):
                ref.halted = bool(event.get("halted"))

    async def watch_accounts(self, member_id: int, on: bool) -> None:
        """Follow (or stop following) a member's account events from the other nodes of a cluster."""
        if self.link is not None:
            await self.link.watch_accounts(member_id, on)

    async def query(self, market_id: str, q: QueryBook) -> Any:
        """A read of a market's book: from memory when it runs here, else asked of its node."""
        actor = self.markets.get(market_id)
        if actor is not None:
            return actor.query(q)
        return await self.ref(market_id).ask(q)

    async def depth(self, market_id: str, limit: int) -> dict[str, Any]:
        """Aggregated levels (asks and bids best first) and the book's diff sequence number."""
        result: dict[str, Any] = await self.query(self.market(market_id).id, QueryBook("depth", limit=limit))
        return result

    async def book_orders(self, market_id: str, side: str, limit: int) -> list[dict[str, Any]]:
        """Resting orders of one side in priority order."""
        result: list[dict[str, Any]] = await self.query(self.market(market_id).id, QueryBook("orders", limit=limit, side=side))
        return result

    async def market_status(self, market_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.query(self.market(market_id).id, QueryBook("status"))
        return result

    async def prepare(self, member_id: int, o: OrderInput) -> OrderRequest:
        """Check an order completely and turn it into integers; raises with the field named."""
        m = self.market(o.market)
        if o.side not in SIDES:
            raise InvalidParameter("side does not have a valid value", "side")
        if o.ord_type not in ORD_TYPES:
            raise InvalidParameter("ord_type does not have a valid value", "ord_type")
        if o.tif not in TIFS:
            raise InvalidParameter("time_in_force does not have a valid value", "time_in_force")
        volume = parse_units(o.volume, m.volume_precision, "volume")
        if volume < m.min_volume:
            raise InvalidParameter(f"volume is below the market minimum of {m.min_volume} lots", "volume")
        if m.max_volume and volume > m.max_volume:
            raise InvalidParameter("volume is above the market maximum", "volume")
        client_id = o.client_id or None
        if client_id is not None and (len(client_id) > MAX_CLIENT_ID or not client_id.isprintable()):
            raise InvalidParameter(f"client_id must be at most {MAX_CLIENT_ID} printable characters", "client_id")
        ref = self.refs.get(m.id)
        if ref is not None and ref.halted:
            raise MarketHalted(f"market {m.id} is halted, trading is paused")
        price = stop = funds = 0
        if o.ord_type == MARKET:
            if o.price not in (None, ""):
                raise InvalidParameter("price must be empty for a market order", "price")
            if o.tif in (POST_ONLY,):
                raise InvalidParameter("time_in_force post_only is not allowed for a market order", "time_in_force")
            if o.side == "buy":
                est = await self.query(m.id, QueryBook("estimate", volume=volume))
                if est is None:
                    raise CreateOrderFailed("market is not deep enough")
                funds = est + (est * MARKET_BUY_MARGIN + 99) // 100
                return self._request(member_id, m, o, 0, volume, 0, client_id, m.quote.code, m.quote_units(funds), funds)
            currency, lock = order_lock(m, o.side, 0, volume)
            return self._request(member_id, m, o, 0, volume, 0, client_id, currency, lock, 0)
        if o.price in (None, ""):
            raise InvalidParameter("price is missing", "price")
        price = parse_units(o.price, m.price_precision, "price")
        if o.ord_type == STOP_LIMIT:
            if o.stop_price in (None, ""):
                raise InvalidParameter("stop_price is missing", "stop_price")
            stop = parse_units(o.stop_price, m.price_precision, "stop_price")
        elif o.stop_price not in (None, ""):
            raise InvalidParameter("stop_price is only for stop_limit orders", "stop_price")
        if price * volume >= 2**62 // max(m.quote_factor, 1):
            raise InvalidParameter("price × volume is too large", "volume")
        currency, lock = order_lock(m, o.side, price, volume)
        return self._request(member_id, m, o, price, volume, stop, client_id, currency, lock, funds)

    @staticmethod
    def _request(member_id: int, m: Market, o: OrderInput, price: int, volume: int, stop: int, client_id: str | None,
                 currency: str, lock: int, funds: int) -> OrderRequest:
        return OrderRequest(member_id, m.id, o.side, o.ord_type, price, volume, o.tif, stop, client_id, currency, lock, funds)

    def _account_actor(self, member_id: int) -> AccountActor:
        return self.accounts[member_id % len(self.accounts)]

    async def submit_order(self, member_id: int, o: OrderInput) -> dict[str, Any]:
        return (await self.submit_orders(member_id, [o]))[0]

    async def submit_orders(self, member_id: int, orders: list[OrderInput]) -> list[dict[str, Any]]:
        """All or nothing: either every order is accepted (funds locked) or none is."""
        return await self.place_orders(member_id, await self.prepare_orders(member_id, orders))

    async def prepare_orders(self, member_id: int, orders: list[OrderInput]) -> tuple[OrderRequest, ...]:
        """Every check that needs no balance: the member may trade and each order is well formed."""
        if not orders:
            raise InvalidParameter("orders is missing", "orders")
        await self._check_member(member_id)
        return tuple([await self.prepare(member_id, o) for o in orders])

    async def place_orders(self, member_id: int, reqs: tuple[OrderRequest, ...],
                           tonce: tuple[str, int] | None = None) -> list[dict[str, Any]]:
        """Lock the funds and accept the orders (all or none), burning the signed request's tonce
        in the same transaction when one is given (TonceReused if it was used before)."""
        result: list[dict[str, Any]] = await self._account_actor(member_id).ask(SubmitOrders(reqs, tonce))
        for r in reqs:
            self.accepted[r.market] = self.accepted.get(r.market, 0) + 1
        return result

    async def order_row(self, order_id: int) -> dict[str, Any] | None:
        row = await self.store.fetchrow("SELECT * FROM orders WHERE id = ?", order_id)
        return None if row is None else order_row_view(row)

    async def cancel_order(self, member_id: int | None, order_id: int) -> dict[str, Any]:
        """Only the market actor knows whether the order still rests: it decides and unlocks."""
        row = await self.store.fetchrow("SELECT market, member_id FROM orders WHERE id = ?", order_id)
        if row is None or (member_id is not None and int(row["member_id"]) != member_id):
            raise OrderNotFound(f"order {order_id} doesn't exist")
        result: dict[str, Any] = await self.ref(row["market"]).ask(CancelOrder(order_id, member_id))
        return result

    async def cancel_all(self, member_id: int | None, side: str | None = None, market: str | None = None) -> list[dict[str, Any]]:
        if side is not None and side not in SIDES:
            raise InvalidParameter("side does not have a valid value", "side")
        if market is not None:
            self.market(market)
        if member_id is None:
            markets = [market] if market else list(self.refs)
        else:
            rows = await self.store.fetch(
                "SELECT DISTINCT market FROM orders WHERE member_id = ? AND state IN ('wait', 'pending')", member_id
            )
            markets = sorted({r["market"] for r in rows if market is None or r["market"] == market})
        ids: list[int] = []
        for mid in markets:
            ids.extend(await self.ref(mid).ask(CancelAll(member_id, side)))
        out = []
        for oid in ids:
            row = await self.order_row(oid)
            if row is not None:
                out.append(row)
        return out

    async def set_halted(self, market: str, halted: bool) -> None:
        await self.ref(self.market(market).id).ask(SetHalted(halted))

    async def set_fees(self, market: str, maker: str, taker: str) -> dict[str, int]:
        """Change a market's maker/taker fee rates (decimal strings, e.g. "0.001") for new trades."""
        from node.config import FEE_DECIMALS

        m = self.market(market)
        msg = SetFees(parse_units(maker, FEE_DECIMALS, "maker_fee", allow_zero=True),
                      parse_units(taker, FEE_DECIMALS, "taker_fee", allow_zero=True))
        result: dict[str, int] = await self.ref(m.id).ask(msg)
        return result

    # -- reads ------------------------------------------------------------------------------------
    async def orders_of(self, member_id: int, market: str | None = None, states: tuple[str, ...] = ("wait", "pending"),
                        limit: int = 100, offset: int = 0, ascending: bool = True) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        args: list[Any] = [member_id, *states]
        sql = f"SELECT * FROM orders WHERE member_id = ? AND state IN ({marks})"
        if market is not None:
            sql += " AND market = ?"
            args.append(market)
        sql += f" ORDER BY id {'ASC' if ascending else 'DESC'} LIMIT ? OFFSET ?"
        rows = await self.store.fetch(sql, *args, limit, offset)
        return [order_row_view(r) for r in rows]

    async def trades_of_order(self, order_id: int) -> list[dict[str, Any]]:
        rows = await self.store.fetch("SELECT * FROM trades WHERE ask_id = ? OR bid_id = ? ORDER BY id", order_id, order_id)
        return [dict(r) for r in rows]

    async def cluster_status(self) -> dict[str, Any]:
        """This node's status, the whole cluster as the store tells it (owners, epochs, leases,
        heartbeats, problems), and each of this node's markets' queue lag."""
        from node.ownership import cluster_view

        out = self.status()
        out["leases"] = await self.leases.all()
        out["cluster"] = await cluster_view(self.store, self.config)
        if self.link is not None:
            out["bus"] = {"connected": self.link.connected, "published": self.link.published,
                          "consumed": self.link.consumed, "dropped_events": self.link.dropped_events}
            for mid in self.markets:
                out["markets"][mid]["queued"] = await self.link.queue_depth(mid)
        return out

    def status(self) -> dict[str, Any]:
        actors = [*self.markets.values(), *self.accounts]
        now = time.time()
        return {
            "node": self.node.name,
            "boot": self.leases.boot,
            "uptime": round(now - self.started_at, 1),
            "store": self.store.backend,
            "actors": [
                {"name": a.name, "running": a.running, "mailbox": a.depth, "processed": a.processed,
                 "batches": a.batches, "restarts": a.restarts, "last_error": a.last_error,
                 "recent_crashes": sum(1 for t in a.crashes if now - t < 600), "fenced": a.fenced}
                for a in actors
            ],
            "markets": {
                mid: {"halted": a.halted, "resting": len(a.engine), "state_hash": a.engine.state_hash(),
                      "book_seq": a.book_seq, "last_price": a.engine.last_price, "epoch": a.epoch,
                      "duplicates_dropped": a.duplicates_dropped, "claims_lost": a.claims_lost}
                for mid, a in self.markets.items()
            },
            "wallets": self.funds.status(),
        }

    # -- API v2 reads (REST API) -------------------------------------------------------------------
    # Read-only helpers of the REST API; they change no state and no existing behaviour.
    def currency(self, code: object, field: str = "currency") -> str:
        """A configured currency code, or InvalidParameter naming the field."""
        if not isinstance(code, str) or code not in self.config.currencies:
            raise InvalidParameter(f"{field} does not have a valid value", field)
        return code

    async def count_orders_of(self, member_id: int, market: str | None, states: tuple[str, ...]) -> int:
        """How many orders `orders_of` would page through (for the X-Total header)."""
        marks = ",".join("?" * len(states))
        sql = f"SELECT COUNT(*) FROM orders WHERE member_id = ? AND state IN ({marks})"
        args: list[Any] = [member_id, *states]
        if market is not None:
            sql += " AND market = ?"
            args.append(market)
        return int(await self.store.fetchval(sql, *args) or 0)

    async def deposit_address(self, member_id: int, currency: str) -> str:
        """Where the member deposits `currency` (the wallet's address, or a bank reference code);
        a currency without a wallet has none, and the answer says so instead of inventing one."""
        address: str = (await self.funds.deposit_address(member_id, self.currency(currency)))["address"]
        return address


def inputs_from(params: Mapping[str, Any]) -> OrderInput:
    """Build an OrderInput from API/form params, with Peatio's names (and ours for what Peatio lacked)."""
    def opt(key: str) -> str | None:
        v = params.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            raise InvalidParameter(f"{key} must be a string", key)
        return v

    def req(key: str) -> str:
        v = opt(key)
        if v is None or v == "":
            raise InvalidParameter(f"{key} is missing", key)
        return v

    return OrderInput(
        market=req("market"),
        side=req("side"),
        volume=req("volume"),
        price=opt("price"),
        ord_type=opt("ord_type") or LIMIT,
        tif=opt("time_in_force") or GTC,
        stop_price=opt("stop_price"),
        client_id=opt("client_id"),
    )


__all__ = ["Exchange", "ExchangeError", "OrderInput", "inputs_from"]
