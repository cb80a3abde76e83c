/* Proof-of-solvency verifier that runs in the member's own browser.
 *
 * Checks a member's proof against a published root, for both schemes the exchange publishes:
 * Peatio's Maxwell sum tree (node/solvency/maxwell.py) and the v2 tree (docs/solvency-v2.md,
 * section 6, implemented rule by rule). SHA-256 comes from crypto.subtle, amounts are BigInt:
 * no float, no library, nothing fetched from another site. The same rules as the Python
 * verifier (python -m node.solvency verify), so both accept and refuse the same documents.
 *
 * Wires itself to the public page (#verify-paste: paste a root and a proof) and to the member page
 * (.solvency-proof sections with the proofs embedded as JSON in #solvency-proofs). Exported as
 * SolvencyVerify (and module.exports under Node, where the test suite runs it).
 */
(function (root) {
  "use strict";

  const SCHEME_V2 = "pos-v2";
  const MAX_DEPTH = 128;
  const MAX_SUM_CHARS = 100;
  const MAX_HEIGHT = 64;
  const MAX_PRECISION = 36;
  const MAX_VALUE = (1n << 128n) - 1n;
  const DECIMAL_RE = /^[0-9]+(?:\.[0-9]+)?$/;
  const HEX64_RE = /^[0-9a-f]{64}$/;
  const UINT_RE = /^(?:0|[1-9][0-9]{0,38})$/;
  const utf8 = new TextEncoder();

  class ProofError extends Error {}

  // ------------------------------------------------------------------ bytes and hashes
  async function sha256(bytes) {
    const c = root.crypto;
    if (!c || !c.subtle) {
      throw new ProofError("this browser offers no crypto.subtle here (the page must be served over HTTPS)");
    }
    return new Uint8Array(await c.subtle.digest("SHA-256", bytes));
  }

  function toHex(bytes) {
    let out = "";
    for (const b of bytes) out += b.toString(16).padStart(2, "0");
    return out;
  }

  function fromHex(text) {
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
    return out;
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function u128(value) {
    const out = new Uint8Array(16);
    let v = value;
    for (let i = 15; i >= 0; i--) {
      out[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return out;
  }

  const isObject = (x) => x !== null && typeof x === "object" && !Array.isArray(x);

  function loadJson(doc, what) {
    if (typeof doc !== "string") return doc;
    try {
      return JSON.parse(doc);
    } catch (e) {
      throw new ProofError(`${what} is not valid JSON: ${e.message}`);
    }
  }

  // ------------------------------------------------------------------ exact decimals (Maxwell sums)
  function parseSum(value, where) {
    if (typeof value !== "string") throw new ProofError(`${where}: sum must be a string`);
    if (value.length > MAX_SUM_CHARS || !DECIMAL_RE.test(value)) {
      throw new ProofError(`${where}: sum ${JSON.stringify(value)} is not a plain non-negative decimal`);
    }
    const [whole, frac = ""] = value.split(".");
    return { n: BigInt(whole + frac), s: frac.length };
  }

  function scaled(d, s) {
    return d.n * 10n ** BigInt(s - d.s);
  }

  function addDec(a, b) {
    const s = Math.max(a.s, b.s);
    return { n: scaled(a, s) + scaled(b, s), s };
  }

  function eqDec(a, b) {
    const s = Math.max(a.s, b.s);
    return scaled(a, s) === scaled(b, s);
  }

  /** Peatio's canonical sum text: "0", "10000", "12.13" (what the Python verifier hashes). */
  function formatDec(d) {
    if (d.n === 0n) return "0";
    const digits = d.n.toString();
    if (d.s === 0) return digits;
    const text = digits.padStart(d.s + 1, "0");
    const whole = text.slice(0, text.length - d.s);
    const frac = text.slice(text.length - d.s).replace(/0+$/, "");
    return frac ? `${whole}.${frac}` : whole;
  }

  // ------------------------------------------------------------------ Peatio's Maxwell tree
  async function walk(node, depth) {
    if (depth > MAX_DEPTH) throw new ProofError("partial tree too deep");
    if (!isObject(node)) throw new ProofError("tree node must be an object");
    if ("left" in node || "right" in node) {
      if (!("left" in node && "right" in node)) throw new ProofError("interior node needs both left and right");
      if (node.data !== undefined && node.data !== null) throw new ProofError("interior node must not carry data");
      const left = await walk(node.left, depth + 1);
      const right = await walk(node.right, depth + 1);
      if (left.leaf && right.leaf) throw new ProofError("more than one user leaf");
      const sum = addDec(left.sum, right.sum);
      const hash = toHex(await sha256(utf8.encode(formatDec(sum) + left.hash + right.hash)));
      return { sum, hash, leaf: left.leaf || right.leaf };
    }
    const data = node.data;
    if (!isObject(data)) throw new ProofError("leaf node needs a data object");
    const sum = parseSum(data.sum, "node");
    if ("user" in data || "nonce" in data) {
      const { user, nonce } = data;
      if (typeof user !== "string" || !user) throw new ProofError("user leaf: user must be a non-empty string");
      if (typeof nonce !== "string" || !nonce) throw new ProofError("user leaf: nonce must be a non-empty string");
      const hash = toHex(await sha256(utf8.encode(`${user}|${data.sum}|${nonce}`)));
      if ("hash" in data && data.hash !== hash) throw new ProofError("user leaf: stated hash does not match user|sum|nonce");
      return { sum, hash, leaf: { user, sum: data.sum } };
    }
    if (typeof data.hash !== "string" || !HEX64_RE.test(data.hash)) {
      throw new ProofError("sibling node: hash must be 64 lowercase hex chars");
    }
    return { sum, hash: data.hash, leaf: null };
  }

  async function checkMaxwell(proofDoc, rootDoc, opts) {
    const result = { ok: false, scheme: "maxwell", user: null, balance: null, currency: null, total: null, reason: "" };
    try {
      const proof = loadJson(proofDoc, "proof");
      if (!isObject(proof) || !("partial_tree" in proof)) throw new ProofError('proof must be an object with a "partial_tree" key');
      const top = await walk(proof.partial_tree, 0);
      if (!top.leaf) throw new ProofError("no user leaf in partial tree");
      result.user = top.leaf.user;
      result.balance = top.leaf.sum;
      const r = loadJson(rootDoc, "root");
      if (!isObject(r) || !isObject(r.root)) throw new ProofError('root must be an object with a "root" object');
      const rootSum = parseSum(r.root.sum, "root");
      result.currency = typeof r.currency === "string" ? r.currency : null;
      result.total = formatDec(rootSum);
      if (opts.user !== undefined && opts.user !== top.leaf.user) {
        throw new ProofError(`leaf belongs to ${JSON.stringify(top.leaf.user)}, not ${JSON.stringify(opts.user)}`);
      }
      if (opts.balance !== undefined && !eqDec(parseSum(opts.balance, "expected balance"), parseSum(top.leaf.sum, "leaf"))) {
        throw new ProofError(`leaf balance ${top.leaf.sum} differs from expected ${opts.balance}`);
      }
      if (top.hash !== r.root.hash) throw new ProofError(`recomputed root hash ${top.hash} differs from published ${r.root.hash}`);
      if (!eqDec(top.sum, rootSum)) throw new ProofError(`recomputed total ${formatDec(top.sum)} differs from published ${r.root.sum}`);
      result.ok = true;
    } catch (e) {
      if (!(e instanceof ProofError)) throw e;
      result.reason = e.message;
    }
    return result;
  }

  // ------------------------------------------------------------------ v2 (docs/solvency-v2.md §6)
  function uint(value, where) {
    if (typeof value !== "string" || !UINT_RE.test(value)) {
      throw new ProofError(`${where}: value must be a canonical non-negative decimal string`);
    }
    const n = BigInt(value);
    if (n > MAX_VALUE) throw new ProofError(`${where}: value out of 0..2**128-1`);
    return n;
  }

  function hex32(value, where) {
    if (typeof value !== "string" || !HEX64_RE.test(value)) throw new ProofError(`${where}: must be 64 lowercase hex chars`);
    return fromHex(value);
  }

  function str(doc, key, where) {
    if (typeof doc[key] !== "string") throw new ProofError(`${where}: ${key} must be a string`);
    return doc[key];
  }

  function isInt(x, lo, hi) {
    return typeof x === "number" && Number.isInteger(x) && x >= lo && x <= hi;
  }

  /** Whole coins ("1.5") to smallest units, exactly: more decimals than `precision` is refused. */
  function toUnits(amount, precision) {
    if (typeof amount !== "string" || !DECIMAL_RE.test(amount)) throw new ProofError(`not a plain non-negative decimal: ${amount}`);
    let [whole, frac = ""] = amount.split(".");
    if (frac.length > precision) {
      if (/[^0]/.test(frac.slice(precision))) throw new ProofError(`${amount} has more than ${precision} decimals`);
      frac = frac.slice(0, precision);
    }
    return BigInt(whole + frac.padEnd(precision, "0"));
  }

  async function recomputeV2(proof) {
    if (!isObject(proof) || proof.scheme !== SCHEME_V2) throw new ProofError(`proof must be an object with "scheme": "${SCHEME_V2}"`);
    const user = str(proof, "user", "proof");
    if (!user) throw new ProofError("proof: user must be non-empty");
    const leaf = proof.leaf;
    if (!isObject(leaf)) throw new ProofError("proof: leaf must be an object");
    const uid = hex32(leaf.uid, "leaf.uid");
    const nonce = hex32(leaf.nonce, "leaf.nonce");
    let value = uint(leaf.value, "leaf.value");
    if (toHex(await sha256(concat(Uint8Array.of(2), nonce, utf8.encode(user)))) !== toHex(uid)) {
      throw new ProofError(`leaf.uid is not SHA-256(0x02 ‖ nonce ‖ ${JSON.stringify(user)}): not this member's leaf`);
    }
    const path = proof.path;
    if (!Array.isArray(path) || path.length > MAX_HEIGHT) throw new ProofError(`proof: path must be a list of at most ${MAX_HEIGHT} steps`);
    const leafValue = value;
    let digest = await sha256(concat(Uint8Array.of(0), uid, u128(value), nonce));
    for (let i = 0; i < path.length; i++) {
      const where = `path[${i}]`;
      const step = path[i];
      if (!isObject(step)) throw new ProofError(`${where}: must be an object`);
      const sibValue = uint(step.value, where);
      const sibHash = hex32(step.hash, `${where}.hash`);
      if (value + sibValue > MAX_VALUE) throw new ProofError(`${where}: sum overflows 128 bits`);
      if (step.side === "left") {
        digest = await sha256(concat(Uint8Array.of(1), u128(sibValue), u128(value), sibHash, digest));
      } else if (step.side === "right") {
        digest = await sha256(concat(Uint8Array.of(1), u128(value), u128(sibValue), digest, sibHash));
      } else {
        throw new ProofError(`${where}: side must be "left" or "right"`);
      }
      value += sibValue;
    }
    return { value, digest: toHex(digest), user, leafValue, steps: path.length };
  }

  async function checkV2(proofDoc, rootDoc, opts) {
    const result = { ok: false, scheme: SCHEME_V2, user: null, balance: null, currency: null, total: null, reason: "" };
    try {
      const r = loadJson(rootDoc, "root");
      if (!isObject(r) || r.scheme !== SCHEME_V2) throw new ProofError(`root must be an object with "scheme": "${SCHEME_V2}"`);
      const currency = str(r, "currency", "root");
      const snapshot = str(r, "snapshot", "root");
      if (!isInt(r.precision, 0, MAX_PRECISION)) throw new ProofError(`root: precision must be an int in 0..${MAX_PRECISION}`);
      if (!isInt(r.height, 0, MAX_HEIGHT)) throw new ProofError(`root: height must be an int in 0..${MAX_HEIGHT}`);
      if (!isObject(r.root)) throw new ProofError("root: root must be an object");
      const rootHash = toHex(hex32(r.root.hash, "root.hash"));
      const rootValue = uint(r.root.value, "root.value");
      result.currency = currency;
      result.total = formatDec({ n: rootValue, s: r.precision });
      const proof = loadJson(proofDoc, "proof");
      if (isObject(proof) && typeof proof.user === "string") result.user = proof.user;
      const got = await recomputeV2(proof);
      result.user = got.user;
      result.balance = formatDec({ n: got.leafValue, s: r.precision });
      if (proof.currency !== currency || proof.snapshot !== snapshot) {
        throw new ProofError("proof is for another currency or snapshot than the root");
      }
      if (opts.user !== undefined && opts.user !== got.user) {
        throw new ProofError(`proof is for ${JSON.stringify(got.user)}, not ${JSON.stringify(opts.user)}`);
      }
      if (opts.balance !== undefined) {
        let expected;
        try {
          expected = toUnits(opts.balance, r.precision);
        } catch (e) {
          throw new ProofError(`expected balance: ${e.message}`);
        }
        if (expected !== got.leafValue) throw new ProofError(`leaf balance ${result.balance} differs from expected ${opts.balance}`);
      }
      if (got.steps !== r.height) throw new ProofError(`path has ${got.steps} steps, root height is ${r.height}`);
      if (got.digest !== rootHash) throw new ProofError(`recomputed root hash ${got.digest} differs from published ${rootHash}`);
      if (got.value !== rootValue) throw new ProofError(`recomputed total ${got.value} differs from published ${rootValue}`);
      result.ok = true;
    } catch (e) {
      if (!(e instanceof ProofError)) throw e;
      result.reason = e.message;
    }
    return result;
  }

  // ------------------------------------------------------------------ either scheme
  function detectScheme(proof, rootDoc) {
    const proofV2 = isObject(proof) && proof.scheme === SCHEME_V2;
    const rootV2 = isObject(rootDoc) && rootDoc.scheme === SCHEME_V2;
    const proofMx = isObject(proof) && "partial_tree" in proof;
    if (proofV2 && rootV2) return SCHEME_V2;
    if (proofMx && !rootV2) return "maxwell";
    throw new ProofError("cannot tell the scheme: proof and root shapes do not match one scheme");
  }

  /** Verify a proof (object or JSON text) against a root; opts: {scheme, user, balance}. */
  async function verify(proofDoc, rootDoc, opts = {}) {
    let scheme = opts.scheme || "auto";
    const clean = {
      user: opts.user === "" || opts.user == null ? undefined : opts.user,
      balance: opts.balance === "" || opts.balance == null ? undefined : opts.balance,
    };
    let proof;
    let r;
    try {
      proof = loadJson(proofDoc, "proof");
      r = loadJson(rootDoc, "root");
      if (scheme === "auto") scheme = detectScheme(proof, r);
    } catch (e) {
      if (!(e instanceof ProofError)) throw e;
      return { ok: false, scheme: scheme === "auto" ? "unknown" : scheme, user: null, balance: null, currency: null, total: null, reason: e.message };
    }
    if (scheme === "maxwell") return checkMaxwell(proof, r, clean);
    if (scheme === SCHEME_V2 || scheme === "v2") return checkV2(proof, r, clean);
    return { ok: false, scheme, user: null, balance: null, currency: null, total: null, reason: `unknown scheme ${scheme}` };
  }

  /** The page's language where app.js handed the texts over (node/i18n.py JS_MESSAGES); else English. */
  function t(text, params) {
    if (root.Exchange && root.Exchange.t) return root.Exchange.t(text, params);
    let out = text;
    for (const k of Object.keys(params || {})) out = out.split("{" + k + "}").join(String(params[k]));
    return out;
  }

  function describe(r) {
    const name = t(r.scheme === "maxwell" ? "Peatio tree" : "v2 tree");
    if (r.ok) {
      return "✓ " + t("{tree}: {user} holds {balance} {currency} within the published total {total}",
        { tree: name, user: r.user, balance: r.balance, currency: r.currency || "", total: r.total });
    }
    return `✗ ${name}: ${r.reason}`;
  }

  function show(out, results) {
    out.textContent = results.map(describe).join("  ·  ");
    out.dataset.ok = String(results.every((r) => r.ok));
  }

  // ------------------------------------------------------------------ the pages
  async function publicRoot(currency, scheme, snapshot, embedded) {
    // The root the whole world sees, not one handed to this member alone; the embedded copy only
    // if the public one cannot be fetched (then the page says so).
    try {
      const url = `/api/v2/solvency/root?currency=${encodeURIComponent(currency)}&scheme=${scheme}&snapshot=${snapshot}`;
      const resp = await root.fetch(url, { credentials: "omit" });
      if (resp.ok) return { doc: await resp.json(), published: true };
    } catch (e) {
      /* offline: fall through */
    }
    return { doc: embedded, published: false };
  }

  function wire(doc) {
    const form = doc.getElementById("verify-paste");
    if (form) {
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const out = form.querySelector("output");
        out.textContent = t("checking…");
        const f = form.elements;
        const result = await verify(f.proof.value, f.root.value, { user: f.user.value.trim(), balance: f.balance.value.trim() });
        show(out, [result]);
      });
    }
    const data = doc.getElementById("solvency-proofs");
    if (!data) return;
    const proofs = JSON.parse(data.textContent);
    for (const section of doc.querySelectorAll(".solvency-proof")) {
      const p = proofs[Number(section.dataset.index)];
      const button = section.querySelector(".verify-member");
      const out = section.querySelector(".verify-result");
      button.addEventListener("click", async () => {
        out.textContent = t("checking…");
        const opts = { user: p.user, balance: p.balance };
        const results = [];
        let published = true;
        if (p.maxwell_root) {
          const mr = await publicRoot(p.currency, "maxwell", p.snapshot.id, p.maxwell_root);
          published = published && mr.published;
          results.push(await verify(p.maxwell, mr.doc, { ...opts, scheme: "maxwell" }));
        }
        const vr = await publicRoot(p.currency, "v2", p.snapshot.id, p.v2_root);
        published = published && vr.published;
        results.push(await verify(p.v2, vr.doc, { ...opts, scheme: SCHEME_V2 }));
        show(out, results);
        if (!published) out.textContent += "  (" + t("checked against the roots in this page: the public ones could not be fetched") + ")";
      });
    }
  }

  const api = { verify, checkMaxwell, checkV2, detectScheme, toUnits, formatDec, ProofError };
  root.SolvencyVerify = api;
  if (typeof module === "object" && module.exports) module.exports = api;
  if (root.document) {
    if (root.document.readyState === "loading") root.document.addEventListener("DOMContentLoaded", () => wire(root.document));
    else wire(root.document);
  }
})(typeof globalThis !== "undefined" ? globalThis : window);
