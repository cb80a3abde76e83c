"""Store-backed proof-of-solvency snapshots: liabilities at one instant, proofs on demand, assets.

A snapshot reads every account's ``balance + locked`` for every currency inside one read-only
transaction (``store.snapshot()``: a WAL read transaction on SQLite, REPEATABLE READ on
PostgreSQL), so the whole ledger is seen at one commit while trading goes on. The trees (Peatio's
Maxwell tree and the v2 tree of ``docs/solvency-v2.md``) are built away from the event loop, in a
worker process when the snapshot is large, so that matching never waits for hashing.

What is kept per snapshot, and why:

* one 32-byte ``secret``: every member nonce of both schemes is an HMAC of it (v2: as its spec
  says; Maxwell: ``HMAC-SHA256(secret, "maxwell nonce" ‖ ctx ‖ key)[:16]`` as 32 hex chars), so
  no per-member nonce has to be stored. It is kept in clear beside the leaves: whoever can read
  it can read the balances themselves in the same database, so sealing it would protect nothing;
* the leaves per currency (member id, member key, amount), compressed: with the secret they
  re-derive the identical trees, hence every partial tree, for as long as the snapshot is kept;
* both published roots, the customer total and the house total.

The house fee account is **not** a leaf. Its balance is the exchange's fee income: money the
exchange owes nobody, just as Peatio's tree (member accounts only) never held Peatio's income.
It is published beside the root (``house``) so that anyone can reconcile
``liabilities + house = Σ(balance + locked)`` with the books, and assets are compared with the
customer liabilities only. Zero accounts are not leaves either: they are owed nothing.

The member key hashed into both trees is the member's e-mail, as Peatio's was: it is what the
member knows, and the v2 leaf hides it (only the member's own proof carries it).

Proof of assets: for every coin, each exchange address holding funds signs a statement naming the
snapshot (``signmessage``), through the currency's wallet channel (``node/wallet``); for fiat, the
figure an admin declared with an evidence note. The ratio is assets / customer liabilities.

Here: taking, keeping and publishing snapshots and cutting proofs; the trees are built by
node/solvency/trees.py, the assets are proven and stored by node/solvency/assets.py (`AssetProofs`),
and the admin's commands are node/solvency/commands.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson

from node.clock import now_ms
from node.errors import ExchangeError, InvalidParameter
from node.solvency import maxwell
from node.solvency.assets import AssetProofs, ReserveWallet, ratio_str
from node.solvency.trees import (
    INLINE_BELOW,
    BuildJob,
    CurrencyProofs,
    TreeWorker,
    build_off_loop,
    decode_leaves,
    iso_ms,
)

if TYPE_CHECKING:
    from node.exchange import Exchange

log = logging.getLogger(__name__)

__all__ = ["ProofNotFound", "SnapshotInfo", "SnapshotNotFound", "SolvencyService", "next_due"]

CACHE_SIZE = 8
"""How many (snapshot, currency) proof indexes are kept in memory (about 40 MB each at 100k accounts)."""

STALE_BUILD_MS = 3_600_000
"""A snapshot still 'building' after this long was interrupted (crash, kill): it is marked failed."""


class SnapshotNotFound(ExchangeError):
    """No published snapshot (yet), or not the one asked for."""

    code = 3301
    status = 404


class ProofNotFound(ExchangeError):
    """The member has no leaf in that snapshot: nothing was owed to them in that currency then."""

    code = 3302
    status = 404


def next_due(last_ms: int | None, now: int, interval_ms: int) -> int:
    """When the scheduler takes the next snapshot: on the next UTC boundary of the interval (daily:
    00:00 UTC), or at once when the last boundary passed without a snapshot (the node was down)."""
    boundary = now - now % interval_ms
    if last_ms is not None and last_ms < boundary:
        return now
    return boundary + interval_ms


@dataclass(frozen=True)
class SnapshotInfo:
    """What a finished snapshot reports (CLI, scheduler log, bench)."""

    id: int
    name: str
    taken_at: int
    read_ms: int
    build_ms: int
    totals: dict[str, int]  # currency -> customer liabilities (units)
    house: dict[str, int]
    accounts: int  # leaves in all trees
    assets: dict[str, str] = field(default_factory=dict)  # currency -> asset status


class SolvencyService:
    """Takes, keeps, publishes snapshots and cuts members' proofs. One per node (web app key)."""

    def __init__(self, ex: Exchange, reserves: Mapping[str, ReserveWallet] | None = None, *,
                 inline_below: int = INLINE_BELOW, cache_size: int = CACHE_SIZE) -> None:
        self.ex = ex
        self.asset_proofs = AssetProofs(ex, reserves)
        self.inline_below = inline_below
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, str], CurrencyProofs] = OrderedDict()
        self._loading: dict[tuple[int, str], asyncio.Task[CurrencyProofs]] = {}
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self.asset_proofs.close()

    # -- taking a snapshot ------------------------------------------------------------------------
    async def take_snapshot(self, *, assets: bool = True) -> SnapshotInfo:
        """Read the ledger at one instant, build both trees off the loop, store, then prove assets."""
        async with self._lock:
            return await self._take(assets)

    async def _take(self, with_assets: bool) -> SnapshotInfo:
        ex, store, conf = self.ex, self.ex.store, self.ex.config.solvency
        await self._fail_stale()
        secret = secrets.token_bytes(32)
        async with store.transaction() as tx:
            sid = int(await tx.fetchval(
                "INSERT INTO solvency_snapshots (state, created_at) VALUES ('building', ?) RETURNING id", now_ms()))
            name = f"{ex.config.name}#{sid}"
            await tx.execute("UPDATE solvency_snapshots SET name = ? WHERE id = ?", name, sid)
        worker: TreeWorker | None = None
        try:
            started = time.perf_counter()
            members = int(await store.fetchval("SELECT COUNT(*) FROM members"))
            if members * len(ex.config.currencies) >= self.inline_below:  # may be big: start the worker now
                worker = await TreeWorker().start()
            read_started = time.perf_counter()
            taken_at, rows = await self._read_ledger()
            read_ms = int((time.perf_counter() - read_started) * 1000)
            jobs: list[BuildJob] = []
            house: dict[str, int] = {}
            for code, (ids, keys, values, house_units) in rows.items():
                cur = ex.config.currencies[code]
                house[code] = house_units
                jobs.append(BuildJob(cur.symbol, cur.precision, name, taken_at, secret, conf.min_height, ids, keys,
                                     values, encode=True))
            built = await build_off_loop(jobs, self.inline_below, worker)
            build_ms = int((time.perf_counter() - started) * 1000)
            async with store.transaction() as tx:
                for code, job, proofs in zip(rows, jobs, built, strict=True):
                    await tx.execute(
                        "INSERT INTO solvency_liabilities (snapshot_id, currency, decimals, accounts, total, house, "
                        "maxwell_root, v2_root, leaves) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        sid, code, job.precision, len(job.keys), str(proofs.total), str(house[code]),
                        orjson.dumps(proofs.maxwell_root).decode(), orjson.dumps(proofs.v2_root).decode(),
                        proofs.leaves)
                    proofs.leaves = ""  # stored: no need to keep a copy in the cache
                await tx.execute(
                    "UPDATE solvency_snapshots SET state = 'ready', secret = ?, taken_at = ?, build_ms = ? WHERE id = ?",
                    secret.hex(), taken_at, build_ms, sid)
        except BaseException:
            with contextlib.suppress(Exception):  # the original error matters, not the clean-up's
                await store.execute("UPDATE solvency_snapshots SET state = 'failed' WHERE id = ?", sid)
            raise
        finally:
            if worker is not None:
                await worker.close()
        for code, proofs in zip(rows, built, strict=True):
            self._remember((sid, code), proofs)
        info = SnapshotInfo(sid, name, taken_at, read_ms, build_ms, {c: p.total for c, p in zip(rows, built, strict=True)},
                            house, sum(len(j.keys) for j in jobs))
        log.info("solvency snapshot %s: %d leaves, read %d ms, built %d ms", name, info.accounts, read_ms, build_ms)
        fiat = await self.asset_proofs.carry_fiat(sid)
        coins = await self.collect_assets(sid) if with_assets else {}
        return replace(info, assets={code: {**coins, **fiat}[code] for code in ex.config.currencies
                                     if code in coins or code in fiat})

    async def _read_ledger(self) -> tuple[int, dict[str, tuple[list[int], list[str], list[int], int]]]:
        """Every currency's non-zero accounts, with their settlements in flight, all read inside one
        snapshot transaction."""
        houses = self.ex.house_members or {self.ex.fee_member}
        out: dict[str, tuple[list[int], list[str], list[int], int]] = {}
        async with self.ex.store.snapshot() as tx:
            taken_at = now_ms()
            for code in self.ex.config.currencies:
                # Settlements not yet applied by the member's account shard (node/actors/shards.py)
                # are owed as much as the balance they will reach.
                rows = await tx.fetch(
                    "SELECT a.member_id, m.email, a.balance + a.locked + COALESCE(s.d, 0) FROM accounts a "
                    "JOIN members m ON m.id = a.member_id LEFT JOIN (SELECT member_id, SUM(d_balance + d_locked) AS d "
                    "FROM settlements WHERE applied_at IS NULL AND currency = ? GROUP BY member_id) s "
                    "ON s.member_id = a.member_id WHERE a.currency = ? AND a.balance + a.locked + COALESCE(s.d, 0) > 0 "
                    "ORDER BY a.member_id", code, code)
                ids: list[int] = []
                keys: list[str] = []
                values: list[int] = []
                house = 0
                for r in rows:
                    if r[0] in houses:  # the house's own fee accounts (one per market): income, not owed
                        house += int(r[2])
                        continue
                    ids.append(int(r[0]))
                    keys.append(r[1])
                    values.append(int(r[2]))
                out[code] = (ids, keys, values, house)
        return taken_at, out

    async def _fail_stale(self) -> None:
        await self.ex.store.execute(
            "UPDATE solvency_snapshots SET state = 'failed' WHERE state = 'building' AND created_at < ?",
            now_ms() - STALE_BUILD_MS)

    async def prune(self, now: int | None = None) -> int:
        """Delete snapshots older than `keep_days` (never the latest published one); returns how many."""
        keep = self.ex.config.solvency.keep_days
        if keep <= 0:
            return 0
        cutoff = (now if now is not None else now_ms()) - keep * 86_400_000
        latest = await self.ex.store.fetchval(
            "SELECT MAX(id) FROM solvency_snapshots WHERE state = 'ready'")
        rows = await self.ex.store.fetch(
            "SELECT id FROM solvency_snapshots WHERE created_at < ? AND id <> ?", cutoff, latest or 0)
        ids = [int(r[0]) for r in rows]
        if not ids:
            return 0
        async with self.ex.store.transaction() as tx:
            for sid in ids:
                for table in ("solvency_assets", "solvency_asset_status", "solvency_liabilities"):
                    await tx.execute(f"DELETE FROM {table} WHERE snapshot_id = ?", sid)
                await tx.execute("DELETE FROM solvency_snapshots WHERE id = ?", sid)
        for key in [k for k in self._cache if k[0] in ids]:
            del self._cache[key]
        return len(ids)

    # -- scheduling -------------------------------------------------------------------------------
    async def run_schedule(self) -> None:
        """Forever: a snapshot on every interval boundary, then prune. Only the node named by
        `[solvency] node` runs it, so a cluster takes one snapshot per interval, not one per node."""
        conf = self.ex.config.solvency
        if not conf.enabled or self.ex.node.name != conf.node:
            return
        interval = conf.interval_hours * 3_600_000
        while True:
            last = await self.ex.store.fetchval(
                "SELECT MAX(created_at) FROM solvency_snapshots WHERE state = 'ready'")
            now = now_ms()
            due = next_due(int(last) if last is not None else None, now, interval)
            await asyncio.sleep(max(0.0, (due - now) / 1000))
            try:
                info = await self.take_snapshot()
                await self.prune()
                log.info("scheduled solvency snapshot %s taken (assets: %s)", info.name, info.assets)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduled solvency snapshot failed; retrying in 5 minutes")
                await asyncio.sleep(300)

    # -- assets -----------------------------------------------------------------------------------
    async def collect_assets(self, snapshot_id: int) -> dict[str, str]:
        """Prove every coin's reserves for a published snapshot (`AssetProofs.collect`)."""
        return await self.asset_proofs.collect(await self._snapshot(snapshot_id))

    async def declare_fiat(self, currency: str, amount: str, evidence: str, declared_by: str = "admin") -> int:
        """An admin's figure for a fiat currency's reserves (`AssetProofs.declare_fiat`)."""
        return await self.asset_proofs.declare_fiat(currency, amount, evidence, declared_by)

    # -- publication ------------------------------------------------------------------------------
    async def _snapshot(self, snapshot_id: int | None = None) -> dict[str, Any]:
        if snapshot_id is None:
            row = await self.ex.store.fetchrow(
                "SELECT * FROM solvency_snapshots WHERE state = 'ready' ORDER BY id DESC LIMIT 1")
        else:
            row = await self.ex.store.fetchrow(
                "SELECT * FROM solvency_snapshots WHERE state = 'ready' AND id = ?", snapshot_id)
        if row is None:
            raise SnapshotNotFound("no proof-of-solvency snapshot has been published yet" if snapshot_id is None
                                   else f"snapshot {snapshot_id} does not exist (or is no longer kept)")
        return dict(row)

    @staticmethod
    def _snapshot_json(s: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": int(s["id"]), "name": s["name"], "taken_at": iso_ms(int(s["taken_at"])),
                "taken_at_ms": int(s["taken_at"]), "build_ms": int(s["build_ms"] or 0)}

    async def snapshots(self, limit: int = 30, offset: int = 0) -> list[dict[str, Any]]:
        rows = await self.ex.store.fetch(
            "SELECT * FROM solvency_snapshots WHERE state = 'ready' ORDER BY id DESC LIMIT ? OFFSET ?", limit, offset)
        return [self._snapshot_json(r) for r in rows]

    async def roots(self, snapshot_id: int | None = None) -> dict[str, Any]:
        """The public commitment: per currency both roots, the customer total and the house total."""
        snap = await self._snapshot(snapshot_id)
        rows = await self.ex.store.fetch(
            "SELECT currency, decimals, total, house, maxwell_root, v2_root FROM solvency_liabilities "
            "WHERE snapshot_id = ?", snap["id"])
        by_code = {r["currency"]: r for r in rows}
        out = []
        for code in self.ex.config.currencies:
            r = by_code.get(code)
            if r is None:
                continue
            prec = int(r["decimals"])
            out.append({
                "currency": code,
                "liabilities": maxwell.format_units(int(r["total"]), prec),
                "house": maxwell.format_units(int(r["house"]), prec),
                "maxwell": orjson.loads(r["maxwell_root"]),
                "v2": orjson.loads(r["v2_root"]),
            })
        return {"snapshot": self._snapshot_json(snap), "currencies": out}

    async def root(self, currency: str, scheme: str, snapshot_id: int | None = None) -> dict[str, Any] | None:
        """One bare root document, as the stand-alone verifier reads it."""
        snap = await self._snapshot(snapshot_id)
        row = await self.ex.store.fetchrow(
            "SELECT maxwell_root, v2_root FROM solvency_liabilities WHERE snapshot_id = ? AND currency = ?",
            snap["id"], currency)
        if row is None:
            raise SnapshotNotFound(f"snapshot {snap['id']} has no {currency} tree")
        doc: dict[str, Any] | None = orjson.loads(row["maxwell_root" if scheme == "maxwell" else "v2_root"])
        return doc

    async def assets(self, snapshot_id: int | None = None) -> dict[str, Any]:
        """Per currency: assets (signed addresses, or the declared fiat figure), liabilities, ratio."""
        snap = await self._snapshot(snapshot_id)
        sid = snap["id"]
        liab = {r["currency"]: r for r in await self.ex.store.fetch(
            "SELECT currency, decimals, total, house FROM solvency_liabilities WHERE snapshot_id = ?", sid)}
        status = {r["currency"]: r for r in await self.ex.store.fetch(
            "SELECT currency, state, detail FROM solvency_asset_status WHERE snapshot_id = ?", sid)}
        items: dict[str, list[Any]] = {}
        for r in await self.ex.store.fetch(
                "SELECT * FROM solvency_assets WHERE snapshot_id = ? ORDER BY currency, id", sid):
            items.setdefault(r["currency"], []).append(r)
        out = []
        for code, cur in self.ex.config.currencies.items():
            if code not in liab:
                continue
            prec = cur.precision
            fmt = maxwell.format_units
            owed = int(liab[code]["total"])
            st = status.get(code)
            state = st["state"] if st else "pending"
            entry: dict[str, Any] = {
                "currency": code, "kind": cur.kind, "status": state, "detail": st["detail"] if st else "",
                "liabilities": fmt(owed, prec), "house": fmt(int(liab[code]["house"]), prec),
            }
            rows = items.get(code, [])
            if state in ("proven", "declared"):
                held = sum(int(r["amount"]) for r in rows)
                entry.update(assets=fmt(held, prec), ratio=ratio_str(held, owed), solvent=held >= owed)
            else:
                entry.update(assets=None, ratio=None, solvent=None)
            if cur.kind == "coin":
                entry["addresses"] = [{"address": r["address"], "balance": fmt(int(r["amount"]), prec),
                                       "message": r["message"], "signature": r["signature"]} for r in rows]
            else:
                entry["evidence"] = rows[0]["evidence"] if rows else None
            out.append(entry)
        return {"snapshot": self._snapshot_json(snap), "currencies": out}

    # -- members' proofs --------------------------------------------------------------------------
    def _remember(self, key: tuple[int, str], proofs: CurrencyProofs) -> None:
        self._cache[key] = proofs
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def _proofs(self, snap: Mapping[str, Any], code: str) -> CurrencyProofs:
        """The currency's proof index: from memory, else rebuilt from the stored leaves and secret
        (checked against the stored roots, so a rebuilt tree can never disagree with the published one)."""
        key = (int(snap["id"]), code)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        task = self._loading.get(key)
        if task is None:  # one load per key, not tied to the request that started it
            task = asyncio.create_task(self._load(key, snap), name=f"solvency-load-{key[0]}-{code}")
            self._loading[key] = task
            task.add_done_callback(lambda _t: self._loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load(self, key: tuple[int, str], snap: Mapping[str, Any]) -> CurrencyProofs:
        code = key[1]
        row = await self.ex.store.fetchrow(
            "SELECT decimals, maxwell_root, v2_root, leaves FROM solvency_liabilities "
            "WHERE snapshot_id = ? AND currency = ?", key[0], code)
        if row is None:
            raise SnapshotNotFound(f"snapshot {key[0]} has no {code} tree")
        ids, keys, values = decode_leaves(row["leaves"])
        cur = self.ex.config.currencies[code]
        job = BuildJob(cur.symbol, int(row["decimals"]), snap["name"], int(snap["taken_at"]),
                       bytes.fromhex(snap["secret"]), int(orjson.loads(row["v2_root"])["height"]), ids, keys, values)
        proofs = (await build_off_loop([job], self.inline_below))[0]
        if proofs.v2_root != orjson.loads(row["v2_root"]) or proofs.maxwell_root != orjson.loads(row["maxwell_root"]):
            raise RuntimeError(f"snapshot {key[0]} {code}: rebuilt trees differ from the published roots")
        self._remember(key, proofs)
        return proofs

    async def proof(self, member_id: int, currency: str, snapshot_id: int | None = None) -> dict[str, Any]:
        """A member's proofs of one currency: Peatio's partial tree, the v2 proof, and both roots."""
        if currency not in self.ex.config.currencies:
            raise InvalidParameter("currency does not have a valid value", "currency")
        snap = await self._snapshot(snapshot_id)
        proofs = await self._proofs(snap, currency)
        i = proofs.find(member_id)
        if i is None:
            raise ProofNotFound(f"you had no {currency} balance in snapshot {snap['id']}: nothing to prove")
        key, pos = proofs.keys[i], proofs.v2_pos[i]
        assert proofs.maxwell is not None  # a member leaf exists, so the Maxwell tree does
        return {
            "currency": currency,
            "snapshot": self._snapshot_json(snap),
            "user": key,
            "balance": maxwell.format_units(proofs.v2.value(pos), self.ex.config.currencies[currency].precision),
            "maxwell": proofs.maxwell.partial_tree(i, key),
            "maxwell_root": proofs.maxwell_root,
            "v2": proofs.v2.proof(pos, key),
            "v2_root": proofs.v2_root,
        }

    async def proofs(self, member_id: int, snapshot_id: int | None = None) -> dict[str, Any]:
        """Every currency in which the member was owed something at the snapshot."""
        snap = await self._snapshot(snapshot_id)
        out = []
        for code in self.ex.config.currencies:
            try:
                out.append(await self.proof(member_id, code, int(snap["id"])))
            except (ProofNotFound, SnapshotNotFound):
                continue
        return {"snapshot": self._snapshot_json(snap), "proofs": out}
