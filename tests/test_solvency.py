"""Proof of Solvency: Peatio golden vectors, v2 spec conformance, and the Maxwell attack."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.solvency import detect_scheme, maxwell, v2
from node.solvency import verify as verify_any
from node.solvency.maxwell import ProofError, format_decimal, format_units, to_units

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "liability-proof"  # Peatio's golden vectors, kept verbatim

JAN_NONCE = "a9ec906f86ab9735ca3175d123f23c79"
JAN_LEAF_HASH = "e72a25053dd72212d23eb571cb75ff082eda072d251fb9f66f2d9894524cb4ab"
GOLDEN_ROOT_HASH = "62a134ba3bcf2db422192933a02639b2accbafca44b439a65d0e38d36f79cfde"
SECOND_VECTOR_HASH = "389736a0e28b841ead2973ea80d26bc372c861c7baf6a8935b036d1e12d08c24"

# Worked example of docs/solvency-v2.md (keep in step with the doc).
DOC_ACCOUNTS = [("alice@example.com", "1.5"), ("bob@example.com", "2.25"), ("carol@example.com", "0.25")]
DOC_SECRET = bytes(range(32))
DOC_ROOT_HASH = "4c9144e2bb388b99fd328477111b606c48ce99eefda662b73af9df51e427fd17"

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fixture(name: str) -> Any:
    path = FIXTURES / name
    if not path.is_file():
        pytest.fail(f"golden vector {path} is missing from the repository")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def accounts() -> list[tuple[str, str]]:
    return [(a["user"], a["balance"]) for a in _fixture("accounts.json")]


@pytest.fixture(scope="module")
def jan() -> dict[str, Any]:
    doc: dict[str, Any] = _fixture("jan.json")
    return doc


@pytest.fixture(scope="module")
def root() -> dict[str, Any]:
    doc: dict[str, Any] = _fixture("root.json")
    return doc


def _doc_tree() -> v2.V2Tree:
    return v2.build_tree(
        DOC_ACCOUNTS,
        precision=8,
        currency="BTC",
        snapshot="BTC-2024-01-01",
        timestamp="2024-01-01T00:00:00Z",
        secret=DOC_SECRET,
    )


# =========================================================================== amounts


@pytest.mark.parametrize(
    ("units", "precision", "text"),
    [
        (0, 8, "0"),
        (1_000_000_000_000, 8, "10000"),
        (1_213_000_000, 8, "12.13"),
        (12_310_000_000, 8, "123.1"),
        (1, 8, "0.00000001"),
        (5, 0, "5"),
        (10**30, 18, "1000000000000"),
    ],
)
def test_format_units_is_peatio_format(units: int, precision: int, text: str) -> None:
    assert format_units(units, precision) == text
    assert format_decimal(Decimal(f"{units}E-{precision}")) == text


def test_format_decimal_never_uses_exponent() -> None:
    assert format_decimal(Decimal("1E+4")) == "10000"
    assert format_decimal(Decimal("1E-8")) == "0.00000001"
    assert format_decimal(Decimal("0.000")) == "0"
    assert format_decimal(Decimal("12.130")) == "12.13"


@given(st.integers(0, 10**40), st.integers(0, 20))
@SETTINGS
def test_integer_and_decimal_formatting_agree(units: int, precision: int) -> None:
    text = format_units(units, precision)
    assert format_decimal(Decimal(f"{units}E-{precision}")) == text
    assert to_units(text, precision) == units


def test_to_units_accepts_exact_and_refuses_inexact() -> None:
    assert to_units("12.13", 8) == 1_213_000_000
    assert to_units(Decimal("10000.00"), 8) == 1_000_000_000_000
    assert to_units(Decimal("1E+2"), 2) == 10_000
    assert to_units(42, 8) == 42  # ints are already smallest units
    assert to_units(Decimal("-0"), 8) == 0
    with pytest.raises(TypeError):
        to_units(1.5, 8)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_units(True, 8)
    for bad in ("-1", "1e3", "1.", ".5", " 1", "0.000000001", "NaN"):
        with pytest.raises(ValueError):
            to_units(bad, 8)
    for bad_dec in (Decimal("-1"), Decimal("NaN"), Decimal("Infinity"), Decimal("0.000000001")):
        with pytest.raises(ValueError):
            to_units(bad_dec, 8)
    with pytest.raises(ValueError):
        to_units(-1, 8)


# =========================================================================== Maxwell: golden vectors


def test_jan_verifies_against_root(jan: dict[str, Any], root: dict[str, Any]) -> None:
    assert maxwell.verify(jan, root)
    assert maxwell.verify(jan, root, user="jan", balance="12.13")
    assert maxwell.verify(json.dumps(jan), json.dumps(root).encode())
    assert not maxwell.verify(jan, root, user="olalonde")
    assert not maxwell.verify(jan, root, balance="12.14")
    assert not maxwell.verify(jan, root, balance=Decimal("12.12"))


def test_jan_recomputes_root_hash_and_sum(jan: dict[str, Any], root: dict[str, Any]) -> None:
    total, digest, user, balance = maxwell.recompute_root(jan)
    assert (total, digest) == (root["root"]["sum"], root["root"]["hash"]) == ("27748.32", GOLDEN_ROOT_HASH)
    assert (user, balance) == ("jan", "12.13")
    assert maxwell.leaf_hash("jan", "12.13", JAN_NONCE) == JAN_LEAF_HASH


def test_accounts_tree_reproduces_everything_but_unknown_nonces(
    accounts: list[tuple[str, str]], jan: dict[str, Any], root: dict[str, Any]
) -> None:
    """jan.json was cut from a tree over accounts.json in file order.

    Only jan's nonce is published, so the other 17 leaf hashes (and hence the sibling hashes
    and the root hash) cannot be rebuilt. Everything else can: jan's leaf hash, the tree shape,
    every sibling sum on jan's path, the root sum, and - once the five unknowable sibling
    hashes are taken from jan.json - the exact bytes of jan.json and root.json.
    """
    tree = maxwell.build_tree(
        accounts, precision=8, currency="BTC", timestamp=root["timestamp"], nonces={"jan": JAN_NONCE}
    )
    assert tree.leaf_hash("jan") == JAN_LEAF_HASH
    assert tree.root_json()["root"]["sum"] == "27748.32"
    assert tree.root_sum == sum(to_units(b, 8) for _, b in accounts)
    assert tree.path("jan") == ["left"] * 5
    assert tree.path("picasso") == ["right", "right"]
    assert tree.root_hash != GOLDEN_ROOT_HASH  # the other 17 nonces are random

    ours = tree.partial_tree("jan")
    golden_siblings = _siblings(jan["partial_tree"])
    our_siblings = _siblings(ours["partial_tree"])
    assert [s["sum"] for s in our_siblings] == [s["sum"] for s in golden_siblings]
    assert [s["sum"] for s in our_siblings] == ["400.45", "10690.05", "3515.82", "13006.77", "123.1"]
    for mine, theirs in zip(our_siblings, golden_siblings, strict=True):
        mine["hash"] = theirs["hash"]
    assert maxwell.dumps(ours) == (FIXTURES / "jan.json").read_text().strip()
    root_doc = tree.root_json()
    root_doc["root"]["hash"] = GOLDEN_ROOT_HASH
    assert maxwell.dumps(root_doc) == (FIXTURES / "root.json").read_text().strip()
    assert maxwell.verify(ours, root_doc)


def _siblings(node: dict[str, Any]) -> list[dict[str, str]]:
    """Sibling data objects along the member's path, leaf end first."""
    found: list[dict[str, str]] = []
    while "left" in node:
        sib_key = "left" if "hash" in node["left"].get("data", {}) else "right"
        found.append(node[sib_key]["data"])
        node = node["right" if sib_key == "left" else "left"]
    return found[::-1]


