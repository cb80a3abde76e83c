"""Account shards: one writer per account row, also in a cluster.

A member's accounts belong to shard `member_id % count` (`[actors] account_shards`). The shard's
account actor is the only code on the order path that writes those rows: it locks funds for new
orders and applies the settlements of trades and finished orders. On a single node without a
cluster the node owns every shard, and a market's batch settles inline as before (one transaction).

In a cluster each shard is leased like a market (lease `accounts/<shard>` in `market_leases`, with
an epoch that the grant copies into `account_shards`), and every transaction that writes a shard's
accounts first reads that row `FOR SHARE` and requires its own epoch (`fence`): a deposed owner's
late batch rolls back, and a grant (an `UPDATE` of the row) waits for a batch in flight. Readers
`FOR SHARE` never wait for each other, so a market batch settling inline and the shard's own batch
do not queue behind one lock.

A market's batch settles inline only the members whose shard this process owns (fenced in the same
transaction), and always its own fee account (`House.market_fee_members`): nobody trades that
account and no account actor writes it, so it belongs to its market, fenced by the market's epoch,
and fees never need a notice to another node. For the others it writes **settlement rows** (an outbox, `SETTLEMENTS_BULK`) with the
trades, and after the commit tells the shard's owner their ids. The owner applies a batch of them
in one transaction (`claim`): `UPDATE settlements SET applied_at … WHERE id IN (…) AND applied_at IS
NULL RETURNING …` and the ledger rows of exactly the rows it claimed, so a duplicate message or a
sweep that races one applies nothing twice. A lost message is picked up by the owner's sweep. In
between, funds stay safe: settlements only take from `locked` or add to `balance`, so the account
actor's decisions, made on `balance`, never become wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from node.actors.lease import SHARD_PREFIX as LEASE_PREFIX
from node.store import Bulk, Store, Tx, ledger

LedgerRow = ledger.LedgerRow

SETTLEMENT_COLUMNS = ("id", "shard", "member_id", "currency", "d_balance", "d_locked", "fee", "reason", "ref_type",
                      "ref_id", "created_at")
SETTLEMENTS_BULK = Bulk.insert("settlements", SETTLEMENT_COLUMNS)
_RETURNED = "member_id, currency, d_balance, d_locked, fee, reason, ref_type, ref_id, created_at"
SWEEP_LIMIT = 1_000


def lease_name(shard: int) -> str:
    return f"{LEASE_PREFIX}{shard}"


def shard_of_lease(name: str) -> int | None:
    """The shard a lease name is for, None for a market's or a wallet's."""
    if not name.startswith(LEASE_PREFIX):
        return None
    return int(name[len(LEASE_PREFIX):])


def shard_of(member_id: int, count: int) -> int:
    return member_id % count


class ShardMap:
    """Which account shards this process owns now, each with the epoch its writes are fenced with.

    Without leases (a single node) every shard is owned, and nothing is fenced: the process lock
    (SQLite) or the markets' leases already make this the only serving process."""

    def __init__(self, count: int, *, leased: bool) -> None:
        if count < 1:
            raise ValueError("account shards: at least one")
        self.count = count
        self.leased = leased
        self.epochs: dict[int, int] = {} if leased else dict.fromkeys(range(count), 0)

    def of(self, member_id: int) -> int:
        return member_id % self.count

    def owns(self, shard: int) -> bool:
        return shard in self.epochs

    def split(self, rows: Iterable[LedgerRow], house: int | None = None
              ) -> tuple[list[LedgerRow], dict[int, list[LedgerRow]], dict[int, int]]:
        """A batch's ledger rows as (rows of owned shards, rows of other shards by shard, the owned
        shards touched with their epochs now: the fence of the inline part). The rows of `house`, the
        market's own fee account, always stay inline: that account belongs to its market, whose
        state-row fence covers them, not to a shard."""
        if not self.leased and len(self.epochs) == self.count:  # a single node owning every shard
            return list(rows), {}, {}
        local: list[LedgerRow] = []
        away: dict[int, list[LedgerRow]] = {}
        touched: dict[int, int] = {}
        for row in rows:
            if row[0] == house:
                local.append(row)
                continue
            shard = row[0] % self.count
            epoch = self.epochs.get(shard)
            if epoch is None:
                away.setdefault(shard, []).append(row)
            else:
                local.append(row)
                touched[shard] = epoch
        return local, away, touched if self.leased else {}


