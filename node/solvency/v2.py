"""Proof of Solvency v2: a Merkle sum tree whose nodes commit to both child values.

Closes the flaw of Maxwell's tree (Hu, Zhang, Guo, ePrint 2018/1139): a Maxwell node
commits only to ``vL + vR``, so the exchange can show each user a different split and
publish less than it owes. Here a node is ``H(0x01 ‖ vL ‖ vR ‖ hL ‖ hR)``, values are
unsigned 128-bit integers, the tree is padded to a power of two with padding leaves that
look like real ones, and a member's leaf is bound to their own member key without
revealing it. The byte-level spec is ``docs/solvency-v2.md``; keep both in step.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from node.solvency.maxwell import (
    MAX_PRECISION,
    Amount,
    JSONInput,
    ProofError,
    VerifyResult,
    format_units,
    load_json,
    to_units,
)

__all__ = [
    "MAX_HEIGHT",
    "MAX_VALUE",
    "SCHEME",
    "V2Tree",
    "build_tree",
    "check",
    "encode_value",
    "leaf_hash",
    "node_hash",
    "recompute_root",
    "user_id",
    "verify",
]

SCHEME = "pos-v2"
VALUE_BYTES = 16
MAX_VALUE = 2 ** (8 * VALUE_BYTES) - 1
MAX_HEIGHT = 64
LEAF_TAG = b"\x00"
NODE_TAG = b"\x01"
UID_TAG = b"\x02"
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_UINT_RE = re.compile(r"0|[1-9][0-9]{0,38}")  # canonical: one spelling per value


# --------------------------------------------------------------------------- primitives


def encode_value(value: int) -> bytes:
    """16-byte big-endian unsigned; refuses what would wrap, so no overflow can hide value."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("value must be an int")
    if not 0 <= value <= MAX_VALUE:
        raise ValueError(f"value {value} outside 0..2**128-1")
    return value.to_bytes(VALUE_BYTES, "big")


def user_id(user_key: str, nonce: bytes) -> bytes:
    """``SHA-256(0x02 ‖ nonce ‖ UTF-8(user_key))``: opaque to others, checkable by the member.

    Binding the leaf to the member key stops the exchange from showing two members with
    the same balance one shared leaf; the secret 32-byte nonce keeps the e-mail hidden.
    """
    return hashlib.sha256(UID_TAG + nonce + user_key.encode()).digest()


def leaf_hash(uid: bytes, value: int, nonce: bytes) -> bytes:
    """``SHA-256(0x00 ‖ uid[32] ‖ value[16] ‖ nonce[32])``."""
    if len(uid) != 32 or len(nonce) != 32:
        raise ValueError("uid and nonce must be 32 bytes")
    return hashlib.sha256(LEAF_TAG + uid + encode_value(value) + nonce).digest()


def node_hash(left_value: int, right_value: int, left_hash: bytes, right_hash: bytes) -> bytes:
    """``SHA-256(0x01 ‖ vL[16] ‖ vR[16] ‖ hL[32] ‖ hR[32])``: both child values committed."""
    if len(left_hash) != 32 or len(right_hash) != 32:
        raise ValueError("child hashes must be 32 bytes")
    return hashlib.sha256(
        NODE_TAG + encode_value(left_value) + encode_value(right_value) + left_hash + right_hash
    ).digest()


def _lp(data: bytes) -> bytes:
    """Length-prefixed field so HMAC inputs cannot be re-split."""
    return len(data).to_bytes(4, "big") + data


# --------------------------------------------------------------------------- tree