def test_second_vector_odd_leaf_carried_up() -> None:
    nonces = {u: format(i, "032x") for i, u in enumerate(("alice", "bob", "carol"), start=1)}
    tree = maxwell.build_tree(
        [("alice", "1.5"), ("bob", "2.25"), ("carol", Decimal("0.25"))], precision=8, nonces=nonces
    )
    assert tree.root_json()["root"] == {"hash": SECOND_VECTOR_HASH, "sum": "4"}
    carol = tree.partial_tree("carol")
    assert carol["partial_tree"]["right"] == {
        "data": {"sum": "0.25", "nonce": nonces["carol"], "user": "carol"}
    }
    assert carol["partial_tree"]["left"]["data"]["sum"] == "3.75"
    for user in ("alice", "bob", "carol"):
        assert maxwell.verify(tree.partial_tree(user), tree.root_json(), user=user)


def test_maxwell_single_account_and_bad_input() -> None:
    tree = maxwell.build_tree([("solo", "0")], precision=2, currency="LTC", timestamp="now")
    assert tree.partial_tree("solo") == {"partial_tree": {"data": tree.leaf("solo")}}
    assert tree.root_json()["root"]["sum"] == "0"
    assert maxwell.verify(tree.partial_tree("solo"), tree.root_json())
    with pytest.raises(ValueError):
        maxwell.build_tree([])
    with pytest.raises(ValueError):
        maxwell.build_tree([("a", "1"), ("a", "2")])
    with pytest.raises(TypeError):
        maxwell.build_tree([("a", 1.0)])  # type: ignore[list-item]
    with pytest.raises(KeyError):
        tree.partial_tree("nobody")


