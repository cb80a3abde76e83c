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
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import hmac
import logging
import os
import pickle
import secrets
import sys
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from node.clock import now_ms
from node.errors import ExchangeError, InvalidParameter
from node.solvency import maxwell, v2

if TYPE_CHECKING:
    from node.exchange import Exchange

log = logging.getLogger(__name__)

__all__ = [
    "CurrencyProofs",
    "MaxwellIndex",
    "ProofNotFound",
    "ReserveWallet",
    "SnapshotNotFound",
    "SolvencyService",
    "V2Index",
    "build_currency",
    "maxwell_nonce",
    "next_due",
    "ratio_str",
]

INLINE_BELOW = 20_000
"""Below this many leaves in a snapshot the trees are built on the event loop (a few tens of ms);
above, in a worker process, where hashing cannot delay an order."""

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


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc2822_ms(ms: int) -> str:
    """Peatio's root.json timestamp style ("Mon, 24 Mar 2014 13:50:29 +0000")."""
    return format_datetime(datetime.fromtimestamp(ms // 1000, UTC))


def ratio_str(assets: int, liabilities: int, places: int = 8) -> str | None:
    """assets / liabilities, rounded **down** to `places` decimals with integer arithmetic only,
    so 0.999999999 never shows as 1; None when nothing is owed (the ratio is unbounded)."""
    if liabilities <= 0:
        return None
    scale = 10**places
    q = assets * scale // liabilities
    return f"{q // scale}.{q % scale:0{places}d}"


def next_due(last_ms: int | None, now: int, interval_ms: int) -> int:
    """When the scheduler takes the next snapshot: on the next UTC boundary of the interval (daily:
    00:00 UTC), or at once when the last boundary passed without a snapshot (the node was down)."""
    boundary = now - now % interval_ms
    if last_ms is not None and last_ms < boundary:
        return now
    return boundary + interval_ms


# --------------------------------------------------------------------------- pure tree building


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def maxwell_nonce(secret: bytes, currency: str, snapshot: str, key: str) -> str:
    """A member's Maxwell nonce: 16 bytes of HMAC of the snapshot secret, as Peatio's 32 hex chars.

    Indistinguishable from Peatio's random nonces to anyone without the secret, and re-derivable
    by the exchange, so that no nonce is stored per member.
    """
    ctx = _lp(currency.encode()) + _lp(snapshot.encode())
    return hmac.digest(secret, b"maxwell nonce" + ctx + key.encode(), "sha256")[:16].hex()


@dataclass(frozen=True)
class BuildJob:
    """Everything needed to (re)build one currency's two trees; picklable for a worker process."""

    currency: str  # the symbol in the JSON, e.g. "BTC"
    precision: int
    snapshot: str
    taken_at: int  # ms
    secret: bytes
    min_height: int
    member_ids: list[int]
    keys: list[str]
    values: list[int]
    encode: bool = False  # also compress the leaves for storage (a new snapshot, not a rebuild)


def _pack(values: Sequence[int]) -> bytes:
    """Integers as 16-byte big-endian words: a level of sums in a sixth of a list of ints' memory."""
    return b"".join(v.to_bytes(16, "big") for v in values)


def _word(blob: bytes, i: int) -> int:
    return int.from_bytes(blob[16 * i : 16 * i + 16], "big")


class MaxwellIndex:
    """A Maxwell tree kept compactly (sums and hashes as byte strings per level, no per-node
    objects): cuts Peatio's partial tree exactly as :meth:`maxwell.MaxwellTree.partial_tree` does.
    Positions are leaf indexes (the tree's input order)."""

    def __init__(self, tree: maxwell.MaxwellTree) -> None:
        self.currency = tree.currency
        self.precision = tree.precision
        self.timestamp = tree.timestamp
        self.sizes = [len(level) for level in tree.level_sums]
        self.nonces = "".join(tree.nonces)
        self.sums = [_pack(level) for level in tree.level_sums]
        self.hashes = [bytes.fromhex("".join(level)) for level in tree.level_hashes]

    def _fmt(self, units: int) -> str:
        return maxwell.format_units(units, self.precision)

    def root_json(self) -> dict[str, Any]:
        return {
            "root": {"hash": self.hashes[-1].hex(), "sum": self._fmt(_word(self.sums[-1], 0))},
            "currency": self.currency,
            "timestamp": self.timestamp,
        }

    def partial_tree(self, pos: int, user: str) -> dict[str, Any]:
        """The partial tree of the leaf at `pos`, whose member key is `user`."""
        leaf = {"sum": self._fmt(_word(self.sums[0], pos)), "nonce": self.nonces[32 * pos : 32 * pos + 32], "user": user}
        node: dict[str, Any] = {"data": leaf}
        for size, sums, hashes in zip(self.sizes[:-1], self.sums[:-1], self.hashes[:-1], strict=True):
            sib = pos ^ 1
            if sib < size:
                sib_node = {"data": {"sum": self._fmt(_word(sums, sib)), "hash": hashes[32 * sib : 32 * sib + 32].hex()}}
                node = {"right": sib_node, "left": node} if pos % 2 == 0 else {"left": sib_node, "right": node}
            pos //= 2
        return {"partial_tree": node}


class V2Index:
    """A v2 tree kept compactly: cuts the proof of :meth:`v2.V2Tree.proof` from byte strings.
    Positions are the tree's own (leaves sorted by uid)."""

    def __init__(self, tree: v2.V2Tree) -> None:
        self.currency = tree.currency
        self.snapshot = tree.snapshot
        self.height = tree.height
        self.uids = b"".join(tree.uids)
        self.nonces = b"".join(tree.nonces)
        self.values = [_pack(level) for level in tree.values]
        self.hashes = [b"".join(level) for level in tree.hashes]
        self.root = tree.root_json()

    def root_json(self) -> dict[str, Any]:
        return dict(self.root)

    def value(self, pos: int) -> int:
        return _word(self.values[0], pos)

    def proof(self, pos: int, user: str) -> dict[str, Any]:
        """The proof of the leaf at `pos`, whose member key is `user`."""
        leaf = {
            "uid": self.uids[32 * pos : 32 * pos + 32].hex(),
            "nonce": self.nonces[32 * pos : 32 * pos + 32].hex(),
            "value": str(self.value(pos)),
        }
        path: list[dict[str, str]] = []
        for level in range(self.height):
            sib = pos ^ 1
            path.append({
                "side": "left" if sib < pos else "right",
                "value": str(_word(self.values[level], sib)),
                "hash": self.hashes[level][32 * sib : 32 * sib + 32].hex(),
            })
            pos >>= 1
        return {"scheme": v2.SCHEME, "currency": self.currency, "snapshot": self.snapshot, "user": user,
                "leaf": leaf, "path": path}


@dataclass
class CurrencyProofs:
    """One currency of one snapshot: both roots and what cuts any member's proofs.

    Leaves are in member id order (the Maxwell tree's order); a member is found by bisection in
    `member_ids`, and `v2_pos` says where their leaf sits in the (uid-sorted) v2 tree. Arrays and
    byte strings only, so a cached entry costs little memory and crosses from the worker process
    without a long unpickling pause on the event loop."""

    currency: str
    total: int
    maxwell_root: dict[str, Any] | None  # None when nobody is owed anything (Peatio has no empty tree)
    v2_root: dict[str, Any]
    maxwell: MaxwellIndex | None
    v2: V2Index
    member_ids: array = field(default_factory=lambda: array("q"))
    keys: list[str] = field(default_factory=list)
    v2_pos: array = field(default_factory=lambda: array("q"))
    leaves: str = ""  # encode_leaves(...) when the job asked for it

    def find(self, member_id: int) -> int | None:
        """The member's leaf index, or None if they have no leaf."""
        i = bisect.bisect_left(self.member_ids, member_id)
        return i if i < len(self.member_ids) and self.member_ids[i] == member_id else None


def build_currency(job: BuildJob) -> CurrencyProofs:
    """Both trees of one currency; a pure function (runs in a worker process for big snapshots)."""
    if any(a >= b for a, b in zip(job.member_ids, job.member_ids[1:], strict=False)):
        raise ValueError("leaves must be in increasing member id order")
    accounts = list(zip(job.keys, job.values, strict=True))
    mindex: MaxwellIndex | None = None
    if accounts:
        nonces = {key: maxwell_nonce(job.secret, job.currency, job.snapshot, key) for key in job.keys}
        mtree = maxwell.build_tree(accounts, precision=job.precision, currency=job.currency,
                                   timestamp=rfc2822_ms(job.taken_at), nonces=nonces)
        mindex = MaxwellIndex(mtree)
    vtree = v2.build_tree(accounts, precision=job.precision, currency=job.currency, snapshot=job.snapshot,
                          timestamp=iso_ms(job.taken_at), secret=job.secret, min_height=job.min_height)
    vindex = V2Index(vtree)
    return CurrencyProofs(
        currency=job.currency,
        total=vtree.root_value,
        maxwell_root=mindex.root_json() if mindex else None,
        v2_root=vindex.root_json(),
        maxwell=mindex,
        v2=vindex,
        member_ids=array("q", job.member_ids),
        keys=list(job.keys),
        v2_pos=array("q", (vtree.index[k] for k in job.keys)),
        leaves=encode_leaves(job.member_ids, job.keys, job.values) if job.encode else "",
    )


def build_all(jobs: Sequence[BuildJob]) -> list[CurrencyProofs]:
    return [build_currency(j) for j in jobs]


def encode_leaves(member_ids: Sequence[int], keys: Sequence[str], values: Sequence[int]) -> str:
    """Leaves as compressed JSON text (portable: a TEXT column on both backends)."""
    raw = orjson.dumps([list(member_ids), list(keys), [str(v) for v in values]])
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def decode_leaves(text: str) -> tuple[list[int], list[str], list[int]]:
    ids, keys, values = orjson.loads(zlib.decompress(base64.b64decode(text)))
    return [int(i) for i in ids], [str(k) for k in keys], [int(v) for v in values]


PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class TreeWorker:
    """A child Python process that builds trees, so the hashing runs on another core than the event
    loop. Started early (`start`), so its interpreter start-up overlaps the ledger read; fed its jobs
    on stdin and answering on stdout (pickle between a process and its own child).

    A plain `python -c` child rather than a multiprocessing pool: a spawned pool re-imports the
    parent's `__main__`, which hangs a program that embeds the exchange in an unguarded script."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> TreeWorker:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT + (os.pathsep + path if path else "")}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from node.solvency.service import worker_main; worker_main()",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        return self

    async def run(self, jobs: Sequence[BuildJob]) -> list[CurrencyProofs]:
        if self.proc is None:
            await self.start()
        assert self.proc is not None
        out, err = await self.proc.communicate(pickle.dumps(list(jobs), pickle.HIGHEST_PROTOCOL))
        if self.proc.returncode != 0:
            raise RuntimeError(f"tree worker exited with {self.proc.returncode}: {err.decode(errors='replace')[-2000:]}")
        result: list[CurrencyProofs] = pickle.loads(out)
        return result

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def worker_main() -> None:
    """The child's side of :class:`TreeWorker`."""
    jobs = pickle.load(sys.stdin.buffer)
    sys.stdout.buffer.write(pickle.dumps(build_all(jobs), pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()


async def build_off_loop(jobs: Sequence[BuildJob], inline_below: int = INLINE_BELOW,
                         worker: TreeWorker | None = None) -> list[CurrencyProofs]:
    """Small snapshots inline (tens of ms); big ones in a worker process (`worker`, else a fresh
    one), so the event loop - and so trading - keeps its core while the trees are hashed."""
    if sum(len(j.keys) for j in jobs) < inline_below:
        return build_all(jobs)
    own = worker is None
    worker = worker or TreeWorker()
    try:
        return await worker.run(jobs)
    finally:
        if own:
            await worker.close()


# --------------------------------------------------------------------------- assets


class ReserveWallet(Protocol):
    """What proving a coin's reserves needs from a wallet: its funded addresses, and a signature by
    each. Any bitcoind-compatible daemon does it (``listunspent`` / ``signmessage``)."""

    async def holdings(self, min_confirmations: int) -> list[tuple[str, int]]:
        """(address, amount in smallest units) for every address holding confirmed funds."""
        ...

    async def sign_message(self, address: str, message: str) -> str:
        """The address's signature of `message` (base64, as ``signmessage`` gives it)."""
        ...

    async def close(self) -> None: ...


class ChannelReserves:
    """A :class:`ReserveWallet` over a bitcoind-family wallet channel (``node/wallet/bitcoind``):
    its JSON-RPC client, its exact amount conversion, its credentials from the environment."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    async def holdings(self, min_confirmations: int) -> list[tuple[str, int]]:
        utxos = await self.channel.call("listunspent", min_confirmations, 999_999_999)
        per: dict[str, int] = {}
        for u in utxos:
            if u.get("spendable") is False:  # watch-only: the exchange cannot sign for it, so not proven
                continue
            address = u.get("address")
            if not isinstance(address, str) or not address:
                continue
            per[address] = per.get(address, 0) + self.channel.units(u["amount"])
        return sorted((a, v) for a, v in per.items() if v > 0)

    async def sign_message(self, address: str, message: str) -> str:
        return str(await self.channel.call("signmessage", address, message))

    async def close(self) -> None:
        await self.channel.close()


def reserves_from_config(ex: Exchange) -> dict[str, ReserveWallet]:
    """A reserve wallet for every coin whose wallet channel can sign messages (bitcoind family)."""
    out: dict[str, ReserveWallet] = {}
    for code, cur in ex.config.currencies.items():
        w = getattr(cur, "wallet", None)
        if cur.kind != "coin" or w is None or w.channel != "bitcoind":
            continue
        from node.wallet import FAMILIES

        channel = FAMILIES[w.channel](code, cur.precision, w.options)
        out[code] = ChannelReserves(channel)
    return out


def statement(exchange: str, snapshot: str, taken_at: int, symbol: str, address: str) -> str:
    """The message each address signs: it names the snapshot, so an old signature cannot be replayed
    as proof for a later snapshot, and names the exchange, so another cannot borrow it."""
    return f"{exchange} proof of reserves: snapshot {snapshot} taken {iso_ms(taken_at)}, {symbol} address {address}"


# --------------------------------------------------------------------------- the service


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
        self._reserves = dict(reserves) if reserves is not None else None
        self.inline_below = inline_below
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, str], CurrencyProofs] = OrderedDict()
        self._loading: dict[tuple[int, str], asyncio.Task[CurrencyProofs]] = {}
        self._lock = asyncio.Lock()

    @property
    def reserves(self) -> dict[str, ReserveWallet]:
        if self._reserves is None:
            self._reserves = reserves_from_config(self.ex)
        return self._reserves

    async def close(self) -> None:
        for wallet in (self._reserves or {}).values():
            await wallet.close()

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
        fiat = await self._carry_fiat(sid)
        coins = await self.collect_assets(sid) if with_assets else {}
        return replace(info, assets={code: {**coins, **fiat}[code] for code in ex.config.currencies
                                     if code in coins or code in fiat})

    async def _read_ledger(self) -> tuple[int, dict[str, tuple[list[int], list[str], list[int], int]]]:
        """Every currency's non-zero accounts, all read inside one snapshot transaction."""
        houses = self.ex.house_members or {self.ex.fee_member}
        out: dict[str, tuple[list[int], list[str], list[int], int]] = {}
        async with self.ex.store.snapshot() as tx:
            taken_at = now_ms()
            for code in self.ex.config.currencies:
                rows = await tx.fetch(
                    "SELECT a.member_id, m.email, a.balance + a.locked FROM accounts a JOIN members m ON m.id = a.member_id "
                    "WHERE a.currency = ? AND a.balance + a.locked > 0 ORDER BY a.member_id", code)
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
        """Prove every coin's reserves for a snapshot (again, replacing what was there): each funded
        address signs the snapshot's statement. A wallet that fails leaves its coin 'failed' with the
        reason; the others are still proven. Returns currency -> status."""
        snap = await self._snapshot(snapshot_id)
        out: dict[str, str] = {}
        for code, cur in self.ex.config.currencies.items():
            if cur.kind != "coin":
                continue
            wallet = self.reserves.get(code)
            if wallet is None:
                await self._set_assets(snapshot_id, code, "no_wallet", "no wallet that can sign messages is configured", [])
                out[code] = "no_wallet"
                continue
            try:
                rows = []
                for address, units in await wallet.holdings(self.ex.config.solvency.asset_confirmations):
                    msg = statement(self.ex.config.name, snap["name"], int(snap["taken_at"]), cur.symbol, address)
                    rows.append(("address", address, units, msg, await wallet.sign_message(address, msg), ""))
            except Exception as e:  # a wallet down must not lose the other coins' proofs
                log.warning("proof of assets for %s failed: %s", code, e)
                await self._set_assets(snapshot_id, code, "failed", str(e)[:500], [])
                out[code] = "failed"
                continue
            await self._set_assets(snapshot_id, code, "proven", f"{len(rows)} address(es)", rows)
            out[code] = "proven"
        return out

    async def _set_assets(self, sid: int, code: str, state: str, detail: str,
                          rows: list[tuple[str, str, int, str, str, str]]) -> None:
        ts = now_ms()
        async with self.ex.store.transaction() as tx:
            await tx.execute("DELETE FROM solvency_assets WHERE snapshot_id = ? AND currency = ?", sid, code)
            await tx.execute("DELETE FROM solvency_asset_status WHERE snapshot_id = ? AND currency = ?", sid, code)
            await tx.executemany(
                "INSERT INTO solvency_assets (snapshot_id, currency, kind, address, amount, message, signature, evidence, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(sid, code, kind, addr, str(units), msg, sig, ev, ts) for kind, addr, units, msg, sig, ev in rows])
            await tx.execute(
                "INSERT INTO solvency_asset_status (snapshot_id, currency, state, detail, updated_at) VALUES (?, ?, ?, ?, ?)",
                sid, code, state, detail, ts)

    async def declare_fiat(self, currency: str, amount: str, evidence: str, declared_by: str = "admin") -> int:
        """An admin's figure for a fiat currency's reserves, with the evidence (bank, statement, date).

        It applies to the latest published snapshot at once and is carried into every later one
        until declared again. Returns the declaration's id."""
        cur = self.ex.config.currencies.get(currency)
        if cur is None:
            raise InvalidParameter(f"currency {currency!r} does not exist", "currency")
        if cur.kind != "fiat":
            raise InvalidParameter(f"{currency} is a coin: its reserves are proven by signed addresses", "currency")
        from node.money import parse_units

        units = parse_units(amount, cur.precision, "amount", allow_zero=True)
        evidence = evidence.strip()
        if not evidence or len(evidence) > 2000:
            raise InvalidParameter("evidence must be 1 to 2000 characters (what backs the figure)", "evidence")
        async with self.ex.store.transaction() as tx:
            did = int(await tx.fetchval(
                "INSERT INTO solvency_fiat (currency, amount, evidence, declared_by, declared_at) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id", currency, str(units), evidence, declared_by[:100], now_ms()))
        latest = await self.ex.store.fetchval("SELECT MAX(id) FROM solvency_snapshots WHERE state = 'ready'")
        if latest is not None:
            await self._carry_fiat(int(latest))
        return did

    async def _carry_fiat(self, sid: int) -> dict[str, str]:
        """Copy the latest fiat declarations into a snapshot's assets ('missing' where there is none)."""
        out: dict[str, str] = {}
        for code, cur in self.ex.config.currencies.items():
            if cur.kind != "fiat":
                continue
            row = await self.ex.store.fetchrow(
                "SELECT amount, evidence, declared_by, declared_at FROM solvency_fiat WHERE currency = ? "
                "ORDER BY id DESC LIMIT 1", code)
            if row is None:
                await self._set_assets(sid, code, "missing", "no reserves declared by an admin yet", [])
                out[code] = "missing"
                continue
            detail = f"declared by {row['declared_by']} at {iso_ms(int(row['declared_at']))}"
            await self._set_assets(sid, code, "declared", detail,
                                   [("fiat", "", int(row["amount"]), "", "", row["evidence"])])
            out[code] = "declared"
        return out

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


# --------------------------------------------------------------------------- command line


def add_cli_arguments(parser: Any) -> None:
    """`python -m node solvency …`: the admin's side (the verifier is `python -m node.solvency`)."""
    sub = parser.add_subparsers(dest="solvency_cmd", required=True)
    s = sub.add_parser("snapshot", help="take a snapshot now (liabilities, then proof of assets)")
    s.add_argument("--no-assets", action="store_true", help="skip the coin wallets' signatures")
    s.add_argument("--prune", action="store_true", help="then delete snapshots older than [solvency] keep_days")
    a = sub.add_parser("assets", help="(re)collect the coin wallets' signed addresses for a snapshot")
    a.add_argument("--snapshot", type=int, default=None, help="snapshot id (default: the latest)")
    f = sub.add_parser("fiat", help="declare a fiat currency's reserves, with the evidence")
    f.add_argument("currency")
    f.add_argument("amount", help="whole units, e.g. 1250000.00")
    f.add_argument("--evidence", required=True, help="what backs the figure: bank, account, statement date")
    f.add_argument("--by", default="admin", help="who declares it")
    sub.add_parser("show", help="print the latest snapshot's roots, assets and ratios")


async def run_cli(ex: Exchange, args: Any) -> int:
    """Run one `solvency` sub-command against the store; prints what an operator needs to see."""
    svc = SolvencyService(ex)
    try:
        if args.solvency_cmd == "snapshot":
            info = await svc.take_snapshot(assets=not args.no_assets)
            print(f"snapshot {info.id} ({info.name}) at {iso_ms(info.taken_at)}: {info.accounts} accounts, "
                  f"read {info.read_ms} ms, built {info.build_ms} ms")
            for code, total in info.totals.items():
                prec = ex.config.currencies[code].precision
                print(f"  {code}: owed {maxwell.format_units(total, prec)}, house "
                      f"{maxwell.format_units(info.house[code], prec)}, assets {info.assets.get(code, 'skipped')}")
            if args.prune:
                print(f"pruned {await svc.prune()} old snapshot(s)")
        elif args.solvency_cmd == "assets":
            sid = args.snapshot if args.snapshot is not None else int((await svc._snapshot())["id"])
            for code, status in (await svc.collect_assets(sid)).items():
                print(f"{code}: {status}")
        elif args.solvency_cmd == "fiat":
            did = await svc.declare_fiat(args.currency, args.amount, args.evidence, args.by)
            print(f"declaration {did} recorded")
        else:
            doc = await svc.assets()
            roots = {r["currency"]: r for r in (await svc.roots())["currencies"]}
            print(f"snapshot {doc['snapshot']['id']} ({doc['snapshot']['name']}) at {doc['snapshot']['taken_at']}")
            for c in doc["currencies"]:
                r = roots[c["currency"]]
                print(f"  {c['currency']}: owed {c['liabilities']}, assets {c['assets'] or '-'} ({c['status']}), "
                      f"ratio {c['ratio'] or '-'}, v2 root {r['v2']['root']['hash']}")
        return 0
    finally:
        await svc.close()
