// The live market page: order book (grouped), recent trades, ticker, candles with volume and moving
// averages (TradingView's lightweight-charts, vendored) and a depth chart, the order form (limit,
// market, stop-limit; GTC, post-only, IOC, FOK) with its total and fee before submitting at the
// rates in force, the market's halt with the admin's reason, toasts for the member's fills, and the
// member's orders, trades and balances without reloading.
//
// Public market data arrives through a *feed*: start(handlers) calls handlers.depth({asks, bids}) (API
// v2's depth shape), handlers.trades([...]), handlers.ticker({...}) and handlers.kline(period, k).
// SocketFeed speaks the node's websocket protocol (docs/websocket.md: depth snapshot + sequenced
// diffs, trades, ticker, k-lines); PollingFeed asks the REST API, and takes over when the socket
// cannot be had. Everything else in this file only knows the handlers.
// The member's own orders and balances come from /markets/<id>/me.json (the session, not an API key),
// fetched when a trade or an order of the member's changes something, and every few seconds.
(function () {
  "use strict";
  const E = window.Exchange;
  const t = E.t;
  const cfgEl = document.getElementById("market-config");
  if (!cfgEl) return;
  const cfg = JSON.parse(cfgEl.textContent);
  const market = cfg.market;
  const PP = cfg.pricePrecision, VP = cfg.volumePrecision, QP = cfg.quotePrecision, BP = cfg.basePrecision;
  const $ = (id) => document.getElementById(id);

  // -- exact decimals (BigInt): totals and fees shown before submitting must be exact ---------------
  const TEN = (n) => 10n ** BigInt(n);
  function toUnits(text, decimals) {
    const s = String(text || "").trim();
    if (!/^[0-9]{1,30}(\.[0-9]{1,30})?$/.test(s)) return null;
    const [w, f = ""] = s.split(".");
    const frac = f.replace(/0+$/, "");
    if (frac.length > decimals) return null;
    return BigInt(w) * TEN(decimals) + BigInt((frac + "0".repeat(decimals)).slice(0, decimals) || "0");
  }
  function fromUnits(units, decimals) {
    const neg = units < 0n;
    let u = neg ? -units : units;
    const whole = u / TEN(decimals), frac = u % TEN(decimals);
    const s = decimals > 0 ? `${whole}.${frac.toString().padStart(decimals, "0")}` : `${whole}`;
    return neg ? "-" + s : s;
  }
  /** Rescale units from one number of decimals to another, rounding up (fees) or down (amounts). */
  function rescale(units, from, to, up) {
    if (to >= from) return units * TEN(to - from);
    const d = TEN(from - to);
    return up ? (units + d - 1n) / d : units / d;
  }
  function fixed(s, n) {
    const [w, f = ""] = String(s).split(".");
    return n > 0 ? `${w}.${(f + "0".repeat(n)).slice(0, n)}` : w;
  }
  /** Units at `decimals` shown as the pages show that currency (`shown` decimals, cut toward zero). */
  const money = (units, decimals, shown) => fromUnits(rescale(units, decimals, shown, false), shown);

  // -- order book ----------------------------------------------------------------------------------------
  const LEVELS = 40;
  let book = { asks: [], bids: [] }; // best first, [priceStr, volumeStr], as the market has it
  let group = 1n; // price step in ticks
  /** Levels merged into steps of `group` ticks: asks rounded up, bids down (a level never looks better). */
  function grouped(levels, up) {
    if (group === 1n) return levels;
    const out = new Map();
    for (const [p, v] of levels) {
      const t = toUnits(fixed(p, PP), PP);
      if (t === null) continue;
      const k = up ? (t + group - 1n) / group * group : t / group * group;
      out.set(k, (out.get(k) || 0n) + (toUnits(fixed(v, VP), VP) || 0n));
    }
    return Array.from(out.entries()).map(([k, v]) => [fromUnits(k, PP), fromUnits(v, VP)]);
  }
  function renderSide(tbody, levels, cls, bestAtBottom) {
    let cum = 0n;
    const rows = levels.slice(0, LEVELS).map(([p, v]) => {
      cum += toUnits(v, VP) || 0n;
      return { p: fixed(p, PP), v: fixed(v, VP), cum };
    });
    const max = rows.length ? rows[rows.length - 1].cum : 1n;
    const frag = document.createDocumentFragment();
    const ordered = bestAtBottom ? rows.slice().reverse() : rows;
    for (const r of ordered) {
      const tr = document.createElement("tr");
      tr.className = cls;
      tr.dataset.price = r.p;
      tr.tabIndex = 0;
      const pct = max > 0n ? Number((r.cum * 1000n) / max) / 10 : 0;
      tr.style.setProperty("--depth", pct + "%");
      for (const [text, c] of [[r.p, ""], [r.v, "num"], [fromUnits(r.cum, VP), "num hide-xs"]]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (c) td.className = c;
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
  }
  function renderBook() {
    renderSide($("asks"), grouped(book.asks, true), "sell", true);
    renderSide($("bids"), grouped(book.bids, false), "buy", false);
    const a = book.asks[0], b = book.bids[0];
    const spread = $("spread");
    if (a && b) {
      const s = (toUnits(fixed(a[0], PP), PP) || 0n) - (toUnits(fixed(b[0], PP), PP) || 0n);
      spread.textContent = `${t("spread")} ${fromUnits(s, PP)}`;
    } else spread.textContent = "";
    if (depth) depth.setBook(book);
  }
  function onDepth(d) {
    // API v2 depth lists both sides high → low (Peatio's quirk): asks reversed to be best first.
    book = { asks: d.asks.slice().reverse(), bids: d.bids.slice() };
    renderBook();
    updateSummary();
  }
  function initialBook() {
    const read = (id) => Array.from($(id).querySelectorAll("tr")).map((tr) =>
      [tr.children[0].textContent, tr.children[1].textContent]);
    book = { asks: read("asks").reverse(), bids: read("bids") };
    renderBook();
  }
  const groupSel = $("book-group");
  if (groupSel) groupSel.addEventListener("change", () => { group = BigInt(groupSel.value); renderBook(); });

  // -- recent trades and ticker -------------------------------------------------------------------------
  let lastTradeId = cfg.lastTradeId || 0;
  let lastPrice = null;
  function onTrades(list) { // newest first: {id, price, volume, created_at, side?}
    const fresh = list.filter((x) => x.id > lastTradeId).sort((a, b) => a.id - b.id);
    if (!fresh.length) return;
    const tbody = $("trades");
    let prev = lastPrice !== null ? lastPrice : (toUnits(fresh[0].price, PP) || 0n);
    for (const x of fresh) {
      const p = toUnits(fixed(x.price, PP), PP) || 0n;
      const side = x.side === "buy" || x.side === "sell" ? x.side : (p >= prev ? "buy" : "sell");
      prev = p;
      const tr = document.createElement("tr");
      tr.className = side + " fresh";
      tr.dataset.id = x.id;
      const tds = [[fixed(x.price, PP), ""], [fixed(x.volume, VP), "num"], [E.localTime(x.created_at, true), "num muted"]];
      for (const [text, c] of tds) {
        const td = document.createElement("td");
        td.textContent = text;
        if (c) td.className = c;
        tr.appendChild(td);
      }
      tbody.insertBefore(tr, tbody.firstChild);
      // the socket sends k-lines of its own; polling folds trades into the candles here
      if (feed.name === "poll") foldTrade(Date.parse(x.created_at) / 1000, parseFloat(x.price), parseFloat(x.volume));
    }
    while (tbody.children.length > 100) tbody.removeChild(tbody.lastChild);
    lastTradeId = fresh[fresh.length - 1].id;
    const lp = fixed(fresh[fresh.length - 1].price, PP);
    const dir = lastPrice === null ? "" : (toUnits(lp, PP) > lastPrice ? "up" : toUnits(lp, PP) < lastPrice ? "down" : "");
    lastPrice = toUnits(lp, PP);
    for (const el of [$("tk-last"), $("book-last")]) {
      el.textContent = lp;
      if (dir) { el.classList.toggle("up", dir === "up"); el.classList.toggle("down", dir === "down"); }
    }
    if (cfg.loggedIn) refreshMine();
  }
  function onTicker(x) {
    if (x.market && x.market !== market) { paintMenuTicker(x); return; }
    paintMenuTicker({ ...x, market });
    const set = (id, v) => { if (v !== undefined && parseFloat(v) > 0) $(id).textContent = fixed(v, PP); };
    set("tk-high", x.high);
    set("tk-low", x.low);
    if (x.vol !== undefined) $("tk-vol").textContent = fixed(x.vol, VP);
    const o = parseFloat(x.open), l = parseFloat(x.last);
    if (o > 0 && l > 0) {
      const ch = (l - o) / o * 100;
      const el = $("tk-change");
      el.textContent = (ch >= 0 ? "+" : "") + ch.toFixed(2) + "%";
      el.classList.toggle("up", ch > 0);
      el.classList.toggle("down", ch < 0);
    }
  }

  // -- feeds ------------------------------------------------------------------------------------------------
  const PollingFeed = {
    /** Depth and new trades every second, the 24 h ticker every 5 s and whenever trades come in. */
    start(h) {
      let failures = 0, busy = false;
      const slow = async () => {
        try { h.ticker((await E.getJSON(`/api/v2/tickers/${market}`)).ticker); } catch (e) { /* next time */ }
        try { for (const st of await E.getJSON("/markets/status.json")) h.status(st); } catch (e) { /* next time */ }
      };
      const tick = async () => {
        if (busy) return;
        busy = true;
        try {
          const [depth, trades] = await Promise.all([
            E.getJSON(`/api/v2/depth?market=${market}&limit=${LEVELS}`),
            E.getJSON(`/api/v2/trades?market=${market}&limit=50${lastTradeId ? `&from=${lastTradeId}` : ""}`),
          ]);
          h.depth(depth);
          if (trades.length) { h.trades(trades); slow(); }
          if (failures >= 3) showStatus("", true);  // back online: the warning goes
          failures = 0;
        } catch (e) {
          if (++failures >= 3) status(t("Could not reach the exchange, retrying…"));
        }
        busy = false;
      };
      this.poke = tick;
      tick();
      slow();
      setInterval(tick, 1000);
      setInterval(slow, 5000);
    },
    poke() {},
    setPeriod() {},
    name: "poll",
  };

  const SocketFeed = {
    name: "socket",
    start(h) {
      this.h = h;
      this.failures = 0;
      this.connect();
    },
    connect() {
      const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + cfg.websocket;
      let ws;
      try { ws = new WebSocket(url); } catch (e) { this.fallBack(); return; }
      this.ws = ws;
      this.levels = null;
      this.seq = null;
      ws.onopen = () => {
        this.failures = 0;
        this.send({ subscribe: { market, channels: ["ticker", "trades", "depth", "status", `kline_${period}`] } });
        for (const other of cfg.markets) if (other !== market) this.send({ subscribe: { market: other, channels: ["ticker", "status"] } });
      };
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (msg.depth) this.onDepth(msg.depth);
        else if (msg.trades) this.h.trades(msg.trades.trades.map((x) => ({ ...x, side: x.taker_type })));
        else if (msg.ticker) this.h.ticker(msg.ticker);
        else if (msg.status) this.h.status(msg.status);
        else if (msg.kline) this.h.kline(msg.kline.period, msg.kline.k);
        else if (msg.error) console.warn("websocket:", msg.error.message);
      };
      ws.onclose = () => {
        if (this.ws !== ws) return;
        if (++this.failures > 3) { this.fallBack(); return; }
        setTimeout(() => this.connect(), 1000 * this.failures);
      };
    },
    send(obj) { if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(obj)); },
    /** A snapshot replaces the book; a diff must carry the next sequence number, or we ask again. */
    onDepth(d) {
      if (d.snapshot) {
        this.levels = { asks: new Map(), bids: new Map() };
      } else if (this.levels === null || d.sequence !== this.seq + 1) {
        this.levels = null;
        this.send({ unsubscribe: { market, channels: ["depth"] } });
        this.send({ subscribe: { market, channels: ["depth"] } });
        return;
      }
      this.seq = d.sequence;
      for (const side of ["asks", "bids"]) {
        const m = this.levels[side];
        for (const [p, v] of d[side]) {
          const key = fixed(p, PP);
          if ((toUnits(fixed(v, VP), VP) || 0n) === 0n) m.delete(key); else m.set(key, v);
        }
      }
      const desc = (m) => Array.from(m.entries()).sort((a, b) => {
        const x = toUnits(a[0], PP), y = toUnits(b[0], PP);
        return x < y ? 1 : x > y ? -1 : 0;
      });
      this.h.depth({ asks: desc(this.levels.asks), bids: desc(this.levels.bids) });
    },
    setPeriod(old, now) {
      this.send({ unsubscribe: { market, channels: [`kline_${old}`] } });
      this.send({ subscribe: { market, channels: [`kline_${now}`] } });
    },
    poke() {},
    fallBack() {
      this.ws = null;
      feed = PollingFeed;
      root.dataset.feed = "poll";
      PollingFeed.start(this.h);
    },
  };
  const root = $("market");
  const wanted = new URLSearchParams(location.search).get("feed");
  let feed = cfg.websocket && window.WebSocket && wanted !== "poll" ? SocketFeed : PollingFeed;
  root.dataset.feed = feed.name;
  function status(text) {
    const el = $("order-status");
    if (el && text) { el.textContent = text; el.className = "form-status bad"; }
  }

  // -- chart: candles, volume, moving averages (lightweight-charts) and the depth chart -------------------
  const LWC = window.LightweightCharts;
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const TZ = -new Date().getTimezoneOffset() * 60; // the chart's axis shows the member's local time
  let candles = [], period = 15, kAvailable = true, chart = null, series = null;
  const depthCanvas = $("depth-chart");
  const depth = depthCanvas && window.DepthChart ? new window.DepthChart(depthCanvas, { pricePrecision: PP, volumePrecision: VP }) : null;
  const MAS = [[7, "#f3b93f"], [25, "#c86bfa"], [99, "#3d9bff"]];
  function chartTheme() {
    return {
      layout: { background: { color: css("--panel") }, textColor: css("--muted"), fontSize: 11, attributionLogo: false },
      grid: { vertLines: { color: css("--grid") }, horzLines: { color: css("--grid") } },
      rightPriceScale: { borderColor: css("--line") }, timeScale: { borderColor: css("--line"), timeVisible: true, secondsVisible: false },
    };
  }
  if (LWC && $("chart")) {
    chart = LWC.createChart($("chart"), { autoSize: true, ...chartTheme(), crosshair: { mode: 0 },
      localization: { priceFormatter: (p) => p.toFixed(PP) } });
    series = {
      candles: chart.addSeries(LWC.CandlestickSeries, { upColor: css("--buy"), downColor: css("--sell"), borderVisible: false,
        wickUpColor: css("--buy"), wickDownColor: css("--sell"), priceFormat: { type: "price", precision: PP, minMove: 1 / 10 ** PP } }),
      volume: chart.addSeries(LWC.HistogramSeries, { priceScaleId: "vol", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false }),
      ma: MAS.map(([n, color]) => chart.addSeries(LWC.LineSeries, { color, lineWidth: 1, lastValueVisible: false, priceLineVisible: false,
        crosshairMarkerVisible: false, title: `MA${n}` })),
    };
    chart.priceScale("vol").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    chart.subscribeCrosshairMove((param) => legend(param && param.time !== undefined ? param.seriesData.get(series.candles) : null));
    document.addEventListener("themechange", () => {
      chart.applyOptions(chartTheme());
      series.candles.applyOptions({ upColor: css("--buy"), downColor: css("--sell"), wickUpColor: css("--buy"), wickDownColor: css("--sell") });
      drawCandles();
      if (depth) depth.draw();
    });
  }
  function legend(c) {
    const el = $("chart-legend");
    if (!el) return;
    c = c || candles[candles.length - 1];
    if (!c) { el.textContent = t("No trades in this period yet"); return; }
    const f = (v) => Number(v).toFixed(PP);
    el.textContent = `${t("Open")} ${f(c.open !== undefined ? c.open : c.o)}  ${t("High")} ${f(c.high !== undefined ? c.high : c.h)}  ` +
      `${t("Low")} ${f(c.low !== undefined ? c.low : c.l)}  ${t("Close")} ${f(c.close !== undefined ? c.close : c.c)}`;
  }
  function average(n) {
    const out = [];
    let sum = 0;
    for (let i = 0; i < candles.length; i++) {
      sum += candles[i].c;
      if (i >= n) sum -= candles[i - n].c;
      if (i >= n - 1) out.push({ time: candles[i].t + TZ, value: sum / n });
    }
    return out;
  }
  function drawCandles() {
    if (!chart) return;
    series.candles.setData(candles.map((c) => ({ time: c.t + TZ, open: c.o, high: c.h, low: c.l, close: c.c })));
    const showVol = $("opt-volume").checked, showMa = $("opt-ma").checked;
    series.volume.setData(showVol ? candles.map((c) => ({ time: c.t + TZ, value: c.v, color: c.c >= c.o ? css("--buy-bg") : css("--sell-bg") })) : []);
    MAS.forEach(([n], i) => series.ma[i].setData(showMa ? average(n) : []));
    legend(null);
  }
  /** Polling has no k-line frames: its trades are folded into the current candle here. */
  function foldTrade(ts, p, v) {
    const start = Math.floor(ts / (period * 60)) * period * 60;
    const last = candles[candles.length - 1];
    if (last && last.t === start) { last.h = Math.max(last.h, p); last.l = Math.min(last.l, p); last.c = p; last.v += v; }
    else if (!last || start > last.t) candles.push({ t: start, o: p, h: p, l: p, c: p, v });
    drawCandles();
  }
  async function loadCandles() {
    const p = period;
    let out = null;
    if (kAvailable) {
      try {
        const resp = await fetch(`/api/v2/k?market=${market}&period=${p}&limit=300`, { headers: { Accept: "application/json" } });
        if (resp.ok) {
          const rows = await resp.json();
          if (Array.isArray(rows)) out = rows.map((r) => ({ t: r[0], o: +r[1], h: +r[2], l: +r[3], c: +r[4], v: +r[5] })).filter((c) => c.v > 0 || c.h > 0);
        } else if (resp.status === 404) kAvailable = false;
      } catch (e) { /* no candles this time */ }
    }
    if (p !== period) return; // the member switched period meanwhile
    candles = out || [];
    drawCandles();
  }
  if (chart) {
    for (const b of document.querySelectorAll(".periods button")) {
      b.addEventListener("click", () => {
        const old = period;
        period = Number(b.dataset.period);
        feed.setPeriod(old, period);
        for (const o of document.querySelectorAll(".periods button")) {
          o.classList.toggle("active", o === b);
          o.setAttribute("aria-pressed", o === b ? "true" : "false");
        }
        loadCandles();
      });
    }
    for (const id of ["opt-volume", "opt-ma"]) $(id).addEventListener("change", drawCandles);
    loadCandles();
    setInterval(loadCandles, 60000);
  }
  for (const b of document.querySelectorAll("button[data-view]")) {
    b.addEventListener("click", () => {
      const view = b.dataset.view;
      for (const o of document.querySelectorAll("button[data-view]")) {
        o.classList.toggle("active", o === b);
        o.setAttribute("aria-pressed", o === b ? "true" : "false");
      }
      $("chart").hidden = view !== "candles";
      if (depthCanvas) depthCanvas.hidden = view !== "depth";
      $("chart-box").dataset.view = view;
      if (view === "depth" && depth) depth.draw();
    });
  }

  // -- the pair menu: live prices, halts, search ----------------------------------------------------------
  const menu = document.querySelector("#pair-menu [data-markets]");
  const menuRow = (id) => menu && menu.querySelector(`li[data-market="${id}"]`);
  function paintMenuTicker(x) { const row = menuRow(x.market); if (row) E.paintTicker(row, x); }
  const pairSearch = $("pair-search");
  if (pairSearch) pairSearch.addEventListener("input", () => E.filterMarkets(menu, pairSearch, false));

  // -- a halted market: banner with the admin's reason, the form switched off ------------------------------
  function onStatus(st) {
    const row = menuRow(st.market);
    if (row) E.paintStatus(row, st);
    if (st.market !== market) return;
    const was = root.dataset.halted === "1";
    root.dataset.halted = st.halted ? "1" : "";
    $("halt-banner").hidden = !st.halted;
    $("halt-reason").textContent = st.halted && st.reason ? t("Reason: {reason}", { reason: st.reason }) : "";
    const fields = $("order-fields");
    if (fields) fields.disabled = !!st.halted;
    if (st.halted && !was) { showStatus(t("Trading is halted"), false); E.toast(t("Trading on {market} is halted", { market: cfg.name }), "bad"); }
    else if (!st.halted && was) { showStatus(t("Trading has resumed"), true); E.toast(t("Trading on {market} has resumed", { market: cfg.name }), "ok"); }
  }

  // -- the member's orders, trades and balances ---------------------------------------------------------------
  const mine = $("panel-mine");
  const csrf = mine ? mine.dataset.csrf : null;
  let balances = {};
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function timeCell(tr, iso) {
    const td = document.createElement("td");
    const el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.dataset.local = "";
    el.textContent = E.localTime(iso);
    td.appendChild(el);
    tr.appendChild(td);
  }
  function cancelForm(id) {
    const f = document.createElement("form");
    f.method = "post";
    f.action = `/orders/${id}/cancel`;
    f.className = "cancel-form";
    for (const [n, v] of [["csrf_token", csrf], ["next", `/markets/${market}`]]) {
      const i = document.createElement("input");
      i.type = "hidden"; i.name = n; i.value = v;
      f.appendChild(i);
    }
    const b = document.createElement("button");
    b.type = "submit";
    b.className = "btn tiny ghost";
    b.textContent = t("Cancel");
    f.appendChild(b);
    return f;
  }
  /** Column names on each cell, for the phone layout where rows become cards. */
  function labelRows(tbody) {
    const ths = tbody.closest("table").querySelectorAll("thead th");
    for (const tr of tbody.rows) {
      Array.from(tr.cells).forEach((td, i) => {
        const label = ths[i] ? ths[i].textContent.trim() : "";
        if (label) td.dataset.label = label;
      });
    }
  }
  for (const id of ["open-orders", "order-history", "my-trades"]) if ($(id)) labelRows($(id));

  function fill(tbodyId, emptyId, rows, build) {
    const tbody = $(tbodyId);
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const tr = document.createElement("tr");
      tr.dataset.id = r.id;
      build(tr, r);
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
    labelRows(tbody);
    $(emptyId).hidden = rows.length > 0;
  }
  let knownTrades = null; // ids of the member's trades already seen (null until the first answer)
  /** A toast for each new fill of the member's: partial while the order is still open, else full. */
  function announceFills(s) {
    const ids = new Set(s.trades.map((x) => x.id));
    if (knownTrades !== null) {
      const open = new Set(s.open.map((o) => o.id));
      for (const x of s.trades.slice().reverse()) {
        if (knownTrades.has(x.id)) continue;
        const partial = open.has(x.order_id);
        E.toast(t(partial ? "{side} order partly filled: {volume} {base} at {price}" : "{side} order filled: {volume} {base} at {price}",
          { side: x.side_label, volume: x.volume, base: cfg.base, price: x.price }), x.side === "buy" ? "ok" : "bad");
      }
    }
    knownTrades = ids;
  }
  function renderMine(s) {
    announceFills(s);
    balances = s.balances;
    for (const code of Object.keys(s.balances)) {
      const b = s.balances[code];
      const a = $(`bal-${code}-available`), l = $(`bal-${code}-locked`);
      if (a) a.textContent = b.available;
      if (l) l.textContent = b.locked;
      for (const el of document.querySelectorAll(`.bal-available[data-currency="${code}"]`)) el.textContent = b.available;
    }
    fill("open-orders", "open-empty", s.open, (tr, o) => {
      timeCell(tr, o.at);
      cell(tr, o.side_label, o.side);
      cell(tr, o.type_label);
      cell(tr, o.price, "num");
      cell(tr, o.volume, "num");
      cell(tr, o.executed, "num");
      cell(tr, o.total, "num");
      const td = cell(tr, "", "num");
      td.appendChild(cancelForm(o.id));
    });
    $("open-count").textContent = s.open.length;
    const ca = $("cancel-all");
    if (ca) ca.disabled = s.open.length === 0;
    fill("order-history", "history-empty", s.history, (tr, o) => {
      timeCell(tr, o.at);
      cell(tr, o.side_label, o.side);
      cell(tr, o.type_label);
      cell(tr, o.price, "num");
      cell(tr, o.avg_price, "num");
      cell(tr, o.volume, "num");
      cell(tr, o.executed, "num");
      cell(tr, o.state_label, `state-${o.state}`);
    });
    fill("my-trades", "trades-empty", s.trades, (tr, x) => {
      timeCell(tr, x.at);
      cell(tr, x.side_label, x.side);
      cell(tr, x.price, "num");
      cell(tr, x.volume, "num");
      cell(tr, x.total, "num");
      cell(tr, x.fee, "num");
      cell(tr, x.role);
    });
    updateSummary();
  }
  let mineBusy = false, mineAgain = false;
  async function refreshMine() {
    if (!cfg.loggedIn) return;
    if (mineBusy) { mineAgain = true; return; }
    mineBusy = true;
    try { renderMine(await E.getJSON(`/markets/${market}/me.json`)); } catch (e) { /* next tick */ }
    mineBusy = false;
    if (mineAgain) { mineAgain = false; refreshMine(); }
  }
  // The member's orders, fills and balances: pushed over the member's socket (app.js); polled only
  // while that socket is down.
  const member = E.memberFeed;
  const live = () => !!(member && member.up);
  if (cfg.loggedIn) {
    refreshMine();
    if (member) {
      member.want(["order", "trade", "account"]);
      member.on((kind, body) => {
        // a fill's toast comes from the fresh list (announceFills: partial while its order is still open)
        if (kind === "trade" || kind === "order" || kind === "account" || kind === "up") refreshMine();
      });
    }
    setInterval(() => { if (!live()) refreshMine(); }, 2000);
  }

  // tabs of the member's panel
  const tabs = document.querySelectorAll(".tabbar [data-tab]");
  function showTab(name) {
    for (const b of tabs) {
      b.classList.toggle("active", b.dataset.tab === name);
      b.setAttribute("aria-selected", b.dataset.tab === name ? "true" : "false");
    }
    for (const p of document.querySelectorAll("[data-pane]")) p.hidden = p.dataset.pane !== name;
  }
  for (const b of tabs) b.addEventListener("click", () => showTab(b.dataset.tab));
  if (tabs.length) showTab("open");

  // cancel buttons (one order, or all) without leaving the page
  document.addEventListener("submit", async (ev) => {
    const f = ev.target;
    if (!f.classList.contains("cancel-form") && !f.classList.contains("cancel-all-form")) return;
    ev.preventDefault();
    const b = f.querySelector("button");
    if (f.classList.contains("cancel-form") && !window.confirm(t("Cancel this order?"))) return;
    if (f.classList.contains("cancel-all-form") &&
        !window.confirm(t("Cancel all {n} open orders in {market}?", { n: $("open-count").textContent, market: cfg.name }))) return;
    b.disabled = true;
    b.textContent = t("Cancelling…");
    const r = await E.postForm(f).catch(() => null);
    const text = r && r.data ? r.data.message : t("Could not reach the exchange, retrying…");
    showStatus(text, r && r.ok);
    E.toast(text, r && r.ok ? "info" : "bad");
    feed.poke();
    await refreshMine();
    b.disabled = false;
    b.textContent = f.classList.contains("cancel-all-form") ? b.dataset.label || b.textContent : t("Cancel");
  });
  const cancelAll = $("cancel-all");
  if (cancelAll) cancelAll.dataset.label = cancelAll.textContent;

  // -- order form: total and fee before submitting, sent with fetch -------------------------------------------
  const form = $("order-form");
  const priceIn = $("f-price"), volIn = $("f-volume");
  const side = () => (form.querySelector("input[name=side]:checked") || {}).value || "buy";
  const ordType = () => (form.querySelector("input[name=ord_type]:checked") || {}).value || "limit";
  const tifSel = $("f-tif");
  /** Post-only makes no sense for a market order: offered only where it applies. */
  function syncTif() {
    if (!tifSel) return;
    const po = tifSel.querySelector('option[value="post_only"]');
    const market = ordType() === "market";
    po.disabled = market;
    if (market && tifSel.value === "post_only") tifSel.value = "gtc";
  }
  /** What a market order of `lots` would cost (buy) or bring (sell) in quote units at scale PP+VP. */
  function walkBook(lots) {
    const levels = side() === "buy" ? book.asks : book.bids;
    let left = lots, funds = 0n;
    for (const [p, v] of levels) {
      const pl = toUnits(fixed(p, PP), PP), vl = toUnits(fixed(v, VP), VP);
      if (pl === null || vl === null) continue;
      const take = vl < left ? vl : left;
      funds += pl * take;
      left -= take;
      if (left === 0n) return funds;
    }
    return null;
  }
  /** Would a limit order at `ticks` take from the book at once (then it pays the taker rate)? */
  function crosses(ticks) {
    const best = side() === "buy" ? book.asks[0] : book.bids[0];
    if (!best) return false;
    const b = toUnits(fixed(best[0], PP), PP);
    return side() === "buy" ? ticks >= b : ticks <= b;
  }
  function updateSummary() {
    if (!form) return;
    const lots = toUnits(volIn.value, VP);
    const isBuy = side() === "buy";
    const type = ordType();
    const tif = tifSel ? tifSel.value : "gtc";
    let total = null, ticks = null;
    if (lots !== null && lots > 0n) {
      if (type === "market") total = walkBook(lots);
      else {
        ticks = toUnits(priceIn.value, PP);
        if (ticks !== null) total = ticks * lots;
      }
    }
    // the rate in force: a post-only or a resting limit order pays the maker rate, anything that takes the taker rate
    const maker = type === "stop_limit" ? false : tif === "post_only" || (type === "limit" && ticks !== null && !crosses(ticks) && tif === "gtc");
    const rate = BigInt(maker ? cfg.makerFee : cfg.takerFee);
    const totalEl = $("of-total"), feeEl = $("of-fee");
    $("of-fee-cur").textContent = isBuy ? cfg.base : cfg.quote;
    $("of-rates").dataset.role = maker ? "maker" : "taker";
    if (total === null) {
      totalEl.textContent = lots !== null && type === "market" && lots > 0n ? t("Not enough orders in the book for this amount") : "—";
      feeEl.textContent = "—";
      return;
    }
    totalEl.textContent = (type === "market" ? "≈ " : "") + money(total, PP + VP, cfg.quoteShown);
    // the fee is a share of what the member receives: base when buying, quote when selling
    const fee = isBuy ? rescale(lots * rate, VP + 8, BP, true) : rescale(total * rate, PP + VP + 8, QP, true);
    feeEl.textContent = `${money(fee, isBuy ? BP : QP, isBuy ? cfg.baseShown : cfg.quoteShown)} (${maker ? t("maker") : t("taker")})`;
  }
  /** Errors go when the member edits what they are about (all of them when `name` is empty). */
  function clearErrors(name) {
    for (const el of form.querySelectorAll(".field-error, .form-error")) {
      if (!name || el.dataset.field === name || el.dataset.field === "") el.remove();
    }
    for (const el of form.querySelectorAll(".has-error")) {
      if (!name || el.id === `field-${name}`) el.classList.remove("has-error");
    }
    for (const el of form.querySelectorAll("[aria-invalid]")) {
      if (!name || el.name === name) el.removeAttribute("aria-invalid");
    }
  }
  function showErrors(errors) {
    for (const [name, message] of Object.entries(errors || {})) {
      const field = name ? $(`field-${name}`) : null;
      const p = document.createElement(name ? "p" : "div");
      p.className = name && field ? "field-error js" : "alert error form-error js";
      p.dataset.field = name;
      p.textContent = message;
      if (field) {
        field.classList.add("has-error");
        const input = field.querySelector("input");
        if (input) input.setAttribute("aria-invalid", "true");
        field.appendChild(p);
      } else {
        form.insertBefore(p, form.querySelector(".price-field"));
      }
    }
  }
  let statusTimer = null;
  /** A line under the order button; good news fades after a few seconds, problems stay. */
  function showStatus(text, ok) {
    const el = $("order-status");
    if (!el) return;
    el.textContent = text || "";
    el.className = "form-status " + (ok ? "ok" : "bad");
    clearTimeout(statusTimer);
    if (ok && text) statusTimer = setTimeout(() => { el.textContent = ""; }, 5000);
  }
  if (form && volIn) {
    // Typing clears that field's error at once (not on blur: a layout shift under the pointer
    // between mousedown and mouseup on the submit button would swallow the click).
    form.addEventListener("input", (ev) => { clearErrors(ev.target.name); updateSummary(); });
    form.addEventListener("change", updateSummary);
    const takePrice = (ev) => {
      const tr = ev.target.closest("tr[data-price]");
      if (!tr || !priceIn) return;
      priceIn.value = tr.dataset.price;
      if (ordType() === "market") $("type-limit").checked = true;
      syncTif();
      updateSummary();
    };
    for (const tb of [$("asks"), $("bids")]) {
      tb.addEventListener("click", takePrice);
      tb.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); takePrice(ev); } });
    }
    form.addEventListener("change", syncTif);
    for (const b of form.querySelectorAll("[data-pct]")) {
      b.addEventListener("click", () => {
        const pct = BigInt(b.dataset.pct);
        const isBuy = side() === "buy";
        const bal = balances[(isBuy ? cfg.quoteCode : cfg.baseCode)] || null;
        if (!bal) return;
        const avail = BigInt(bal.units);
        let lots;
        if (isBuy) {
          const ref = ordType() === "limit" ? toUnits(priceIn.value, PP) : (book.asks[0] ? toUnits(fixed(book.asks[0][0], PP), PP) * 11n / 10n : null);
          if (!ref) { showStatus(t("Please enter a price"), false); return; }
          // avail is in quote units (QP decimals); price × lots is at PP+VP decimals
          lots = rescale(avail * pct / 100n, QP, PP + VP, false) / ref;
        } else {
          lots = rescale(avail * pct / 100n, BP, VP, false);
        }
        volIn.value = fromUnits(lots, VP);
        updateSummary();
      });
    }
    form.addEventListener("submit", async (ev) => {
      if (!cfg.loggedIn) return;
      ev.preventDefault();
      clearErrors();
      const btn = $("order-submit");
      btn.disabled = true;
      const extra = ordType() === "market" ? { price: "", stop_price: "" } : ordType() === "limit" ? { stop_price: "" } : null;
      const r = await E.postForm(form, extra).catch(() => null);
      btn.disabled = false;
      if (!r || !r.data) { showStatus(t("Could not reach the exchange, retrying…"), false); return; }
      if (r.ok) {
        showStatus(r.data.message, true);
        E.toast(r.data.message, "info");
        volIn.value = "";
        updateSummary();
        refreshMine();
        feed.poke();
      } else {
        showStatus("", false);
        showErrors(r.data.errors);
        if (r.data.errors && r.data.errors[""]) E.toast(r.data.errors[""], "bad");
      }
    });
    updateSummary();
  }

  initialBook();
  lastPrice = toUnits($("tk-last").textContent.trim(), PP);
  function onKline(p, k) {
    if (!chart || Number(p) !== period) return;
    const c = { t: k[0], o: +k[1], h: +k[2], l: +k[3], c: +k[4], v: +k[5] };
    const last = candles[candles.length - 1];
    if (last && last.t === c.t) candles[candles.length - 1] = c;
    else if (!last || c.t > last.t) candles.push(c);
    else return;
    drawCandles();
  }

  // -- phone: one view at a time (chart, book, trades, orders) under the ticker -----------------------------
  for (const b of document.querySelectorAll(".phone-tabs [data-phone]")) {
    b.addEventListener("click", () => {
      root.dataset.phone = b.dataset.phone;
      for (const o of document.querySelectorAll(".phone-tabs [data-phone]")) {
        o.classList.toggle("active", o === b);
        o.setAttribute("aria-selected", o === b ? "true" : "false");
      }
    });
  }
  feed.start({ depth: onDepth, trades: onTrades, ticker: onTicker, kline: onKline, status: onStatus });
})();