def test_maxwell_accepts_peatio_gem_data_null(jan: dict[str, Any], root: dict[str, Any]) -> None:
    gem_style = copy.deepcopy(jan)
    node = gem_style["partial_tree"]
    while "left" in node:
        node["data"] = None
        node = node["left"]
    assert maxwell.verify(gem_style, root)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p.pop("partial_tree"),
        lambda p: p["partial_tree"].pop("right"),
        lambda p: p["partial_tree"].__setitem__("right", {"data": {"sum": "-123.1", "hash": "0" * 64}}),
        lambda p: p["partial_tree"]["right"]["data"].__setitem__("sum", "1.231e2"),
        lambda p: p["partial_tree"]["right"]["data"].__setitem__("sum", 123.1),
        lambda p: p["partial_tree"]["right"]["data"].__setitem__("hash", "xyz"),
        lambda p: p["partial_tree"].__setitem__("data", {"sum": "1", "hash": "0" * 64}),
        lambda p: p["partial_tree"].__setitem__("right", copy.deepcopy(p["partial_tree"]["left"])),
        lambda p: p.__setitem__("partial_tree", p["partial_tree"]["right"]),
        lambda p: p.__setitem__("partial_tree", []),
    ],
)
def test_maxwell_refuses_malformed(mangle: Any, jan: dict[str, Any], root: dict[str, Any]) -> None:
    proof = copy.deepcopy(jan)
    mangle(proof)
    result = maxwell.check(proof, root)
    assert not result.ok and result.reason


def test_maxwell_refuses_hostile_depth_and_junk(root: dict[str, Any]) -> None:
    deep: dict[str, Any] = {"data": {"sum": "1", "nonce": "n", "user": "u"}}
    for _ in range(5000):
        deep = {"left": deep, "right": {"data": {"sum": "0", "hash": "0" * 64}}}
    assert not maxwell.verify({"partial_tree": deep}, root)
    assert not maxwell.verify("{not json", root)
    assert not maxwell.verify(b"[]", root)


# --------------------------------------------------------------------------- Maxwell: properties


@st.composite
def account_sets(draw: st.DrawFn, min_size: int = 1, max_size: int = 40) -> list[tuple[str, str | int]]:
    users = draw(
        st.lists(
            st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=10),
            min_size=min_size,
            max_size=max_size,
            unique=True,
        )
    )
    out: list[tuple[str, str | int]] = []
    for user in users:
        units = draw(st.integers(0, 10**15))
        out.append((user, units if draw(st.booleans()) else format_units(units, 8)))
    return out