class V2Tree:
    """A built v2 tree over a padded, shuffled leaf set; proofs are O(log n) on demand.

    ``values[k]``/``hashes[k]`` hold level ``k`` (0 = leaves, ``height`` = root).
    ``members`` (the real member count) is deliberately absent from every JSON output.
    """

    def __init__(
        self,
        *,
        currency: str,
        precision: int,
        snapshot: str,
        timestamp: str,
        users: list[str | None],
        uids: list[bytes],
        nonces: list[bytes],
        values: list[int],
        members: int,
    ) -> None:
        size = len(values)
        if size == 0 or size & (size - 1):
            raise ValueError("leaf count must be a power of two")
        self.currency = currency
        self.precision = precision
        self.snapshot = snapshot
        self.timestamp = timestamp
        self.users = users
        self.uids = uids
        self.nonces = nonces
        self.members = members
        self.height = size.bit_length() - 1
        self.index: dict[str, int] = {u: i for i, u in enumerate(users) if u is not None}
        sha = hashlib.sha256
        enc = encode_value
        leaf_tag, node_tag = LEAF_TAG, NODE_TAG
        leaves = [
            sha(leaf_tag + u + enc(v) + n).digest() for u, v, n in zip(uids, values, nonces, strict=True)
        ]
        self.values: list[list[int]] = [values]
        self.hashes: list[list[bytes]] = [leaves]
        while len(self.values[-1]) > 1:
            vs, hs = self.values[-1], self.hashes[-1]
            up_v: list[int] = []
            up_h: list[bytes] = []
            for i in range(0, len(vs), 2):
                vl, vr = vs[i], vs[i + 1]
                total = vl + vr
                if total > MAX_VALUE:
                    raise ValueError("total liabilities overflow 128 bits")
                up_v.append(total)
                up_h.append(sha(node_tag + enc(vl) + enc(vr) + hs[i] + hs[i + 1]).digest())
            self.values.append(up_v)
            self.hashes.append(up_h)

    def __len__(self) -> int:
        return self.members

    def __contains__(self, user: object) -> bool:
        return user in self.index

    @property
    def size(self) -> int:
        """Leaves including padding (a power of two)."""
        return len(self.values[0])

    @property
    def root_hash(self) -> bytes:
        return self.hashes[-1][0]

    @property
    def root_value(self) -> int:
        """Total liabilities in smallest units."""
        return self.values[-1][0]

    def root_json(self) -> dict[str, Any]:
        """The public commitment: publish it, sign it, timestamp it."""
        return {
            "scheme": SCHEME,
            "currency": self.currency,
            "precision": self.precision,
            "snapshot": self.snapshot,
            "timestamp": self.timestamp,
            "height": self.height,
            "root": {"hash": self.root_hash.hex(), "value": str(self.root_value)},
        }

    def proof(self, user: str) -> dict[str, Any]:
        """One member's inclusion proof: their leaf opening and the sibling path, leaf first."""
        pos = self.index[user]
        leaf = {
            "uid": self.uids[pos].hex(),
            "nonce": self.nonces[pos].hex(),
            "value": str(self.values[0][pos]),
        }
        path: list[dict[str, str]] = []
        for level in range(self.height):
            sib = pos ^ 1
            path.append(
                {
                    "side": "left" if sib < pos else "right",
                    "value": str(self.values[level][sib]),
                    "hash": self.hashes[level][sib].hex(),
                }
            )
            pos >>= 1
        return {
            "scheme": SCHEME,
            "currency": self.currency,
            "snapshot": self.snapshot,
            "user": user,
            "leaf": leaf,
            "path": path,
        }


