"""Member rows as the core needs them: a new member (with an empty account per currency), one
member read, and the house fee accounts. Both `Exchange` and the funds facade use these, so neither
has to hold the other to create or read a member."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from node.clock import now_ms
from node.errors import InvalidParameter, MemberNotFound
from node.store import ledger
from node.store.base import Store
from node.store.schema import HOUSE_EMAIL


async def create_member(store: Store, currencies: Iterable[str], email: str, name: str = "",
                        password_hash: str | None = None, activated: bool = True) -> int:
    """A new member and its accounts in one transaction; a taken e-mail is refused by name, also
    when another node registers it at the same moment (the insert does nothing on the unique e-mail,
    instead of failing with the database's own error)."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise InvalidParameter("email is not a valid e-mail address", "email")
    ts = now_ms()
    async with store.transaction() as tx:
        if await tx.fetchval("SELECT id FROM members WHERE email = ?", email) is not None:
            raise InvalidParameter("email is already registered", "email")
        mid = await tx.fetchval(
            "INSERT INTO members (sn, email, name, password_hash, activated, created_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (email) DO NOTHING RETURNING id",
            "PEA" + secrets.token_hex(5).upper(),
            email,
            name,
            password_hash,
            int(activated),
            ts,
        )
        if mid is None:
            raise InvalidParameter("email is already registered", "email")
        await ledger.open_accounts(tx, int(mid), currencies)
    return int(mid)


async def member_row(store: Store, member_id: int) -> dict[str, Any]:
    """The member's row, or MemberNotFound."""
    row = await store.fetchrow("SELECT * FROM members WHERE id = ?", member_id)
    if row is None:
        raise MemberNotFound(f"member {member_id} does not exist")
    return dict(row)


async def ensure_house(store: Store, currencies: Iterable[str], market: str | None = None) -> int:
    """The house fee account (or a market's own), created at first start."""
    email = HOUSE_EMAIL if market is None else HOUSE_EMAIL.replace("house@", f"house+{market}@")
    row = await store.fetchrow("SELECT id FROM members WHERE email = ?", email)
    if row is not None:
        return int(row["id"])
    name = "House fee account" + ("" if market is None else f" ({market})")
    try:
        return await create_member(store, currencies, email, name=name)
    except InvalidParameter:  # another node created it at the same moment
        row = await store.fetchrow("SELECT id FROM members WHERE email = ?", email)
        assert row is not None
        return int(row["id"])


@dataclass
class House:
    """The house accounts: `fee_member` takes withdrawal fees and other income, and each market has
    its own fee account (trades of different markets, maybe on different nodes, never wait for each
    other on the same account rows). Known once the store is open (`ensure`); none may trade."""

    fee_member: int = 0
    market_fee_members: dict[str, int] = field(default_factory=dict)
    members: set[int] = field(default_factory=set)

    async def ensure(self, store: Store, currencies: Iterable[str], markets: Iterable[str]) -> None:
        codes = list(currencies)
        self.fee_member = await ensure_house(store, codes)
        for mid in markets:
            self.market_fee_members[mid] = await ensure_house(store, codes, mid)
        self.members = {self.fee_member, *self.market_fee_members.values()}