@given(account_sets())
@SETTINGS
def test_maxwell_every_member_verifies(accts: list[tuple[str, str | int]]) -> None:
    tree = maxwell.build_tree(accts, precision=8)
    root = tree.root_json()
    assert tree.root_sum == sum(to_units(a, 8) for _, a in accts)
    assert root["root"]["sum"] == format_units(tree.root_sum, 8)
    for user, amount in accts:
        proof = tree.partial_tree(user)
        assert maxwell.verify(proof, root, user=user, balance=format_units(to_units(amount, 8), 8))


def _maxwell_fields(node: dict[str, Any], trail: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    if "left" in node:
        return _maxwell_fields(node["left"], (*trail, "left")) + _maxwell_fields(
            node["right"], (*trail, "right")
        )
    return [((*trail, "data"), key) for key in node["data"]]


def _mutate(key: str, value: str) -> str:
    if key == "sum":
        return format_decimal(Decimal(value) + Decimal("0.00000001"))
    if key == "user":
        return value + "x"
    return ("1" if value[0] == "0" else "0") + value[1:]  # hash / nonce: flip one char


@given(account_sets(), st.data())
@SETTINGS
def test_maxwell_any_single_change_breaks_verification(
    accts: list[tuple[str, str | int]], data: st.DataObject
) -> None:
    tree = maxwell.build_tree(accts, precision=8)
    user = data.draw(st.sampled_from([u for u, _ in accts]))
    proof = tree.partial_tree(user)
    trail, key = data.draw(st.sampled_from(_maxwell_fields(proof["partial_tree"])))
    node = proof["partial_tree"]
    for step in trail:
        node = node[step]
    node[key] = _mutate(key, node[key])
    assert not maxwell.verify(proof, tree.root_json())


# =========================================================================== v2: spec conformance


def _spec_verify(proof: dict[str, Any], root: dict[str, Any]) -> bool:
    """A second verifier written only from docs/solvency-v2.md, to pin the byte layout."""
    nonce = bytes.fromhex(proof["leaf"]["nonce"])
    uid = hashlib.sha256(b"\x02" + nonce + proof["user"].encode("utf-8")).digest()
    if uid.hex() != proof["leaf"]["uid"]:
        return False
    value = int(proof["leaf"]["value"])
    digest = hashlib.sha256(b"\x00" + uid + value.to_bytes(16, "big") + nonce).digest()
    for step in proof["path"]:
        sv, sh = int(step["value"]), bytes.fromhex(step["hash"])
        if step["side"] == "left":
            digest = hashlib.sha256(
                b"\x01" + sv.to_bytes(16, "big") + value.to_bytes(16, "big") + sh + digest
            ).digest()
        else:
            digest = hashlib.sha256(
                b"\x01" + value.to_bytes(16, "big") + sv.to_bytes(16, "big") + digest + sh
            ).digest()
        value += sv
    return bool(
        len(proof["path"]) == root["height"]
        and digest.hex() == root["root"]["hash"]
        and str(value) == root["root"]["value"]
    )


def test_v2_worked_example_matches_doc() -> None:
    tree = _doc_tree()
    root = tree.root_json()
    assert root == {
        "scheme": "pos-v2",
        "currency": "BTC",
        "precision": 8,
        "snapshot": "BTC-2024-01-01",
        "timestamp": "2024-01-01T00:00:00Z",
        "height": 2,
        "root": {"hash": DOC_ROOT_HASH, "value": "400000000"},
    }
    doc = (REPO / "docs" / "solvency-v2.md").read_text()
    assert DOC_ROOT_HASH in doc
    for user, _ in DOC_ACCOUNTS:
        proof = tree.proof(user)
        assert _spec_verify(proof, root)
        assert v2.verify(proof, root, user=user)
        assert proof["leaf"]["uid"] in doc and proof["leaf"]["nonce"] in doc
    alice = tree.proof("alice@example.com")
    assert json.dumps(alice, indent=2) in doc


def test_v2_primitives_layout() -> None:
    uid, nonce = b"\x11" * 32, b"\x22" * 32
    assert v2.encode_value(1) == b"\x00" * 15 + b"\x01"
    assert (
        v2.leaf_hash(uid, 5, nonce)
        == hashlib.sha256(b"\x00" + uid + (5).to_bytes(16, "big") + nonce).digest()
    )
    assert (
        v2.node_hash(1, 2, uid, nonce)
        == hashlib.sha256(b"\x01" + (1).to_bytes(16, "big") + (2).to_bytes(16, "big") + uid + nonce).digest()
    )
    assert v2.user_id("a@b", nonce) == hashlib.sha256(b"\x02" + nonce + b"a@b").digest()
    with pytest.raises(ValueError):
        v2.encode_value(-1)
    with pytest.raises(ValueError):
        v2.encode_value(2**128)


@given(account_sets(min_size=0))
@SETTINGS
def test_v2_every_member_verifies(accts: list[tuple[str, str | int]]) -> None:
    tree = v2.build_tree(accts, precision=8, currency="BTC", snapshot="s1")
    root = tree.root_json()
    assert tree.root_value == sum(to_units(a, 8) for _, a in accts)
    assert tree.size == 2**tree.height >= max(len(accts), 1)
    assert tree.size < 2 * max(len(accts), 1)
    assert len(tree) == len(accts)
    for user, amount in accts:
        proof = tree.proof(user)
        assert v2.verify(proof, root, user=user, balance=to_units(amount, 8))
        assert _spec_verify(proof, root)


def _v2_fields(proof: dict[str, Any]) -> list[tuple[Any, ...]]:
    fields: list[tuple[Any, ...]] = [("user",), ("leaf", "uid"), ("leaf", "nonce"), ("leaf", "value")]
    for i in range(len(proof["path"])):
        fields += [("path", i, "side"), ("path", i, "value"), ("path", i, "hash")]
    return fields


def _v2_mutate(key: str, value: str) -> str:
    if key == "side":
        return "right" if value == "left" else "left"
    if key == "value":
        return str(int(value) - 1) if int(value) else "1"
    if key == "user":
        return value + "x"
    return ("1" if value[0] == "0" else "0") + value[1:]


@given(account_sets(), st.data())
@SETTINGS
def test_v2_any_single_change_breaks_verification(
    accts: list[tuple[str, str | int]], data: st.DataObject
) -> None:
    tree = v2.build_tree(accts, precision=8, snapshot="s")
    user = data.draw(st.sampled_from([u for u, _ in accts]))
    proof = tree.proof(user)
    field = data.draw(st.sampled_from(_v2_fields(proof)))
    node: Any = proof
    for step in field[:-1]:
        node = node[step]
    node[field[-1]] = _v2_mutate(field[-1], node[field[-1]])
    assert not v2.verify(proof, tree.root_json())


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("root", "hash"), "0" * 64),
        (("root", "value"), "399999999"),
        (("height",), 3),
        (("height",), True),
        (("currency",), "LTC"),
        (("snapshot",), "other"),
        (("scheme",), "pos-v1"),
        (("precision",), -1),
    ],
)
def test_v2_refuses_changed_root(where: tuple[str, ...], value: Any) -> None:
    tree = _doc_tree()
    root = tree.root_json()
    node: Any = root
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    assert not v2.verify(tree.proof("bob@example.com"), root)