def _default_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_tree(
    accounts: Iterable[tuple[str, Amount]],
    *,
    precision: int = 8,
    currency: str = "BTC",
    snapshot: str | None = None,
    timestamp: str | datetime | None = None,
    secret: bytes | None = None,
    min_height: int = 0,
) -> V2Tree:
    """Build the v2 tree from ``(user_key, amount)`` pairs.

    ``user_key`` must be what the member knows and types into the verifier (their e-mail
    or member id): it is hashed into the leaf, never published. Nonces and padding are
    HMAC-SHA256 of ``secret`` (random per call when omitted), so keeping the secret with
    a snapshot lets the exchange regenerate the identical tree and proofs later.
    ``min_height`` pads further (e.g. 20 → always 2**20 leaves) to hide the member count
    beyond its power of two.
    """
    if isinstance(timestamp, datetime):
        timestamp = timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    timestamp = timestamp or _default_timestamp()
    snapshot = snapshot if snapshot is not None else f"{currency}@{timestamp}"
    if not isinstance(currency, str) or not isinstance(snapshot, str):
        raise TypeError("currency and snapshot must be str")
    if not 0 <= min_height <= MAX_HEIGHT:
        raise ValueError(f"min_height must be in 0..{MAX_HEIGHT}")
    if secret is None:
        secret = secrets.token_bytes(32)
    if len(secret) < 16:
        raise ValueError("secret must be at least 16 bytes")
    ctx = _lp(currency.encode()) + _lp(snapshot.encode())
    nonce_prefix = b"pos-v2 nonce" + ctx
    digest = hmac.digest
    sha = hashlib.sha256

    users: list[str | None] = []
    uids: list[bytes] = []
    nonces: list[bytes] = []
    values: list[int] = []
    seen: set[str] = set()
    total = 0
    for user, amount in accounts:
        if not isinstance(user, str) or not user:
            raise TypeError("user key must be a non-empty str")
        if user in seen:
            raise ValueError(f"duplicate user {user!r}")
        seen.add(user)
        value = to_units(amount, precision)
        total += value
        if total > MAX_VALUE:
            raise ValueError("total liabilities overflow 128 bits")
        key = user.encode()
        nonce = digest(secret, nonce_prefix + key, "sha256")
        users.append(user)
        nonces.append(nonce)
        uids.append(sha(UID_TAG + nonce + key).digest())
        values.append(value)
    members = len(users)
    height = max(min_height, (members - 1).bit_length() if members > 1 else 0)
    if height > MAX_HEIGHT:
        raise ValueError("too many accounts")
    for i in range(2**height - members):
        idx = i.to_bytes(8, "big")
        users.append(None)
        uids.append(digest(secret, b"pos-v2 pad-uid" + ctx + idx, "sha256"))
        nonces.append(digest(secret, b"pos-v2 pad-nonce" + ctx + idx, "sha256"))
        values.append(0)
    # Sorting by uid is a secret-keyed shuffle: padding lands anywhere, not in a tell-tale tail.
    order = sorted(range(len(uids)), key=uids.__getitem__)
    return V2Tree(
        currency=currency,
        precision=precision,
        snapshot=snapshot,
        timestamp=timestamp,
        users=[users[i] for i in order],
        uids=[uids[i] for i in order],
        nonces=[nonces[i] for i in order],
        values=[values[i] for i in order],
        members=members,
    )


# --------------------------------------------------------------------------- verifier


def _uint(value: object, where: str) -> int:
    """Parse a canonical unsigned decimal string; negatives and > 2**128-1 are refused."""
    if not isinstance(value, str) or not _UINT_RE.fullmatch(value):
        raise ProofError(f"{where}: value must be a canonical non-negative decimal string")
    number = int(value)
    if not 0 <= number <= MAX_VALUE:
        raise ProofError(f"{where}: value out of 0..2**128-1")
    return number


