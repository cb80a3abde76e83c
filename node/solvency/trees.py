"""Building a snapshot's trees: both schemes per currency from the leaves, kept as compact indexes
that cut any member's proof, away from the event loop when the snapshot is big.

Pure functions and picklable data (the worker process runs `build_all`), apart from the worker's
plumbing (`TreeWorker`, `build_off_loop`). The service (node/solvency/service.py) reads the ledger
and stores what is built here.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hmac
import os
import pickle
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson

from node.solvency import maxwell, v2

INLINE_BELOW = 20_000
"""Below this many leaves in a snapshot the trees are built on the event loop (a few tens of ms);
above, in a worker process, where hashing cannot delay an order."""


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc2822_ms(ms: int) -> str:
    """Peatio's root.json timestamp style ("Mon, 24 Mar 2014 13:50:29 +0000")."""
    return format_datetime(datetime.fromtimestamp(ms // 1000, UTC))


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
            sys.executable, "-c", "from node.solvency.trees import worker_main; worker_main()",
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