@pytest.mark.parametrize("bad", ["-5", "05", "1e3", " 5", "5.0", 5, None, str(2**128)])
def test_v2_refuses_non_canonical_or_negative_sibling_value(bad: Any) -> None:
    tree = _doc_tree()
    proof = tree.proof("alice@example.com")
    proof["path"][0]["value"] = bad
    result = v2.check(proof, tree.root_json())
    assert not result.ok and "value" in result.reason


def test_v2_refuses_overflowing_sums() -> None:
    """Values that fit 128 bits one by one but wrap when added are refused, not wrapped."""
    nonce = b"\x07" * 32
    uid = v2.user_id("whale", nonce)
    leaf = v2.leaf_hash(uid, v2.MAX_VALUE, nonce)
    sibling = b"\x09" * 32
    wrapped = (v2.MAX_VALUE + 1) & v2.MAX_VALUE
    forged_root = hashlib.sha256(
        b"\x01" + v2.encode_value(v2.MAX_VALUE) + v2.encode_value(1) + leaf + sibling
    )
    proof = {
        "scheme": "pos-v2",
        "currency": "BTC",
        "snapshot": "s",
        "user": "whale",
        "leaf": {"uid": uid.hex(), "nonce": nonce.hex(), "value": str(v2.MAX_VALUE)},
        "path": [{"side": "right", "value": "1", "hash": sibling.hex()}],
    }
    root = {
        "scheme": "pos-v2",
        "currency": "BTC",
        "precision": 8,
        "snapshot": "s",
        "timestamp": "t",
        "height": 1,
        "root": {"hash": forged_root.hexdigest(), "value": str(wrapped)},
    }
    result = v2.check(proof, root)
    assert not result.ok and "overflow" in result.reason
    with pytest.raises(ValueError):
        v2.build_tree([("a", v2.MAX_VALUE), ("b", 1)])


