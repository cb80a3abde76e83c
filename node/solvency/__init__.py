"""Proof of Solvency (liability proofs) for one currency snapshot.

Two schemes, both pure functions of ``(user_key, amount)`` pairs (no store, no asyncio):

* :mod:`node.solvency.maxwell` - Peatio-compatible Maxwell sum tree, so existing
  Peatio verifiers keep working. Known to be unsound (ePrint 2018/1139).
* :mod:`node.solvency.v2` - the fixed scheme specified in ``docs/solvency-v2.md``.

``python -m node.solvency verify --root root.json --proof proof.json`` checks either.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from node.solvency import maxwell, v2
from node.solvency.maxwell import JSONInput, ProofError, VerifyResult, load_json, to_units

__all__ = ["ProofError", "VerifyResult", "detect_scheme", "maxwell", "to_units", "v2", "verify"]


def detect_scheme(proof: object, root: object) -> str:
    """Tell "maxwell" from "pos-v2" by JSON shape; refuse a mix so nothing is guessed."""
    proof_v2 = isinstance(proof, Mapping) and proof.get("scheme") == v2.SCHEME
    root_v2 = isinstance(root, Mapping) and root.get("scheme") == v2.SCHEME
    proof_mx = isinstance(proof, Mapping) and "partial_tree" in proof
    if proof_v2 and root_v2:
        return v2.SCHEME
    if proof_mx and not root_v2:
        return "maxwell"
    raise ProofError("cannot tell the scheme: proof and root shapes do not match one scheme")


def verify(
    proof: JSONInput,
    root: JSONInput,
    *,
    scheme: str = "auto",
    user: str | None = None,
    balance: str | Decimal | None = None,
) -> VerifyResult:
    """Verify a proof of either scheme ("auto", "maxwell", "pos-v2"); user/balance optional."""
    try:
        proof_doc, root_doc = load_json(proof), load_json(root)
        if scheme == "auto":
            scheme = detect_scheme(proof_doc, root_doc)
    except ProofError as exc:
        return VerifyResult(ok=False, scheme="unknown" if scheme == "auto" else scheme, reason=str(exc))
    if scheme == "maxwell":
        return maxwell.check(proof_doc, root_doc, user=user, balance=balance)
    if scheme in (v2.SCHEME, "v2"):
        return v2.check(proof_doc, root_doc, user=user, balance=balance)
    return VerifyResult(ok=False, scheme=scheme, reason=f"unknown scheme {scheme!r}")
