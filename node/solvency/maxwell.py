"""Peatio-compatible liability proof: Maxwell's Merkle sum tree, byte for byte.

Kept only so existing Peatio users and tools can check our snapshots. The scheme is
broken (a node commits to ``vL + vR`` only, see ``docs/solvency-v2.md``); new
verifiers should use :mod:`node.solvency.v2`.

Format (Peatio's proof of solvency, docs/api.md):

* leaf hash = hex SHA-256 of ``"<user>|<sum>|<nonce>"``, nonce = 32 lowercase hex chars;
* node: ``sum = left.sum + right.sum``, hash = hex SHA-256 of ``sum + left.hash + right.hash``;
* levels pair neighbours, an odd last node moves up unchanged;
* sums as strings: ``"0"``, ``"10000"``, ``"12.13"`` (no exponent, trailing zeros stripped).

Amounts are never floats: the builder keeps integer smallest units at a fixed precision.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, Inexact, InvalidOperation, Rounded, localcontext
from email.utils import format_datetime
from typing import Any

from node import money

__all__ = [
    "Amount",
    "JSONInput",
    "MaxwellTree",
    "ProofError",
    "VerifyResult",
    "build_tree",
    "check",
    "dumps",
    "format_decimal",
    "format_units",
    "leaf_hash",
    "load_json",
    "node_hash",
    "recompute_root",
    "to_units",
    "verify",
]

Amount = str | Decimal | int
"""A balance: decimal string / Decimal in whole coins, or int in smallest units."""

MAX_PRECISION = 36
MAX_DEPTH = 128  # 2**128 leaves is far beyond any exchange; deeper input is hostile
_MAX_SUM_CHARS = 100
_EXACT_PREC = 400  # > 2 * _MAX_SUM_CHARS + log10(2**MAX_DEPTH): exact sums never round
_DECIMAL_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


class ProofError(ValueError):
    """A proof or root is malformed or does not match; the message says why."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a verification, with enough detail for the CLI to explain a failure."""

    ok: bool
    scheme: str
    user: str | None = None
    balance: str | None = None
    currency: str | None = None
    root_hash: str | None = None
    total: str | None = None
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


# --------------------------------------------------------------------------- amounts


def _check_precision(precision: int) -> None:
    if isinstance(precision, bool) or not isinstance(precision, int):
        raise TypeError("precision must be an int")
    if not 0 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be in 0..{MAX_PRECISION}")


def to_units(amount: Amount, precision: int) -> int:
    """Convert a balance to integer smallest units, refusing anything inexact.

    ``int`` is taken as already in smallest units (e.g. satoshis for precision 8);
    ``str``/``Decimal`` are whole coins and may not have more than ``precision``
    decimals: silently rounding a liability would make the proof lie. Floats are refused.
    """
    _check_precision(precision)
    if isinstance(amount, bool) or isinstance(amount, float):
        raise TypeError(f"amount must be str, Decimal or int units, not {type(amount).__name__}")
    if isinstance(amount, int):
        if amount < 0:
            raise ValueError("negative amount")
        return amount
    if isinstance(amount, str):
        if not _DECIMAL_RE.fullmatch(amount):
            raise ValueError(f"not a plain non-negative decimal: {amount!r}")
        dec = Decimal(amount)
    elif isinstance(amount, Decimal):
        dec = amount
        if not dec.is_finite():
            raise ValueError("amount must be finite")
    else:
        raise TypeError(f"amount must be str, Decimal or int units, not {type(amount).__name__}")
    sign, digits, exponent = dec.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)) or "0")
    if coefficient and sign:
        raise ValueError("negative amount")
    shift = exponent + precision
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        return coefficient * scale
    whole, rest = divmod(coefficient, scale)
    if rest:
        raise ValueError(f"{amount} has more than {precision} decimals")
    return whole


def format_units(units: int, precision: int) -> str:
    """Format smallest units the Peatio way: "0", "10000", "12.13" (never an exponent)."""
    _check_precision(precision)
    if units < 0:
        raise ValueError("negative sum")
    return money.format_units(units, precision, min_places=0)


