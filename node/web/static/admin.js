// Admin area: the dashboard's charts (SVG drawn here, from the JSON block the page carries: no outside
// service, no library) and a confirmation before buttons that change money or trading.
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";

  function readJSON(id) {
    const el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const k of Object.keys(attrs || {})) node.setAttribute(k, String(attrs[k]));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** A round, readable upper bound for the axis (1, 2 or 5 times a power of ten). */
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function short(v) {
    if (v >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return String(Math.round(v * 100) / 100);
  }

  /** One bar chart: a bar per day, a tooltip (SVG title) per bar with the date and the exact value. */
  function barChart(labels, series, text) {
    const fig = document.createElement("figure");
    fig.className = "chart";
    const values = series.values.map((v) => Number(v) || 0);
    const total = values.reduce((a, b) => a + b, 0);
    const cap = document.createElement("figcaption");
    const name = document.createElement("span");
    name.textContent = series.name;
    const sum = document.createElement("span");
    sum.textContent = `${text.total}: ${short(total)}${series.unit ? " " + series.unit : ""}`;
    cap.append(name, sum);
    fig.append(cap);
    const W = 300, H = 140, L = 34, B = 18, T = 8, R = 6;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${series.name}: ${text.total} ${short(total)}` });
    const top = niceMax(Math.max(...values, 0));
    const w = (W - L - R) / Math.max(values.length, 1);
    svg.append(el("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
    for (const f of [0, 0.5, 1]) {
      const y = H - B - f * (H - B - T);
      svg.append(el("text", { class: "tick", x: L - 4, y: y + 3, "text-anchor": "end" }, short(top * f)));
    }
    values.forEach((v, i) => {
      const h = (v / top) * (H - B - T);
      const rect = el("rect", { class: "bar", x: L + i * w + 1, y: H - B - h, width: Math.max(w - 2, 1), height: Math.max(h, 0) });
      rect.append(el("title", {}, `${labels[i]}: ${series.values[i]}${series.unit ? " " + series.unit : ""}`));
      svg.append(rect);
    });
    const step = Math.max(1, Math.ceil(labels.length / 5));
    labels.forEach((d, i) => {
      if (i % step === 0) svg.append(el("text", { class: "tick", x: L + i * w + w / 2, y: H - 5, "text-anchor": "middle" }, d.slice(5)));
    });
    if (total === 0) svg.append(el("text", { class: "empty-note", x: (W + L) / 2, y: H / 2, "text-anchor": "middle" }, text.empty));
    fig.append(svg);
    return fig;
  }

  function drawCharts() {
    const data = readJSON("chart-data");
    if (!data) return;
    const text = readJSON("chart-i18n") || { empty: "", total: "" };
    for (const box of document.querySelectorAll("[data-chart]")) {
      const list = data[box.dataset.chart] || [];
      box.replaceChildren(...list.map((s) => barChart(data.labels, s, text)));
    }
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (form.dataset.ask && !window.confirm(form.dataset.ask)) ev.preventDefault();
  });

  drawCharts();
})();
