"""The state one node's `Exchange` is made of, and the lookups every part of it uses.

`Exchange` (node/exchange/__init__.py) is assembled from parts by job: `boot.py` starts and stops
the node and hands markets over, `trading.py` checks and places orders, `queries.py` reads. They
share this state: the store, the event bus, the actors and which markets are reachable from here.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from node.account_shards import AccountShards
from node.actors.account import AccountActor, order_row_view
from node.actors.lease import Leases, ProcessLock
from node.actors.market import MarketActor
from node.actors.messages import QueryBook
from node.actors.runtime import Actor
from node.auth_changes import ChangeFeed
from node.cluster.rabbit import RabbitLink, RemoteMarket
from node.config import Config, Market, NodeConf
from node.errors import InvalidParameter, MemberNotFound, Unavailable
from node.events import EventBus
from node.market import GTC, LIMIT
from node.metrics import NodeMetrics
from node.ownership import Ownership
from node.store import Store, members
from node.store.members import House
from node.tonces import TonceBook
from node.wallet.funds import Funds


class OrderInput(NamedTuple):
    """An order as a client states it: decimal strings, not yet checked (a named tuple: made for
    every order, and cheaper than a frozen dataclass)."""

    market: str
    side: str
    volume: str
    price: str | None = None
    ord_type: str = LIMIT
    tif: str = GTC
    stop_price: str | None = None
    client_id: str | None = None


class ExchangeCore:
    def __init__(self, config: Config, node: NodeConf, store: Store, *, bus: EventBus, leases: Leases, house: House,
                 funds: Funds, tonces: TonceBook, auth_changes: ChangeFeed) -> None:
        """The parts are made by the composition root (node/bootstrap.py `start_exchange`)."""
        self.config = config
        self.node = node
        self.store = store
        self.bus = bus
        self.markets: dict[str, MarketActor] = {}  # the markets this node runs
        self.refs: dict[str, MarketActor | RemoteMarket] = {}  # every market reachable from here
        self.link: RabbitLink | None = None
        self.shards: AccountShards | None = None  # the account shards run here (node/account_shards.py)
        self.tonces = tonces  # the replay memory's writer state, shared by the API and account actors
        self.auth_changes = auth_changes  # revoked rights, announced by whichever node made the change
        self.auth_changes.listeners.append(self._rights_changed)
        self.house = house  # the house fee accounts (node/store/members.py), known once booted
        self.started_at = time.time()
        self._members: dict[int, tuple[float, bool]] = {}
        self._rights_gen = 0  # counts announced rights changes (see _check_member)
        self.leases = leases  # this process's leases: its markets' and wallets'
        self.ownership: Ownership | None = None
        self._process_lock: ProcessLock | None = None
        self.funds = funds  # deposits, withdrawals, wallet actors (node/wallet)
        self.accepted: dict[str, int] = {}  # market → orders accepted through this node (/metrics)
        self.extra_actors: list[Actor[Any]] = []  # actors the web layer runs (tonces): watched by /metrics
        self.metrics = NodeMetrics(self)

    @property
    def fee_member(self) -> int:
        """The house account: withdrawal fees and other income."""
        return self.house.fee_member

    @property
    def market_fee_members(self) -> dict[str, int]:
        """One house fee account per market."""
        return self.house.market_fee_members

    @property
    def house_members(self) -> set[int]:
        return self.house.members

    def _rights_changed(self, member_id: int, access_key: str | None) -> None:
        self._rights_gen += 1
        self._members.pop(member_id, None)

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

    def currency(self, code: object, field: str = "currency") -> str:
        """A configured currency code, or InvalidParameter naming the field."""
        if not isinstance(code, str) or code not in self.config.currencies:
            raise InvalidParameter(f"{field} does not have a valid value", field)
        return code

    @property
    def accounts(self) -> list[AccountActor]:
        """The account actors running here: one, writing every account shard this node runs."""
        return [] if self.shards is None else self.shards.running()

    def shard_node(self, member_id: int) -> str | None:
        """In a cluster, the node that runs the member's account shard (the `X-Shard-Node` of signed
        answers): requests sent there skip the bus hop to it. None on a single node."""
        if self.shards is None or not self.shards.map.leased:
            return None
        return self.shards.owner_of(member_id)

    async def query(self, market_id: str, q: QueryBook) -> Any:
        """A read of a market's book: from memory when it runs here, else asked of its node."""
        actor = self.markets.get(market_id)
        if actor is not None:
            return actor.query(q)
        return await self.ref(market_id).ask(q)

    def _on_status(self, topic: str, event: dict[str, Any]) -> None:
        """Remote markets' halted flags, from their status events."""
        if topic.endswith(".status"):
            ref = self.refs.get(event.get("market", ""))
            if ref is not None and ref is not self.markets.get(event.get("market", "")):
                ref.halted = bool(event.get("halted"))

    async def order_row(self, order_id: int) -> dict[str, Any] | None:
        row = await self.store.fetchrow("SELECT * FROM orders WHERE id = ?", order_id)
        return None if row is None else order_row_view(row)

    # -- members ----------------------------------------------------------------------------------
    async def create_member(self, email: str, name: str = "", password_hash: str | None = None, activated: bool = True) -> int:
        return await members.create_member(self.store, self.config.currencies, email, name, password_hash, activated)

    async def member(self, member_id: int) -> dict[str, Any]:
        return await members.member_row(self.store, member_id)

    async def member_by_email(self, email: str) -> dict[str, Any]:
        row = await self.store.fetchrow("SELECT * FROM members WHERE email = ?", email.strip().lower())
        if row is None:
            raise MemberNotFound(f"no member with e-mail {email}")
        return dict(row)