def format_decimal(value: Decimal) -> str:
    """Same canonical format for an exact Decimal (used by the verifier, which has no precision)."""
    if not value.is_finite() or value < 0:
        raise ValueError("sum must be a finite non-negative decimal")
    if value == 0:
        return "0"
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).lstrip("0") or "0"
    if exponent >= 0:
        return text + "0" * exponent
    frac_len = -exponent
    text = text.rjust(frac_len + 1, "0")
    whole, frac = text[:-frac_len], text[-frac_len:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def _parse_sum(value: object, where: str) -> Decimal:
    """Parse a sum string strictly: plain non-negative decimal, no sign, no exponent."""
    if not isinstance(value, str):
        raise ProofError(f"{where}: sum must be a string")
    if len(value) > _MAX_SUM_CHARS or not _DECIMAL_RE.fullmatch(value):
        raise ProofError(f"{where}: sum {value!r} is not a plain non-negative decimal")
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - regex already guarantees it
        raise ProofError(f"{where}: bad sum {value!r}") from exc


# --------------------------------------------------------------------------- hashing


def leaf_hash(user: str, sum_str: str, nonce: str) -> str:
    """Hex SHA-256 of ``user|sum|nonce`` (Peatio's leaf)."""
    return hashlib.sha256(f"{user}|{sum_str}|{nonce}".encode()).hexdigest()


def node_hash(sum_str: str, left_hash: str, right_hash: str) -> str:
    """Hex SHA-256 of ``sum + left.hash + right.hash`` (Peatio's internal node)."""
    return hashlib.sha256(f"{sum_str}{left_hash}{right_hash}".encode()).hexdigest()


# --------------------------------------------------------------------------- tree


class MaxwellTree:
    """A built sum tree: all levels kept so any member's partial tree costs O(log n).

    ``levels[0]`` are the leaves in input order; ``levels[-1]`` is ``[root]``. Each level
    holds parallel lists of integer sums and hex hashes.
    """

    def __init__(
        self,
        users: list[str],
        sums: list[int],
        nonces: list[str],
        *,
        precision: int,
        currency: str,
        timestamp: str,
    ) -> None:
        if not users:
            raise ValueError("a Maxwell tree needs at least one account")
        self.precision = precision
        self.currency = currency
        self.timestamp = timestamp
        self.users = users
        self.nonces = nonces
        self.index: dict[str, int] = {}
        for i, user in enumerate(users):
            if user in self.index:
                raise ValueError(f"duplicate user {user!r}")
            self.index[user] = i
        fmt = self._fmt
        leaf_hashes = [leaf_hash(u, fmt(s), n) for u, s, n in zip(users, sums, nonces, strict=True)]
        self.level_sums: list[list[int]] = [sums]
        self.level_hashes: list[list[str]] = [leaf_hashes]
        while len(self.level_sums[-1]) > 1:
            below_s, below_h = self.level_sums[-1], self.level_hashes[-1]
            up_s: list[int] = []
            up_h: list[str] = []
            for i in range(0, len(below_s) - 1, 2):
                total = below_s[i] + below_s[i + 1]
                up_s.append(total)
                up_h.append(node_hash(fmt(total), below_h[i], below_h[i + 1]))
            if len(below_s) % 2:
                up_s.append(below_s[-1])
                up_h.append(below_h[-1])
            self.level_sums.append(up_s)
            self.level_hashes.append(up_h)

    def _fmt(self, units: int) -> str:
        return format_units(units, self.precision)

    def __len__(self) -> int:
        return len(self.users)

    def __contains__(self, user: object) -> bool:
        return user in self.index

    @property
    def root_hash(self) -> str:
        return self.level_hashes[-1][0]

    @property
    def root_sum(self) -> int:
        """Total liabilities in smallest units."""
        return self.level_sums[-1][0]

    def root_json(self) -> dict[str, Any]:
        """The public root, in Peatio's key order."""
        return {
            "root": {"hash": self.root_hash, "sum": self._fmt(self.root_sum)},
            "currency": self.currency,
            "timestamp": self.timestamp,
        }

    def leaf(self, user: str) -> dict[str, str]:
        """The member's leaf data (what they must recognise as theirs)."""
        i = self.index[user]
        return {"sum": self._fmt(self.level_sums[0][i]), "nonce": self.nonces[i], "user": user}

    def leaf_hash(self, user: str) -> str:
        return self.level_hashes[0][self.index[user]]

    def path(self, user: str) -> list[str]:
        """Directions from the root down to the member's leaf ("left"/"right")."""
        pos = self.index[user]
        steps: list[str] = []
        for level in self.level_sums[:-1]:
            sibling = pos ^ 1
            if sibling < len(level):
                steps.append("left" if pos % 2 == 0 else "right")
            pos //= 2
        return steps[::-1]

    def partial_tree(self, user: str) -> dict[str, Any]:
        """``{"partial_tree": …}`` for one member, shaped exactly like Peatio's jan.json.

        At each level the sibling key comes first, then the key on the member's path,
        as Peatio's generator wrote them. Odd carried-up nodes add no level.
        """
        if user not in self.index:
            raise KeyError(user)
        pos = self.index[user]
        node: dict[str, Any] = {"data": self.leaf(user)}
        for sums, hashes in zip(self.level_sums[:-1], self.level_hashes[:-1], strict=True):
            sib = pos ^ 1
            if sib < len(sums):
                sib_node = {"data": {"sum": self._fmt(sums[sib]), "hash": hashes[sib]}}
                if pos % 2 == 0:
                    node = {"right": sib_node, "left": node}
                else:
                    node = {"left": sib_node, "right": node}
            pos //= 2
        return {"partial_tree": node}


def _nonce_batch(count: int) -> list[str]:
    """Fresh 16-byte nonces as 32 hex chars; one urandom call instead of ``count``."""
    blob = secrets.token_bytes(16 * count).hex()
    return [blob[i : i + 32] for i in range(0, 32 * count, 32)]


def _default_timestamp() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def build_tree(
    accounts: Iterable[tuple[str, Amount]],
    *,
    precision: int = 8,
    currency: str = "BTC",
    timestamp: str | datetime | None = None,
    nonces: Mapping[str, str] | None = None,
) -> MaxwellTree:
    """Build the Peatio-compatible tree from ``(user_key, amount)`` pairs, in input order.

    ``nonces`` pins some users' nonces (golden vectors, regeneration); every other user
    gets a fresh random one. ``timestamp`` defaults to now in RFC 2822 form, like root.json.
    """
    _check_precision(precision)
    users: list[str] = []
    sums: list[int] = []
    for user, amount in accounts:
        if not isinstance(user, str) or not user:
            raise TypeError("user key must be a non-empty str")
        users.append(user)
        sums.append(to_units(amount, precision))
    fresh = _nonce_batch(len(users))
    if nonces:
        for i, user in enumerate(users):
            pinned = nonces.get(user)
            if pinned is not None:
                if not isinstance(pinned, str) or not pinned or "|" in pinned:
                    raise ValueError(f"bad nonce for {user!r}")
                fresh[i] = pinned
    if isinstance(timestamp, datetime):
        timestamp = format_datetime(timestamp)
    return MaxwellTree(
        users,
        sums,
        fresh,
        precision=precision,
        currency=currency,
        timestamp=timestamp or _default_timestamp(),
    )


# --------------------------------------------------------------------------- verifier

JSONInput = Mapping[str, Any] | str | bytes


def load_json(doc: JSONInput) -> Any:
    """Accept an already parsed object or JSON text; floats stay exact as Decimal."""
    if isinstance(doc, str | bytes | bytearray):
        try:
            return json.loads(doc, parse_float=Decimal)
        except ValueError as exc:
            raise ProofError(f"not valid JSON: {exc}") from exc
    return doc


def dumps(obj: Any) -> str:
    """Compact JSON in the exact form of Peatio's fixtures (no spaces, key order kept)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass
class _Leaf:
    user: str
    sum_str: str


def _walk(node: object, depth: int) -> tuple[Decimal, str, _Leaf | None]:
    """Recompute (sum, hash) of a partial-tree node; also return the member leaf if inside."""
    if depth > MAX_DEPTH:
        raise ProofError("partial tree too deep")
    if not isinstance(node, Mapping):
        raise ProofError("tree node must be an object")
    if "left" in node or "right" in node:
        if "left" not in node or "right" not in node:
            raise ProofError("interior node needs both left and right")
        if node.get("data") is not None:  # Peatio's gem writes "data": null here
            raise ProofError("interior node must not carry data")
        lsum, lhash, lleaf = _walk(node["left"], depth + 1)
        rsum, rhash, rleaf = _walk(node["right"], depth + 1)
        if lleaf is not None and rleaf is not None:
            raise ProofError("more than one user leaf")
        total = lsum + rsum
        return total, node_hash(format_decimal(total), lhash, rhash), lleaf or rleaf
    data = node.get("data")
    if not isinstance(data, Mapping):
        raise ProofError("leaf node needs a data object")
    value = _parse_sum(data.get("sum"), "node")
    if "user" in data or "nonce" in data:
        user, nonce, sum_str = data.get("user"), data.get("nonce"), data["sum"]
        if not isinstance(user, str) or not user:
            raise ProofError("user leaf: user must be a non-empty string")
        if not isinstance(nonce, str) or not nonce:
            raise ProofError("user leaf: nonce must be a non-empty string")
        digest = leaf_hash(user, sum_str, nonce)
        if "hash" in data and data["hash"] != digest:
            raise ProofError("user leaf: stated hash does not match user|sum|nonce")
        return value, digest, _Leaf(user, sum_str)
    sib_hash = data.get("hash")
    if not isinstance(sib_hash, str) or not _HEX64_RE.fullmatch(sib_hash):
        raise ProofError("sibling node: hash must be 64 lowercase hex chars")
    return value, sib_hash, None


def recompute_root(partial_tree_json: JSONInput) -> tuple[str, str, str, str]:
    """Recompute ``(root_sum, root_hash, user, user_sum)`` from a member's partial tree.

    Raises :class:`ProofError` on any malformed input.
    """
    doc = load_json(partial_tree_json)
    if not isinstance(doc, Mapping) or "partial_tree" not in doc:
        raise ProofError('proof must be an object with a "partial_tree" key')
    try:
        with localcontext() as ctx:  # exact sums: anything inexact is an error, not a rounding
            ctx.prec = _EXACT_PREC
            ctx.traps[Inexact] = ctx.traps[Rounded] = True
            total, digest, leaf = _walk(doc["partial_tree"], 0)
    except RecursionError as exc:
        raise ProofError("partial tree too deep") from exc
    if leaf is None:
        raise ProofError("no user leaf in partial tree")
    return format_decimal(total), digest, leaf.user, leaf.sum_str


def check(
    partial_tree_json: JSONInput,
    root_json: JSONInput,
    *,
    user: str | None = None,
    balance: str | Decimal | None = None,
) -> VerifyResult:
    """Verify a Peatio partial tree against a root and say why it failed if it did.

    ``balance`` (whole coins, str or Decimal) and ``user``, if given, must match the leaf.
    Sibling sums are parsed as non-negative plain decimals, which Peatio never checked;
    that does not make the scheme sound (see the v2 spec).
    """
    result = VerifyResult(ok=False, scheme="maxwell")
    try:
        total, digest, leaf_user, leaf_sum = recompute_root(partial_tree_json)
        result = VerifyResult(ok=False, scheme="maxwell", user=leaf_user, balance=leaf_sum)
        root_doc = load_json(root_json)
        if not isinstance(root_doc, Mapping) or not isinstance(root_doc.get("root"), Mapping):
            raise ProofError('root must be an object with a "root" object')
        root = root_doc["root"]
        root_sum = _parse_sum(root.get("sum"), "root")
        root_hash = root.get("hash")
        currency = root_doc.get("currency")
        result = VerifyResult(
            ok=False,
            scheme="maxwell",
            user=leaf_user,
            balance=leaf_sum,
            currency=currency if isinstance(currency, str) else None,
            root_hash=root_hash if isinstance(root_hash, str) else None,
            total=format_decimal(root_sum),
        )
        if user is not None and user != leaf_user:
            raise ProofError(f"leaf belongs to {leaf_user!r}, not {user!r}")
        if balance is not None:
            if isinstance(balance, str):
                expected = _parse_sum(balance, "expected balance")
            elif isinstance(balance, Decimal) and balance.is_finite():
                expected = balance
            else:
                raise ProofError("expected balance must be a decimal str or Decimal (whole coins)")
            if expected != Decimal(leaf_sum):
                raise ProofError(f"leaf balance {leaf_sum} differs from expected {balance}")
        if digest != root_hash:
            raise ProofError(f"recomputed root hash {digest} differs from published {root_hash}")
        if Decimal(total) != root_sum:
            raise ProofError(f"recomputed total {total} differs from published {root.get('sum')}")
    except ProofError as exc:
        return replace(result, reason=str(exc))
    return replace(result, ok=True)


def verify(
    partial_tree_json: JSONInput,
    root_json: JSONInput,
    *,
    user: str | None = None,
    balance: str | Decimal | None = None,
) -> bool:
    """True iff the partial tree recomputes to the published root (and user/balance match)."""
    return check(partial_tree_json, root_json, user=user, balance=balance).ok
