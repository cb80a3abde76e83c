"""The composition root: where one node is put together, in this order.

1. `start_exchange`: the store, the event bus, the leases, the house accounts, the funds facade,
   given to the `Exchange`, which then starts its account, market and wallet actors
   (node/exchange/boot.py).
2. `build_services`: the services beside trading (members and mail, notices, security, KYC,
   tickets, admin, API keys, solvency, market data), each given what it uses, and the withdrawal
   policies (second factor, address book and hold, KYC limits) given to the funds facade. They hold
   without a web app: an admin command or a script gets the same checks as the pages and the API.
3. `build_web`: the parts only the web app uses (tonce burner, signatures, sessions, rate limits,
   market status, websocket hub) and the aiohttp application, which routes to all of the above.

`python -m node` (node/__main__.py), the cluster commands and the tests' node starters use these.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from aiohttp import web

from node import placement
from node.actors.lease import Leases, session_name
from node.admin.roles import Actor
from node.admin.service import Admin
from node.admin.uploads import uploads_root
from node.apikeys import ApiKeys
from node.auth_changes import ChangeFeed
from node.config import Config
from node.events import EventBus
from node.exchange import Exchange
from node.kyc import Kyc
from node.mail import mailer_from
from node.marketdata.service import MarketData
from node.members import Members
from node.notices import Notices
from node.secrets_box import SecretBox, key_source, load_server_key
from node.security.service import Security
from node.server_key import check_server_key
from node.services import Services
from node.solvency.service import SolvencyService
from node.store import open_store
from node.store.members import House
from node.tickets import Tickets
from node.tonces import TonceBook
from node.wallet import check_wallets
from node.wallet.funds import Funds, WithdrawPolicies
from node.web.app import WebParts, make_app
from node.web.auth import Authenticator, TonceActor
from node.web.market_status import MarketStatus
from node.web.ratelimit import RateLimiter
from node.web.session import SessionStore
from node.web.ws import Hub, WsConfig

DEFAULT_KEY_FILE = "var/secret.key"


async def start_exchange(config: Config, node_name: str | None = None, *, actors: bool = True) -> Exchange:
    """The node's store, event bus, leases, house accounts and funds facade, and, unless
    `actors=False` (admin commands beside a running node), its market, account and wallet actors,
    started. Whatever fails on the way stops what was started (the store lock included)."""
    node = placement.node_conf(config, node_name)  # cluster.toml's, or one the store knows (node/placement.py)
    check_wallets(config)  # the channel families' own settings, before anything is opened
    boot = secrets.token_hex(6)  # this process: its leases, its sessions in the store, its queues
    store = await open_store(config.database, synchronous=config.sqlite_synchronous,
                             timeout=config.actors.store_timeout_ms / 1000,
                             application_name=session_name(f"{node.name}:{boot}"), pool=config.pool)
    leases = Leases(store, node.name, config.actors.lease_ms, boot=boot)
    house = House()
    ex = Exchange(config, node, store, bus=EventBus(), leases=leases, house=house,
                  funds=Funds(config, node.name, store, leases, house), tonces=TonceBook(),
                  auth_changes=ChangeFeed(store))
    try:
        await ex.boot(actors)
    except BaseException:
        await ex.stop()
        raise
    return ex


def build_services(ex: Exchange, master_key: bytes) -> Services:
    """Every service of the node, on a started exchange, with the withdrawal policies in force."""
    config = ex.config
    members = Members(ex, mailer_from(config.mail), config.mail.base_url or f"http://{ex.node.host}:{ex.node.port}")
    notices = Notices(ex, lambda: members.mailer, config.name)
    security = Security(ex, members, master_key)
    uploads = uploads_root(config)
    kyc = Kyc(ex.store, config, uploads)
    tickets = Tickets(ex.store, uploads, lambda: members.mailer, members.base_url, config.name)

    async def reset_2fa(member_id: int, actor: Actor, reason: str) -> bool:
        return await security.reset_2fa(member_id, actor.member_id, actor.label, reason)

    admin = Admin(ex, kyc, tickets, second_factor_reset=reset_2fa)  # the 2FA reset is the security module's
    keys = ApiKeys(ex.store, SecretBox(master_key, "api-secret"))
    ex.auth_changes.listeners.append(keys.on_change)  # revocations made on any node
    ex.funds.protect(WithdrawPolicies(second_factor=security.withdraw_code, address_book=security.addresses,
                                      limit=kyc.check_withdraw if config.admin.withdraw_limits else None))
    return Services(exchange=ex, keys=keys, members=members, notices=notices, security=security, kyc=kyc,
                    tickets=tickets, admin=admin, solvency=SolvencyService(ex), marketdata=MarketData(ex),
                    uploads=uploads, master_key=master_key)


async def keyed_services(ex: Exchange, key_file: str | Path) -> Services:
    """`build_services` with the server key of `key_file` (or `EXCHANGE_SECRET_KEY`), as `serve` and
    the commands that seal or open secrets get it, once the store has confirmed it is the exchange's
    key (node/server_key.py): a wrong key stops them at once, naming where it came from."""
    master_key = load_server_key(key_file)
    await check_server_key(ex.store, master_key, key_source(key_file))
    return build_services(ex, master_key)


def build_web(services: Services, *, ops_routes: bool = True) -> web.Application:
    """The web app of the node: its own parts, wired to the services, and the routes.
    `ops_routes=False` when the operator endpoints have a listener of their own."""
    ex = services.exchange
    a, api = ex.config.actors, ex.config.api
    tonces = TonceActor(ex.store, ex.tonces, mailbox_size=a.mailbox_size, max_batch=a.max_batch, ask_timeout=a.ask_timeout)
    ex.extra_actors.append(tonces)  # watched by /metrics
    hub = Hub(ex, services.marketdata, services.keys, WsConfig(max_per_ip=ex.config.http.ws_max_per_ip))
    ex.metrics.ws_clients = lambda: len(hub.clients)
    status = MarketStatus(ex)
    hub.follow_status(status)
    hub.follow_notices(services.notices)  # credited deposits, withdrawal states: pushed to the member's pages
    parts = WebParts(tonces=tonces, auth=Authenticator(services.keys, tonces), sessions=SessionStore(ex.store),
                     limiter=RateLimiter(api.signed_limit, api.signed_window, api.public_limit, api.public_window),
                     status=status, hub=hub)
    return make_app(services, parts, ops_routes=ops_routes)


def web_app(ex: Exchange, key_file: str | Path = DEFAULT_KEY_FILE, *, ops_routes: bool = True) -> web.Application:
    """Services and web app of a started exchange, the master key read from (or made in) `key_file`."""
    return build_web(build_services(ex, load_server_key(key_file)), ops_routes=ops_routes)