def test_v2_leaf_hides_email_and_member_count() -> None:
    accts = [(f"user{i}@example.com", str(i)) for i in range(5)]
    small = v2.build_tree(accts, snapshot="s", secret=DOC_SECRET)
    full = v2.build_tree(
        [*accts, ("x@example.com", "1"), ("y@example.com", "2"), ("z@example.com", "0")], snapshot="s"
    )
    assert small.size == full.size == 8 and small.root_json()["height"] == full.root_json()["height"]
    assert set(small.root_json()) == set(full.root_json())
    assert [set(s) for s in small.proof("user1@example.com")["path"]] == [
        set(s) for s in full.proof("user1@example.com")["path"]
    ]
    public = json.dumps(small.root_json()) + json.dumps(small.proof("user0@example.com")["path"])
    assert "@" not in public and "user" not in public
    # Padding leaves are shuffled in, with 32-byte ids as random-looking as members' ids.
    pads = [i for i, u in enumerate(small.users) if u is None]
    assert len(pads) == 3 and small.uids == sorted(small.uids)
    assert len(set(small.uids)) == 8 and all(len(u) == 32 for u in small.uids)
    assert all(small.values[0][i] == 0 for i in pads)
    # A wider pad hides even the power of two.
    assert v2.build_tree(accts, min_height=10).size == 1024


def test_v2_leaf_is_bound_to_member_key() -> None:
    """The exchange cannot hand two members with equal balances one shared leaf."""
    tree = v2.build_tree([("ann@example.com", "7"), ("ben@example.com", "7")], snapshot="s")
    ann_proof = tree.proof("ann@example.com")
    assert v2.verify(ann_proof, tree.root_json(), user="ann@example.com", balance="7")
    shared = dict(ann_proof, user="ben@example.com")
    result = v2.check(shared, tree.root_json(), user="ben@example.com", balance="7")
    assert not result.ok and "not this member's leaf" in result.reason
    assert not v2.verify(ann_proof, tree.root_json(), user="ben@example.com")


def test_v2_deterministic_with_secret_random_without() -> None:
    accts = [("a", "1"), ("b", "2"), ("c", "3")]
    one = v2.build_tree(accts, snapshot="s", timestamp="t", secret=b"k" * 32)
    two = v2.build_tree(accts, snapshot="s", timestamp="t", secret=b"k" * 32)
    assert one.root_json() == two.root_json() and one.proof("b") == two.proof("b")
    assert v2.build_tree(accts, snapshot="s2", timestamp="t", secret=b"k" * 32).root_hash != one.root_hash
    assert v2.build_tree(accts, snapshot="s", timestamp="t").root_hash != one.root_hash
    empty = v2.build_tree([], snapshot="s")
    assert (empty.size, empty.root_value, empty.height) == (1, 0, 0)
    with pytest.raises(ValueError):
        v2.build_tree([("a", "1"), ("a", "1")])
    with pytest.raises(ValueError):
        v2.build_tree(accts, secret=b"short")


# =========================================================================== the Maxwell attack