def _hex32(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not _HEX64_RE.fullmatch(value):
        raise ProofError(f"{where}: must be 64 lowercase hex chars")
    return bytes.fromhex(value)


def _str(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ProofError(f"{where}: {key} must be a string")
    return value


def recompute_root(proof: JSONInput) -> tuple[int, bytes, str, int, int]:
    """Walk a proof up to its root: ``(root_value, root_hash, user, leaf_value, path_len)``.

    Checks the uid binding, every sibling value and every partial sum; raises ProofError.
    """
    doc = load_json(proof)
    if not isinstance(doc, Mapping) or doc.get("scheme") != SCHEME:
        raise ProofError(f'proof must be an object with "scheme": "{SCHEME}"')
    user = _str(doc, "user", "proof")
    if not user:
        raise ProofError("proof: user must be non-empty")
    leaf = doc.get("leaf")
    if not isinstance(leaf, Mapping):
        raise ProofError("proof: leaf must be an object")
    uid = _hex32(leaf.get("uid"), "leaf.uid")
    nonce = _hex32(leaf.get("nonce"), "leaf.nonce")
    value = _uint(leaf.get("value"), "leaf.value")
    if user_id(user, nonce) != uid:
        raise ProofError(f"leaf.uid is not SHA-256(0x02 ‖ nonce ‖ {user!r}): not this member's leaf")
    path = doc.get("path")
    if not isinstance(path, list) or len(path) > MAX_HEIGHT:
        raise ProofError(f"proof: path must be a list of at most {MAX_HEIGHT} steps")
    leaf_value = value
    digest = leaf_hash(uid, value, nonce)
    for i, step in enumerate(path):
        where = f"path[{i}]"
        if not isinstance(step, Mapping):
            raise ProofError(f"{where}: must be an object")
        side = step.get("side")
        sib_value = _uint(step.get("value"), where)  # refuses negatives and > 2**128-1
        sib_hash = _hex32(step.get("hash"), f"{where}.hash")
        if value + sib_value > MAX_VALUE:
            raise ProofError(f"{where}: sum overflows 128 bits")
        if side == "left":
            digest = node_hash(sib_value, value, sib_hash, digest)
        elif side == "right":
            digest = node_hash(value, sib_value, digest, sib_hash)
        else:
            raise ProofError(f'{where}: side must be "left" or "right"')
        value += sib_value
    return value, digest, user, leaf_value, len(path)


def check(
    proof: JSONInput,
    root_json: JSONInput,
    *,
    user: str | None = None,
    balance: Amount | None = None,
) -> VerifyResult:
    """Verify a v2 proof against a published root; the result says why if it fails.

    ``user`` (the member key) and ``balance`` (whole coins as str/Decimal, or int units)
    are what the member expects; if given they must match the leaf.
    """
    result = VerifyResult(ok=False, scheme=SCHEME)
    try:
        root_doc = load_json(root_json)
        if not isinstance(root_doc, Mapping) or root_doc.get("scheme") != SCHEME:
            raise ProofError(f'root must be an object with "scheme": "{SCHEME}"')
        currency = _str(root_doc, "currency", "root")
        snapshot = _str(root_doc, "snapshot", "root")
        precision = root_doc.get("precision")
        height = root_doc.get("height")
        if (
            isinstance(precision, bool)
            or not isinstance(precision, int)
            or not 0 <= precision <= MAX_PRECISION
        ):
            raise ProofError(f"root: precision must be an int in 0..{MAX_PRECISION}")
        if isinstance(height, bool) or not isinstance(height, int) or not 0 <= height <= MAX_HEIGHT:
            raise ProofError(f"root: height must be an int in 0..{MAX_HEIGHT}")
        root = root_doc.get("root")
        if not isinstance(root, Mapping):
            raise ProofError("root: root must be an object")
        root_hash = _hex32(root.get("hash"), "root.hash")
        root_value = _uint(root.get("value"), "root.value")
        result = replace(
            result,
            currency=currency,
            root_hash=root_hash.hex(),
            total=format_units(root_value, precision),
        )
        doc = load_json(proof)
        if isinstance(doc, Mapping) and isinstance(doc.get("user"), str):
            result = replace(result, user=doc["user"])
        value, digest, leaf_user, leaf_value, steps = recompute_root(doc)
        result = replace(result, user=leaf_user, balance=format_units(leaf_value, precision))
        if doc.get("currency") != currency or doc.get("snapshot") != snapshot:
            raise ProofError("proof is for another currency or snapshot than the root")
        if user is not None and user != leaf_user:
            raise ProofError(f"proof is for {leaf_user!r}, not {user!r}")
        if balance is not None:
            try:
                expected = to_units(balance, precision)
            except (TypeError, ValueError) as exc:
                raise ProofError(f"expected balance: {exc}") from exc
            if expected != leaf_value:
                raise ProofError(f"leaf balance {result.balance} differs from expected {balance}")
        if steps != height:
            raise ProofError(f"path has {steps} steps, root height is {height}")
        if digest != root_hash:
            raise ProofError(f"recomputed root hash {digest.hex()} differs from published {root_hash.hex()}")
        if value != root_value:
            raise ProofError(f"recomputed total {value} differs from published {root_value}")
    except ProofError as exc:
        return replace(result, reason=str(exc))
    return replace(result, ok=True)


def verify(
    proof: JSONInput,
    root_json: JSONInput,
    *,
    user: str | None = None,
    balance: Amount | None = None,
) -> bool:
    """True iff the proof recomputes to the published root (and user/balance match)."""
    return check(proof, root_json, user=user, balance=balance).ok
