"""The services of one node, as the composition root (node/bootstrap.py) made them.

The web layer receives this object and routes to what it holds; it makes none of it, so nothing
depends on the order in which the routes are registered, and the same services (with the same
withdrawal policies on the funds facade) exist without a web app: an admin command, a script, a test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from node.admin.service import Admin
from node.apikeys import ApiKeys
from node.exchange import Exchange
from node.kyc import Kyc
from node.marketdata.service import MarketData
from node.members import Members
from node.notices import Notices
from node.security.service import Security
from node.solvency.service import SolvencyService
from node.tickets import Tickets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    exchange: Exchange
    keys: ApiKeys
    members: Members  # sign-up, log-in, activation and password mails
    notices: Notices  # credited deposits, withdrawal states: mailed (and pushed by the websocket)
    security: Security  # second factors, withdrawal addresses and holds
    kyc: Kyc
    tickets: Tickets
    admin: Admin
    solvency: SolvencyService
    marketdata: MarketData
    uploads: Path  # where KYC documents and ticket attachments are kept
    master_key: bytes  # the server's key: API secrets, TOTP secrets, device cookies

    async def start(self) -> None:
        """The services' background work: market data, notices, the security sweeper."""
        await self.marketdata.start()
        await self.notices.start()
        await self.security.start()

    async def stop(self) -> None:
        await self.security.stop()
        await self.notices.stop()
        await self.marketdata.stop()
        await self.solvency.close()

    def mail_links_at(self, host: str, port: int) -> str:
        """Mailed links (activation, password reset, withdrawal confirmation, tickets) need the
        address members reach the exchange at. `[mail] base_url` says it; without it, the address
        this node really serves on (after `serve --host/--port`) is used instead of cluster.toml's,
        and a warning says so at start-up: it is rarely what members outside this machine can open."""
        mail = self.exchange.config.mail
        if mail.base_url:
            return mail.base_url
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"
        self.members.base_url = url
        self.tickets.base_url = url
        log.warning("[mail] base_url is not set: mailed links point to %s, the address this node serves on. "
                    "Set [mail] base_url in cluster.toml to the exchange's public address.", url)
        return url