def test_attack_split_sums_fools_maxwell_but_not_v2() -> None:
    """ePrint 2018/1139 on two members A=10, B=5 who are siblings: true total 15.

    Maxwell: the parent commits to one sum only, so the exchange publishes 10, shows A a
    sibling of 0 and B a sibling of 5. Both verify. v2: the parent commits to (vL, vR), so
    every forged root below 15 is refused by at least one of the two members.
    """
    na, nb = "0" * 31 + "a", "0" * 31 + "b"
    ha, hb = maxwell.leaf_hash("A", "10", na), maxwell.leaf_hash("B", "5", nb)
    forged_root = {
        "root": {"hash": maxwell.node_hash("10", ha, hb), "sum": "10"},
        "currency": "X",
        "timestamp": "t",
    }
    proof_a = {
        "partial_tree": {
            "right": {"data": {"sum": "0", "hash": hb}},
            "left": {"data": {"sum": "10", "nonce": na, "user": "A"}},
        }
    }
    proof_b = {
        "partial_tree": {
            "left": {"data": {"sum": "5", "hash": ha}},
            "right": {"data": {"sum": "5", "nonce": nb, "user": "B"}},
        }
    }
    assert maxwell.verify(proof_a, forged_root, user="A", balance="10")
    assert maxwell.verify(proof_b, forged_root, user="B", balance="5")

    nonce_a, nonce_b = b"\xaa" * 32, b"\xbb" * 32
    uid_a, uid_b = v2.user_id("A", nonce_a), v2.user_id("B", nonce_b)
    la, lb = v2.leaf_hash(uid_a, 10, nonce_a), v2.leaf_hash(uid_b, 5, nonce_b)

    def v2_proof(
        user: str, uid: bytes, nonce: bytes, value: int, side: str, sib_value: int, sib_hash: bytes
    ) -> dict[str, Any]:
        return {
            "scheme": "pos-v2",
            "currency": "X",
            "snapshot": "s",
            "user": user,
            "leaf": {"uid": uid.hex(), "nonce": nonce.hex(), "value": str(value)},
            "path": [{"side": side, "value": str(sib_value), "hash": sib_hash.hex()}],
        }

    for claimed_left in range(16):
        for claimed_right in range(16 - claimed_left):
            if claimed_left + claimed_right >= 15:
                continue
            total = claimed_left + claimed_right
            root = {
                "scheme": "pos-v2",
                "currency": "X",
                "precision": 0,
                "snapshot": "s",
                "timestamp": "t",
                "height": 1,
                "root": {
                    "hash": v2.node_hash(claimed_left, claimed_right, la, lb).hex(),
                    "value": str(total),
                },
            }
            # Each member sees whatever sibling value would make their own view add up.
            a_ok = v2.verify(
                v2_proof("A", uid_a, nonce_a, 10, "right", max(total - 10, 0), lb), root, balance=10
            )
            b_ok = v2.verify(v2_proof("B", uid_b, nonce_b, 5, "left", max(total - 5, 0), la), root, balance=5)
            assert not (a_ok and b_ok), (claimed_left, claimed_right)


def test_attack_on_golden_accounts_fools_maxwell_but_not_v2(accounts: list[tuple[str, str]]) -> None:
    """The same attack at the root of the 18-member golden set: hide the smaller half."""
    tree = maxwell.build_tree(accounts, precision=8, currency="BTC", timestamp="t")
    (left_sum, right_sum), (left_hash, right_hash) = tree.level_sums[-2], tree.level_hashes[-2]
    claimed = max(left_sum, right_sum)
    forged: dict[str, Any] = {
        "root": {
            "hash": maxwell.node_hash(format_units(claimed, 8), left_hash, right_hash),
            "sum": format_units(claimed, 8),
        },
        "currency": "BTC",
        "timestamp": "t",
    }
    assert forged["root"]["sum"] == "27625.22"  # 123.1 BTC of liabilities vanish
    for user, balance in accounts:
        proof = tree.partial_tree(user)
        top = proof["partial_tree"]
        if tree.path(user)[0] == "left":
            top["right"]["data"]["sum"] = format_units(claimed - left_sum, 8)
        else:
            top["left"]["data"]["sum"] = format_units(claimed - right_sum, 8)
        assert maxwell.verify(proof, forged, user=user, balance=balance), user

    vt = v2.build_tree(accounts, precision=8, currency="BTC", snapshot="s")
    (vl, vr), (hl, hr) = vt.values[-2], vt.hashes[-2]
    hidden = min(vl, vr)
    forged_value = vl + vr - hidden
    # Satisfy the left half: root commits to (vl, forged_value - vl).
    v2_root = dict(
        vt.root_json(),
        root={"hash": v2.node_hash(vl, forged_value - vl, hl, hr).hex(), "value": str(forged_value)},
    )
    half = vt.size // 2
    left_users = [u for u in vt.users[:half] if u is not None]
    right_users = [u for u in vt.users[half:] if u is not None]
    assert left_users and right_users
    for user in left_users:
        proof = vt.proof(user)
        proof["path"][-1]["value"] = str(forged_value - vl)
        assert v2.verify(proof, v2_root)  # this half alone can be fooled...
    for user in right_users:
        for shown_left in {vl, forged_value - vr if forged_value >= vr else 0, 0, forged_value}:
            proof = vt.proof(user)
            proof["path"][-1]["value"] = str(shown_left)
            assert not v2.verify(proof, v2_root)  # ...but every member of the other half catches it


