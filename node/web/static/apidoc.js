// Renders /api/v2/doc (OpenAPI 3) as a readable page: operations, params, bodies, response schemas.
(function () {
  "use strict";

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children || []) if (c) e.appendChild(c);
    return e;
  }

  let spec = null;

  function resolve(schema) {
    if (schema && schema.$ref) return resolve(spec.components.schemas[schema.$ref.split("/").pop()]);
    return schema || {};
  }

  function typeText(schema) {
    const s = resolve(schema);
    const name = schema && schema.$ref ? schema.$ref.split("/").pop() : null;
    let t = s.type || (s.properties ? "object" : "any");
    if (s.type === "array") t = "array of " + typeText(s.items);
    if (name) t = name + " (" + t + ")";
    if (s.enum) t += ": " + s.enum.map((v) => (v === null ? "null" : v)).join(" | ");
    if (s.minimum !== undefined && s.maximum !== undefined) t += " " + s.minimum + ".." + s.maximum;
    if (s.default !== undefined) t += ", default " + s.default;
    if (s.nullable) t += ", or null";
    return t;
  }

  function schemaTree(schema, depth) {
    const s = resolve(schema);
    const ul = el("ul");
    if (depth > 4) return ul;
    const target = s.type === "array" ? resolve(s.items) : s;
    const req = new Set(target.required || []);
    for (const [k, v] of Object.entries(target.properties || {})) {
      const li = el("li", {}, [el("code", { text: k + (req.has(k) ? "" : "?") }),
        el("span", { class: "muted", text: " " + typeText(v) })]);
      const inner = resolve(v);
      const next = inner.type === "array" ? resolve(inner.items) : inner;
      if (next.properties) li.appendChild(schemaTree(inner, depth + 1));
      ul.appendChild(li);
    }
    return ul;
  }

  function paramsTable(rows) {
    const table = el("table", {}, [el("tr", {}, ["name", "in", "type", "description"].map((h) => el("th", { text: h })))]);
    for (const r of rows) {
      table.appendChild(el("tr", {}, [el("td", {}, [el("code", { text: r.name + (r.required ? "" : "?") })]),
        el("td", { text: r.in }), el("td", { class: "muted", text: typeText(r.schema) }),
        el("td", { text: r.description || "" })]));
    }
    return table;
  }

  function operation(path, verb, op) {
    const signed = (op.security || []).some((s) => Object.keys(s).length) && !(op.security || []).some((s) => !Object.keys(s).length);
    const id = verb + path.replace(/[^a-z0-9]+/gi, "-");
    const box = el("section", { class: "op", id: id }, [
      el("h3", {}, [el("span", { class: "verb " + verb, text: verb.toUpperCase() }), document.createTextNode(path),
        signed ? el("span", { class: "signed", text: "signed" }) : null]),
      el("p", { text: op.summary || "" }),
      op.description ? el("p", { class: "desc", text: op.description }) : null,
    ]);
    if (op.parameters && op.parameters.length) box.appendChild(paramsTable(op.parameters));
    if (op.requestBody) {
      const media = op.requestBody.content["application/x-www-form-urlencoded"] || Object.values(op.requestBody.content)[0];
      const schema = resolve(media.schema);
      const req = new Set(schema.required || []);
      box.appendChild(el("p", { class: "muted", text: "Body (form or JSON):" }));
      box.appendChild(paramsTable(Object.entries(schema.properties || {}).map(([name, s]) =>
        ({ name: name, in: "body", required: req.has(name), schema: s, description: s.description }))));
    }
    for (const [status, resp] of Object.entries(op.responses || {})) {
      const media = resp.content && resp.content["application/json"];
      const row = el("div", { class: "schema" }, [el("strong", { text: status + " " }),
        el("span", { class: "muted", text: resp.description + (media ? " — " + typeText(media.schema) : "") })]);
      if (media && status < "400") row.appendChild(schemaTree(media.schema, 0));
      box.appendChild(row);
    }
    return [id, box];
  }

  async function main() {
    const res = await fetch("/api/v2/doc");
    spec = await res.json();
    document.title = spec.info.title;
    document.getElementById("title").textContent = spec.info.title;
    const doc = document.getElementById("doc");
    const toc = el("ul");
    doc.replaceChildren(el("p", { class: "desc", text: spec.info.description }));
    const base = (spec.servers && spec.servers[0] && spec.servers[0].url) || "";
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [verb, op] of Object.entries(item)) {
        const [id, box] = operation(base + path, verb, op);
        doc.appendChild(box);
        toc.appendChild(el("li", {}, [el("a", { href: "#" + id, text: verb.toUpperCase() + " " + path })]));
      }
    }
    document.getElementById("toc").replaceChildren(toc);
  }

  main().catch((e) => {
    document.getElementById("doc").replaceChildren(el("p", { text: "Could not load the description: " + e }));
  });
})();