def fence_sql(store: Store, shards: Sequence[int]) -> tuple[str, list[Any]]:
    """The shards' rows, read `FOR SHARE` on PostgreSQL (a grant waits for us, we never wait for
    each other's reads); SQLite's write transaction is exclusive anyway."""
    share = " FOR SHARE" if store.backend == "postgresql" else ""
    marks = ",".join("?" * len(shards))
    return (f"SELECT shard, epoch FROM account_shards WHERE shard IN ({marks}) ORDER BY shard{share}",
            [*sorted(shards)])


def check_fence(rows: Sequence[Any], wanted: Mapping[int, int], error: Exception) -> None:
    """Raise `error` unless every shard in `wanted` is still at its epoch."""
    if lost_shards(rows, wanted):
        raise error


async def fence(tx: Tx, store: Store, wanted: Mapping[int, int], error: Exception) -> None:
    if wanted:
        sql, args = fence_sql(store, list(wanted))
        check_fence(await tx.fetch(sql, *args), wanted, error)


def fenced_returning_pg(sql: str, first: int) -> str:
    """PostgreSQL: `sql`, an UPDATE of one row, that also returns the shards' fence: the rows of
    the shards in the array `$first`, read `FOR SHARE` after the update has locked its own row, as
    [[shard, epoch], …] in shard order (NULL for none). One statement where the update and the
    fence were two trips; the same locks in the same order, and the epochs are checked as before
    (`check_fence_pairs`), in the same transaction."""
    return (f"{sql} RETURNING (SELECT array_agg(ARRAY[f.shard, f.epoch]) FROM (SELECT shard, epoch FROM "
            f"account_shards WHERE shard = ANY(${first}::bigint[]) ORDER BY shard FOR SHARE) f)")


def lost_shards(rows: Sequence[Any], wanted: Mapping[int, int | None]) -> list[int]:
    """The shards of `wanted` whose fence row (`fence_sql`'s) is no longer at their epoch."""
    return _lost({int(r["shard"]): int(r["epoch"]) for r in rows}, wanted)


def check_fence_pairs(pairs: Sequence[Sequence[int]] | None, wanted: Mapping[int, int], error: Exception) -> None:
    """`check_fence` for the [[shard, epoch], …] of `fenced_returning_pg`."""
    if _lost({int(shard): int(epoch) for shard, epoch in pairs or ()}, wanted):
        raise error


def _lost(found: Mapping[int, int], wanted: Mapping[int, int | None]) -> list[int]:
    return [shard for shard, epoch in wanted.items() if found.get(shard) != epoch]


def outbox_rows(ids: Sequence[int], away: Mapping[int, Sequence[LedgerRow]]) -> tuple[list[tuple[Any, ...]], dict[int, list[int]]]:
    """Settlement rows for the ledger rows of other shards, with the ids given (one each), and the
    ids by shard (what each owner is told after the commit)."""
    out: list[tuple[Any, ...]] = []
    by_shard: dict[int, list[int]] = {}
    it = iter(ids)
    for shard in sorted(away):
        for row in away[shard]:
            sid = next(it)
            out.append((sid, shard, *row))
            by_shard.setdefault(shard, []).append(sid)
    return out, by_shard


def claim_sql(store: Store, shards: Sequence[int], ids: Sequence[int], now: int) -> tuple[str, list[Any]]:
    """Mark the settlements of `shards` applied where they are not yet, answering the rows it
    marked: the ledger rows to post in the same transaction. A copy already applied (a duplicate
    message, the sweep) answers nothing, so it can never be applied twice."""
    if store.backend == "postgresql":
        return (f"UPDATE settlements SET applied_at = ? WHERE id = ANY(?::bigint[]) AND shard = ANY(?::bigint[]) "
                f"AND applied_at IS NULL RETURNING {_RETURNED}", [now, list(ids), list(shards)])
    return (f"UPDATE settlements SET applied_at = ? WHERE id IN ({','.join('?' * len(ids))}) "
            f"AND shard IN ({','.join('?' * len(shards))}) AND applied_at IS NULL RETURNING {_RETURNED}",
            [now, *ids, *shards])


def claimed_rows(rows: Sequence[Any]) -> list[LedgerRow]:
    return [(int(r["member_id"]), str(r["currency"]), int(r["d_balance"]), int(r["d_locked"]), int(r["fee"]),
             str(r["reason"]), str(r["ref_type"]), int(r["ref_id"]), int(r["created_at"])) for r in rows]


def unapplied_sql(shards: Sequence[int], before: int) -> tuple[str, list[Any]]:
    """The shards' settlements still unapplied, made before `before` (the sweep), oldest first."""
    return (f"SELECT id FROM settlements WHERE shard IN ({','.join('?' * len(shards))}) AND applied_at IS NULL "
            f"AND created_at < ? ORDER BY id LIMIT {SWEEP_LIMIT}", [*shards, before])