def test_v2_tampered_sibling_against_published_root_refused() -> None:
    tree = _doc_tree()
    for user, _ in DOC_ACCOUNTS:
        for i in range(tree.height):
            proof = tree.proof(user)
            shown = int(proof["path"][i]["value"])
            for lower in {0, shown // 2, shown - 1} - {shown} if shown else ():
                proof["path"][i]["value"] = str(lower)
                assert not v2.verify(proof, tree.root_json())


# =========================================================================== dispatcher and CLI


def test_detect_scheme(jan: dict[str, Any], root: dict[str, Any]) -> None:
    tree = _doc_tree()
    assert detect_scheme(jan, root) == "maxwell"
    assert detect_scheme(tree.proof("bob@example.com"), tree.root_json()) == "pos-v2"
    with pytest.raises(ProofError):
        detect_scheme(jan, tree.root_json())
    assert verify_any(jan, root).ok
    assert not verify_any(jan, root, scheme="pos-v2").ok
    assert not verify_any(jan, root, scheme="nope").ok


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "node.solvency", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_verifies_golden_maxwell_and_v2(tmp_path: Path, jan: dict[str, Any]) -> None:
    ok = _cli("verify", "--root", str(FIXTURES / "root.json"), "--proof", str(FIXTURES / "jan.json"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK") and "user=jan" in ok.stdout and "balance=12.13" in ok.stdout

    bad = copy.deepcopy(jan)
    bad["partial_tree"]["right"]["data"]["sum"] = "0"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    fail = _cli("verify", "--root", str(FIXTURES / "root.json"), "--proof", str(tmp_path / "bad.json"))
    assert fail.returncode == 1 and fail.stdout.startswith("FAIL") and "user=jan" in fail.stdout

    tree = _doc_tree()
    (tmp_path / "root2.json").write_text(json.dumps(tree.root_json()))
    (tmp_path / "bob.json").write_text(json.dumps(tree.proof("bob@example.com")))
    args = ("verify", "--root", str(tmp_path / "root2.json"), "--proof", str(tmp_path / "bob.json"))
    ok2 = _cli(*args, "--user", "bob@example.com", "--balance", "2.25")
    assert ok2.returncode == 0, ok2.stdout + ok2.stderr
    assert (
        "scheme=pos-v2" in ok2.stdout
        and "user=bob@example.com" in ok2.stdout
        and "balance=2.25" in ok2.stdout
    )
    assert _cli(*args, "--scheme", "v2").returncode == 0
    assert _cli(*args, "--scheme", "maxwell").returncode == 1
    assert _cli(*args, "--balance", "2.26").returncode == 1
    assert _cli(*args, "--user", "alice@example.com").returncode == 1
    missing = _cli("verify", "--root", str(tmp_path / "nope.json"), "--proof", str(tmp_path / "bob.json"))
    assert missing.returncode == 1 and missing.stdout.startswith("FAIL")
