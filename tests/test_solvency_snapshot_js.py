"""The in-browser verifier (node/web/static/solvency.js) agrees with the Python verifier.

The same JavaScript file the pages load is run under Node.js (whose `crypto.subtle` is the Web
Crypto API of browsers) on a corpus of proofs: the golden Peatio vectors, the v2 worked example of
docs/solvency-v2.md, every member of random trees of both schemes, single-field tamperings of
them, the split-sum attack and malformed documents. Every verdict must equal the Python one.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from node.solvency import maxwell, v2, verify

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "node" / "web" / "static" / "solvency.js"
FIXTURES = ROOT / "tests" / "fixtures" / "liability-proof"
RUNNER = """
const V = require(process.argv[1]);
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", async () => {
  const out = [];
  for (const c of JSON.parse(input)) out.push(await V.verify(c.proof, c.root, c.opts));
  process.stdout.write(JSON.stringify(out));
});
"""


def run_js(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the browser verifier cannot be run outside a browser")
    out = subprocess.run([node, "-e", RUNNER, str(SCRIPT)], input=json.dumps(cases), capture_output=True,
                         text=True, timeout=300, check=True)
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def case(proof: Any, root: Any, **opts: str) -> dict[str, Any]:
    return {"proof": proof, "root": root, "opts": opts}


def _tamper_strings(doc: Any, rng: random.Random) -> Any:
    """A copy with one string value changed (a digit bumped, a hex char flipped, a side swapped)."""
    doc = copy.deepcopy(doc)
    spots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for k, v in items:
            if isinstance(v, str):
                spots.append((node, k))
            else:
                walk(v)

    walk(doc)
    holder, key = rng.choice(spots)
    value: str = holder[key]
    if value in ("left", "right"):
        holder[key] = "right" if value == "left" else "left"
    elif value and value[-1].isdigit():
        holder[key] = value[:-1] + str((int(value[-1]) + 1) % 10)
    elif value and value[-1] in "abcdef":
        holder[key] = value[:-1] + ("0" if value[-1] != "0" else "1")
    else:
        holder[key] = value + "x"
    return doc


def corpus() -> list[dict[str, Any]]:
    rng = random.Random(11)
    cases: list[dict[str, Any]] = []
    jan = (FIXTURES / "jan.json").read_text()
    root = (FIXTURES / "root.json").read_text()
    cases += [case(jan, root), case(jan, root, user="jan", balance="12.13"), case(jan, root, balance="12.14"),
              case(jan, root, user="olalonde"), case(jan, "{not json"), case(json.loads(jan), json.loads(root))]
    # the second Peatio vector (odd leaf carried up)
    three = [("alice", "1.5"), ("bob", "2.25"), ("carol", "0.25")]
    t = maxwell.build_tree(three, precision=2, currency="BTC", timestamp="t",
                           nonces={u: f"{i + 1:032x}" for i, (u, _) in enumerate(three)})
    assert t.root_hash == "389736a0e28b841ead2973ea80d26bc372c861c7baf6a8935b036d1e12d08c24"
    cases += [case(t.partial_tree(u), t.root_json(), user=u, balance=b) for u, b in three]
    # the v2 worked example of the spec
    ex = v2.build_tree([("alice@example.com", "1.5"), ("bob@example.com", "2.25"), ("carol@example.com", "0.25")],
                       precision=8, currency="BTC", snapshot="BTC-2024-01-01", timestamp="2024-01-01T00:00:00Z",
                       secret=bytes(range(32)))
    cases += [case(ex.proof("alice@example.com"), ex.root_json(), user="alice@example.com", balance="1.5"),
              case(ex.proof("alice@example.com"), ex.root_json(), balance="1.50000001"),
              case(ex.proof("alice@example.com"), ex.root_json(), balance="1.500000000"),
              case(ex.proof("bob@example.com"), ex.root_json(), user="alice@example.com")]
    # random trees, every member, then tamperings
    for n in (1, 2, 5, 9, 16):
        accounts = [(f"m{i}@x.org", f"{rng.randrange(10**6)}.{rng.randrange(10**8):08d}") for i in range(n)]
        mt = maxwell.build_tree(accounts, precision=8)
        vt = v2.build_tree(accounts, precision=8, min_height=rng.choice((0, 3)))
        for user, bal in accounts:
            cases.append(case(mt.partial_tree(user), mt.root_json(), user=user, balance=bal))
            cases.append(case(vt.proof(user), vt.root_json(), user=user, balance=bal))
            for _ in range(3):
                cases.append(case(_tamper_strings(mt.partial_tree(user), rng), mt.root_json()))
                cases.append(case(_tamper_strings(vt.proof(user), rng), vt.root_json()))
                cases.append(case(vt.proof(user), _tamper_strings(vt.root_json(), rng)))
    # the split-sum attack: a sibling value lowered, and malformed values
    p = vt.proof("m0@x.org")
    root_doc = vt.root_json()
    if p["path"]:
        lowered = copy.deepcopy(p)
        lowered["path"][-1]["value"] = "0"
        for bad in ("-1", "01", "1e3", " 1", "340282366920938463463374607431768211456"):
            odd = copy.deepcopy(p)
            odd["path"][0]["value"] = bad
            cases.append(case(odd, root_doc))
        cases.append(case(lowered, root_doc))
    cases.append(case(p, {**root_doc, "precision": True}))
    cases.append(case(p, {**root_doc, "height": 65}))
    cases.append(case(p, maxwell.build_tree([("a", "1")]).root_json()))  # schemes mixed
    cases.append(case({"partial_tree": {"data": {"sum": "-1", "user": "a", "nonce": "n"}}}, {"root": {"hash": "0" * 64, "sum": "0"}}))
    return cases


def test_browser_verifier_agrees_with_python() -> None:
    cases = corpus()
    got = run_js(cases)
    assert len(got) == len(cases)
    oks = 0
    for c, js in zip(cases, got, strict=True):
        py = verify(c["proof"], c["root"], **c["opts"])
        assert js["ok"] == py.ok, (c, js, py)
        if py.ok:
            oks += 1
            assert (js["scheme"], js["user"], js["balance"], js["total"], js["currency"]) == (
                py.scheme, py.user, py.balance, py.total, py.currency), (js, py)
        else:
            assert js["reason"], js
    assert 50 < oks < len(cases)  # both verdicts are exercised
